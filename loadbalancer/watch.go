package loadbalancer

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// settle is how long a burst of file events must go quiet before the file is
// read, so an editor's several writes apply once.
const settle = 50 * time.Millisecond

// WatchFile is the config file source: it reloads path into b when the
// file's content changes and at once whenever hup receives (SIGHUP). Changes
// are seen through fsnotify on the file's directory (so write-and-rename
// editors and truncate-and-write both count) and by polling the content every
// runtime.config_watch_interval_millis (mounted files, missed events). An
// invalid file is logged, counted and otherwise ignored: the running config
// stays. WatchFile returns when ctx ends. It is Sources.WatchFile with no
// fleet.
func WatchFile(ctx context.Context, b *Balancer, path string, hup <-chan os.Signal) {
	NewSources(b, path, nil, config.Fleet{}).WatchFile(ctx, hup)
}

// WatchFile watches s's file as the function WatchFile does, rebuilding the
// config with the fleet's part as it stands when the file changes.
func (s *Sources) WatchFile(ctx context.Context, hup <-chan os.Signal) {
	b, path := s.b, s.path
	var last [32]byte // nothing read yet: the first look compares configs
	reload := func(force bool) {
		data, err := os.ReadFile(path)
		if err != nil && !force {
			return // mid-rename, or removed: keep running, look again later
		}
		sum := sha256.Sum256(data)
		if !force && sum == last {
			return
		}
		last = sum
		if err != nil {
			b.ReloadFailed(err)
			b.log.Error("config reload rejected; keeping the running config", "file", path, "error", err)
			return
		}
		_ = s.ReloadFile(data, force) // logged and counted there
	}

	var events <-chan fsnotify.Event
	if w, err := fsnotify.NewWatcher(); err != nil {
		b.log.Warn("file events unavailable; polling only", "file", path, "error", err)
	} else {
		defer w.Close()
		if err := w.Add(filepath.Dir(path)); err != nil {
			b.log.Warn("file events unavailable; polling only", "file", path, "error", err)
		} else {
			events = w.Events
			go func() { // drain errors so the watcher never blocks
				for range w.Errors {
				}
			}()
		}
	}

	reload(false) // catch an edit made between the start-up load and the watch

	settleTimer := time.NewTimer(time.Hour)
	settleTimer.Stop()
	defer settleTimer.Stop()
	poll := time.NewTimer(b.Config().Runtime.ConfigWatchInterval)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.Done():
			return
		case <-hup:
			b.log.Info("SIGHUP: reloading config", "file", path)
			reload(true)
		case ev := <-events:
			if filepath.Clean(ev.Name) == filepath.Clean(path) {
				settleTimer.Reset(settle)
			}
		case <-settleTimer.C:
			reload(false)
		case <-poll.C:
			// A changed file may be mid-write: read it once it has settled.
			if sum, ok := digest(path); ok && sum != last {
				settleTimer.Reset(settle)
			}
			poll.Reset(b.Config().Runtime.ConfigWatchInterval)
		}
	}
}

// digest is the file's content hash; ok is false when it cannot be read.
func digest(path string) (sum [32]byte, ok bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return sum, false
	}
	return sha256.Sum256(data), true
}
