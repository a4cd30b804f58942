package loadbalancer

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// descriptorHeadroom is what the balancer may hold open besides two
// descriptors per proxied connection (client and backend) and one per
// backend (its health check): listeners (two during a listen change), the
// event loops' epoll sets and wake-ups, the admin listener and its clients,
// the config watcher, log files and the Go runtime's own.
const descriptorHeadroom = 64

// descriptorsNeeded is how many descriptors cfg may need at once; 0 when
// proxy.max_connections is 0 (unlimited), which bounds nothing.
func descriptorsNeeded(cfg *config.Config) uint64 {
	if cfg.Proxy.MaxConnections <= 0 {
		return 0
	}
	return 2*uint64(cfg.Proxy.MaxConnections) + descriptorHeadroom + uint64(len(cfg.Backends))
}

// logDescriptorLimit logs one warning when limit (what
// raiseDescriptorLimit returned, with err) is below what cfg may need.
// Running short is not fatal (at the limit new clients wait in the backlog
// until a descriptor frees), so the balancer starts anyway.
func logDescriptorLimit(log *slog.Logger, limit uint64, err error, cfg *config.Config) {
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return
	case err != nil:
		log.Warn("cannot read or raise the open file limit (RLIMIT_NOFILE)", "error", err)
		return
	}
	need := descriptorsNeeded(cfg)
	if need <= limit {
		return
	}
	fits := int64(limit) - descriptorHeadroom - int64(len(cfg.Backends))
	log.Warn("open file limit too low for proxy.max_connections: beyond it new clients wait until a connection ends",
		"limit", limit,
		"needed", need,
		"max_connections", cfg.Proxy.MaxConnections,
		"fix", fmt.Sprintf("raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) to at least %d, or lower proxy.max_connections to %d", need, max(fits/2, 0)))
}
