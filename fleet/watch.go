package fleet

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// Sink takes the fleet's changes: BalancerSink hands the config's parts to
// loadbalancer.Sources, which validates and applies each as a file reload
// would, and the overrides to the balancer.
type Sink interface {
	SetFleetBackends(backends []config.Backend) error
	SetFleetSettings(name string, doc []byte) error
	SetFleetOverrides(overrides map[string]Override) // by backend name
}

// probeEvery is how often a watcher checks that etcd still answers: a watch
// alone waits quietly through an outage, and the fleet must know to resync.
const probeEvery = time.Second

// probeFailures is how many probes in a row must fail for etcd to count as
// lost.
const probeFailures = 2

// Watcher follows one pool's backends and the shared settings under its
// keys, and hands every change to its sink.
type Watcher struct {
	cli  *clientv3.Client
	keys Keys
	pool string
	log  *slog.Logger

	// What etcd held at rev, as last read.
	backends  map[string]config.Backend // by key
	bad       map[string]string         // key → the value that did not parse, logged once
	settings  []byte                    // nil: no PREFIX/config
	overrides map[string]Override       // by backend name
	rev       int64
}

// NewWatcher returns a watcher of pool under k.
func NewWatcher(cli *clientv3.Client, k Keys, pool string, log *slog.Logger) (*Watcher, error) {
	if err := CheckName("pool", pool); err != nil {
		return nil, err
	}
	return &Watcher{cli: cli, keys: k, pool: pool, log: log.With("etcd_prefix", k.Prefix, "pool", pool),
		backends: map[string]config.Backend{}, bad: map[string]string{}, overrides: map[string]Override{}}, nil
}

// SettingsName stands for the shared settings in errors.
func (w *Watcher) SettingsName() string { return "etcd " + w.keys.Config() }

// Sync reads the pool and the shared settings once, as the start does, and
// returns them as the fleet's part of a config.
func (w *Watcher) Sync(ctx context.Context) (config.Fleet, error) {
	if err := w.read(ctx); err != nil {
		return config.Fleet{}, err
	}
	return w.fleet(), nil
}

// fleet is the state as config.LoadWith takes it.
func (w *Watcher) fleet() config.Fleet {
	return config.Fleet{Name: w.SettingsName(), Settings: w.settings, Backends: w.list()}
}

// read replaces the state with a full read of the prefix.
func (w *Watcher) read(ctx context.Context) error {
	resp, err := w.cli.Get(ctx, w.keys.Prefix+"/", clientv3.WithPrefix())
	if err != nil {
		return err
	}
	w.backends, w.settings, w.overrides, w.rev = map[string]config.Backend{}, nil, map[string]Override{}, resp.Header.Revision
	for _, kv := range resp.Kvs {
		w.put(string(kv.Key), kv.Value)
	}
	return nil
}

// put records one key's value.
func (w *Watcher) put(key string, value []byte) {
	switch {
	case key == w.keys.Config():
		w.settings = bytes.Clone(value)
		if w.settings == nil {
			w.settings = []byte{} // set but empty: the settings loader says what is wrong
		}
	case strings.HasPrefix(key, w.keys.Overrides(w.pool)):
		o, err := parseOverride(key, value)
		name := strings.TrimPrefix(key, w.keys.Overrides(w.pool))
		if err != nil {
			delete(w.overrides, name)
			if w.bad[key] != string(value) {
				w.bad[key] = string(value)
				w.log.Warn("fleet override ignored", "error", err)
			}
			return
		}
		delete(w.bad, key)
		w.overrides[name] = o
	case strings.HasPrefix(key, w.keys.Pool(w.pool)):
		b, err := ParseBackend(w.keys, w.pool, key, value)
		if err != nil {
			delete(w.backends, key)
			if w.bad[key] != string(value) {
				w.bad[key] = string(value)
				w.log.Warn("registration ignored", "error", err)
			}
			return
		}
		delete(w.bad, key)
		w.backends[key] = b
	}
}

// remove forgets one key.
func (w *Watcher) remove(key string) {
	if key == w.keys.Config() {
		w.settings = nil
	}
	delete(w.overrides, strings.TrimPrefix(key, w.keys.Overrides(w.pool)))
	delete(w.backends, key)
	delete(w.bad, key)
}

