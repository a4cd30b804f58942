package loadbalancer

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

func limitConfig(maxConns, backends int) *config.Config {
	c := config.Default()
	c.Proxy.MaxConnections = maxConns
	c.Backends = make([]config.Backend, backends)
	return c
}

func TestDescriptorLimitWarning(t *testing.T) {
	cases := []struct {
		name     string
		limit    uint64
		err      error
		cfg      *config.Config
		warnings int
		want     []string // in the one warning
	}{
		{"enough", 1 << 20, nil, limitConfig(10000, 4), 0, nil},
		{"exactly enough", 2*10000 + 64 + 4, nil, limitConfig(10000, 4), 0, nil},
		{"one short", 2*10000 + 64 + 3, nil, limitConfig(10000, 4), 1,
			[]string{"limit=20067", "needed=20068", "max_connections=10000", "at least 20068", "lower proxy.max_connections to 9999"}},
		{"the usual 1024", 1024, nil, limitConfig(10000, 2), 1,
			[]string{"limit=1024", "needed=20066", "LimitNOFILE", "lower proxy.max_connections to 479"}},
		{"tiny limit", 10, nil, limitConfig(100, 2), 1, []string{"limit=10", "lower proxy.max_connections to 0"}},
		{"unlimited connections bound nothing", 10, nil, limitConfig(0, 2), 0, nil},
		{"not on this platform", 0, errors.ErrUnsupported, limitConfig(10000, 2), 0, nil},
		{"cannot read it", 0, errors.New("EPERM"), limitConfig(10000, 2), 1, []string{"RLIMIT_NOFILE", "EPERM"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			logDescriptorLimit(slog.New(slog.NewTextHandler(&out, nil)), tc.limit, tc.err, tc.cfg)
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if out.Len() == 0 {
				lines = nil
			}
			if len(lines) != tc.warnings {
				t.Fatalf("%d log lines, want %d:\n%s", len(lines), tc.warnings, out.String())
			}
			for _, want := range tc.want {
				if !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], want) {
					t.Errorf("warning %q does not contain %q", lines[0], want)
				}
			}
		})
	}
}

// The process limit is raised as far as it goes: after the call the soft
// limit is the hard one (or the call reports why not).
func TestRaiseDescriptorLimit(t *testing.T) {
	limit, err := raiseDescriptorLimit()
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip("no descriptor limit check on this platform")
	}
	if err != nil || limit == 0 {
		t.Fatalf("raiseDescriptorLimit() = %d, %v", limit, err)
	}
	again, err := raiseDescriptorLimit()
	if err != nil || again != limit {
		t.Fatalf("a second call gives %d, %v; want %d: the first raised it all the way", again, err, limit)
	}
}