// list is the backends by key order, one per id.
func (w *Watcher) list() []config.Backend {
	keys := slices.Sorted(maps.Keys(w.backends))
	ids := map[int]string{}
	var out []config.Backend
	for _, k := range keys {
		b := w.backends[k]
		if other, dup := ids[b.ID]; dup {
			w.log.Warn("registration ignored: its id, derived from the key, is also another's; rename it", "key", k, "other", other)
			continue
		}
		ids[b.ID] = k
		out = append(out, b)
	}
	return out
}

// Run watches from the last Sync (a full read first, if there was none)
// and hands each change to sink, until ctx ends. When etcd is lost it keeps
// the last known state (the balancer goes on serving it), logs once, and
// when etcd answers again resyncs: a full read, then a watch from that
// revision. A watch that fell behind a compaction resyncs the same way.
func (w *Watcher) Run(ctx context.Context, sink Sink) {
	trouble := logOnce{log: w.log}
	synced := w.rev != 0
	lastBackends, lastSettings := w.list(), w.settings
	var lastOverrides map[string]Override // nil: none handed over yet
	push := func() {
		if list := w.list(); !slices.Equal(list, lastBackends) {
			lastBackends = list
			_ = sink.SetFleetBackends(list) // a rejection is logged and counted there
		}
		if !bytes.Equal(w.settings, lastSettings) || (w.settings == nil) != (lastSettings == nil) {
			lastSettings = w.settings
			_ = sink.SetFleetSettings(w.SettingsName(), w.settings)
		}
		if lastOverrides == nil || !maps.Equal(w.overrides, lastOverrides) {
			lastOverrides = maps.Clone(w.overrides)
			sink.SetFleetOverrides(maps.Clone(w.overrides))
		}
	}
	if synced {
		push() // the overrides: the start's config took the rest
	}
	for backoff := 100 * time.Millisecond; ctx.Err() == nil; {
		if !synced {
			rctx, cancel := context.WithTimeout(ctx, 2*probeEvery)
			err := w.read(rctx)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					trouble.lost("etcd lost: serving the last known pool; retrying", err)
					sleep(ctx, backoff)
					backoff = min(2*backoff, 5*time.Second)
				}
				continue
			}
			synced, backoff = true, 100*time.Millisecond
			trouble.back("etcd back: resynced", "revision", w.rev, "backends", len(w.backends))
			push()
		}
		err := w.watch(ctx, push)
		synced = false
		if ctx.Err() == nil {
			trouble.lost("etcd watch ended: serving the last known pool; resyncing", err)
		}
	}
}

// errCompacted ends a watch that fell behind a compaction.
var errCompacted = errors.New("watch fell behind a compaction")

// watch follows the prefix from the revision after the last read, until the
// watch fails, etcd stops answering the probe, or ctx ends.
func (w *Watcher) watch(ctx context.Context, push func()) error {
	wctx, cancel := context.WithCancelCause(clientv3.WithRequireLeader(ctx))
	defer cancel(nil)
	go w.probe(wctx, cancel)
	events := w.cli.Watch(wctx, w.keys.Prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(w.rev+1))
	for resp := range events {
		if resp.CompactRevision != 0 {
			return errCompacted
		}
		if err := resp.Err(); err != nil {
			return err
		}
		for _, ev := range resp.Events {
			switch ev.Type {
			case clientv3.EventTypePut:
				w.put(string(ev.Kv.Key), ev.Kv.Value)
			case clientv3.EventTypeDelete:
				w.remove(string(ev.Kv.Key))
			}
		}
		w.rev = resp.Header.Revision
		push()
	}
	if err := context.Cause(wctx); err != nil && ctx.Err() == nil {
		return err
	}
	return errors.New("watch closed")
}

// probe cancels the watch with the reason when etcd stops answering.
func (w *Watcher) probe(ctx context.Context, cancel context.CancelCauseFunc) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, done := context.WithTimeout(ctx, probeEvery)
		_, err := w.cli.Get(pctx, w.keys.Config(), clientv3.WithCountOnly())
		done()
		switch {
		case err == nil:
			failures = 0
		case ctx.Err() != nil:
			return
		default:
			// One slow answer is not an outage: a resync is a full read.
			if failures++; failures == probeFailures {
				cancel(err)
				return
			}
		}
	}
}
