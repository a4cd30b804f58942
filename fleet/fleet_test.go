package fleet

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lemonade-lb/lemonade/fleet/etcdtest"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
	"github.com/lemonade-lb/lemonade/observability/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

func TestParseBackend(t *testing.T) {
	k := Keys{Prefix: "/lemonade"}
	key := k.Backend("default", "gin-1")
	if key != "/lemonade/pools/default/backends/gin-1" {
		t.Fatalf("key %q", key)
	}
	b, err := ParseBackend(k, "default", key, []byte(`{"address":"127.0.0.1:50510","framework":"gin"}`))
	if err != nil || b.Name != "gin-1" || b.Address != "127.0.0.1:50510" || b.Weight != 1 || b.ID != BackendID(key) || b.ID < backendIDBase {
		t.Fatalf("ParseBackend = %+v, %v", b, err)
	}
	if BackendID(key) != BackendID(k.Backend("default", "gin-1")) || BackendID(key) == BackendID(k.Backend("default", "gin-2")) {
		t.Error("ids are not stable per key, or not distinct")
	}
	for value, want := range map[string]string{
		`{"address":"nohost"}`:                      "address",
		`{"address":"127.0.0.1:1","weight":256}`:    "weight: must be 1..255",
		`{"address":"127.0.0.1:1","wieght":2}`:      `unknown field "wieght"`,
		`not json`:                                  "want JSON",
		`{"address":"127.0.0.1:1"} {"address":"x"}`: "more than one JSON value",
	} {
		if _, err := ParseBackend(k, "default", key, []byte(value)); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v; want an error naming the key and saying %q", value, err, want)
		}
	}
	if _, err := ParseBackend(k, "default", "/lemonade/pools/other/backends/x", []byte(`{"address":"127.0.0.1:1"}`)); err == nil {
		t.Error("a key of another pool was read")
	}
	for _, name := range []string{"", "a/b", "a b", "é"} {
		if err := CheckName("backend", name); err == nil {
			t.Errorf("CheckName(%q) = nil", name)
		}
	}
}

func TestParseURL(t *testing.T) {
	e, err := ParseURL("etcd://127.0.0.1:2379,10.0.0.2:2379/fleet/eu")
	if err != nil || !slices.Equal(e.Endpoints, []string{"127.0.0.1:2379", "10.0.0.2:2379"}) || e.Prefix != "/fleet/eu" {
		t.Fatalf("ParseURL = %+v, %v", e, err)
	}
	e, err = ParseURL("etcd://worker:s3cret@127.0.0.1:2379/lemonade")
	if err != nil || e.Username != "worker" || e.Password != "s3cret" {
		t.Fatalf("with a user: %+v, %v", e, err)
	}
	for raw, want := range map[string]string{
		"http://127.0.0.1:2379/x":          "want etcd://",
		"etcd://127.0.0.1:2379":            "no /PREFIX",
		"etcd://127.0.0.1/x":               `endpoint "127.0.0.1"`,
		"etcd://127.0.0.1:2379/x/":         `must not end with "/"`,
		"etcd://u@127.0.0.1:2379/x":        "both a user name and a password",
		"etcd://u:hunter2@127.0.0.1:2379/": "<redacted>",
	} {
		_, err := ParseURL(raw)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseURL(%q) = %v; want an error saying %q, never the password", raw, err, want)
		}
	}
}

// recorder is a Sink that keeps the latest of each change.
type recorder struct {
	mu        sync.Mutex
	backends  []config.Backend
	settings  []byte
	name      string
	calls     int
	overrides map[string]Override
}

func (r *recorder) SetFleetBackends(b []config.Backend) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.backends, r.calls = b, r.calls+1
	return nil
}

func (r *recorder) SetFleetSettings(name string, doc []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.name, r.settings, r.calls = name, doc, r.calls+1
	return nil
}

func (r *recorder) SetFleetOverrides(o map[string]Override) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.overrides = o
}

func (r *recorder) override(name string) Override {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.overrides[name]
}

// names is the backends' names, sorted.
func (r *recorder) names() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ns []string
	for _, b := range r.backends {
		ns = append(ns, b.Name)
	}
	slices.Sort(ns)
	return strings.Join(ns, " ")
}

func (r *recorder) doc() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return string(r.settings)
}

// hook is a log handler that signals when a message contains prefix.
type hook struct {
	prefix string
	seen   chan struct{}
}

func (h hook) Enabled(context.Context, slog.Level) bool { return true }
func (h hook) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h hook) WithGroup(string) slog.Handler            { return h }
func (h hook) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.prefix) {
		select {
		case h.seen <- struct{}{}:
		default:
		}
	}
	return nil
}

// watch starts a watcher of the default pool, synced, running until the
// test ends.
func watch(t *testing.T, srv *etcdtest.Server, k Keys) (*recorder, config.Fleet) {
	t.Helper()
	return watchLogging(t, srv, k, quiet)
}

// watchLogging is watch with the watcher's logger.
func watchLogging(t *testing.T, srv *etcdtest.Server, k Keys, log *slog.Logger) (*recorder, config.Fleet) {
	t.Helper()
	w, err := NewWatcher(srv.Client(), k, DefaultPool, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start, err := w.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	run, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(run, rec) }()
	t.Cleanup(func() { stop(); <-done })
	return rec, start
}

func register(t *testing.T, srv *etcdtest.Server, k Keys, name, addr string, ttl time.Duration) *Registrar {
	t.Helper()
	g, err := Register(srv.Client(), k, DefaultPool, name, Registration{Address: addr, Framework: "test"}, ttl, 5*time.Second, quiet)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.Registered():
	default:
		t.Fatalf("%s not registered within 5s", name)
	}
	t.Cleanup(func() { // before the server stops: a test may have closed it already
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Close(ctx)
	})
	return g
}

// Workers join and leave the pool: a graceful one at once, a crashed one
// when its lease expires; the shared settings follow their key.
func TestRegisterAndWatch(t *testing.T) {
	srv := etcdtest.Start(t)
	k := Keys{Prefix: "/t"}
	srv.Put(k.Backend(DefaultPool, "static-old"), `{"address":"127.0.0.1:50001"}`)
	srv.Put(k.Backend("other", "elsewhere"), `{"address":"127.0.0.1:50002"}`)
	srv.Put(k.Config(), "strategy: least_connections\n")
	rec, start := watch(t, srv, k)
	if len(start.Backends) != 1 || start.Backends[0].Name != "static-old" || string(start.Settings) != "strategy: least_connections\n" || start.Name != "etcd /t/config" {
		t.Fatalf("the start's read: %+v", start)
	}

	a := register(t, srv, k, "a", "127.0.0.1:50011", DefaultTTL)
	testnet.WaitFor(t, "a joins", func() bool { return rec.names() == "a static-old" })

	// A crash: the process stops keeping its lease alive (its client goes).
	crashCli := srv.Client()
	crashed, err := Register(crashCli, k, DefaultPool, "b", Registration{Address: "127.0.0.1:50012"}, time.Second, 5*time.Second, quiet)
	if err != nil {
		t.Fatal(err)
	}
	testnet.WaitFor(t, "b joins", func() bool { return rec.names() == "a b static-old" })
	crashCli.Close()
	left := time.Now()
	testnet.WaitFor(t, "b leaves when its lease expires", func() bool { return rec.names() == "a static-old" })
	if took := time.Since(left); took > 3*time.Second {
		t.Errorf("a crashed worker left after %v; want its 1s TTL and a little", took)
	}
	_ = crashed.Close(context.Background()) // its client is gone: nothing to do

	// A graceful leave deletes the key at once.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	testnet.WaitFor(t, "a leaves", func() bool { return rec.names() == "static-old" })

	srv.Put(k.Config(), "strategy: adaptive\n")
	testnet.WaitFor(t, "the settings change", func() bool { return rec.doc() == "strategy: adaptive\n" })
	if _, err := srv.Client().Delete(ctx, k.Config()); err != nil {
		t.Fatal(err)
	}
	testnet.WaitFor(t, "the settings go", func() bool { return rec.doc() == "" })

	// A bad registration is ignored; the others stay.
	srv.Put(k.Backend(DefaultPool, "bad"), `{"address":"nohost"}`)
	srv.Put(k.Backend(DefaultPool, "c"), `{"address":"127.0.0.1:50013"}`)
	testnet.WaitFor(t, "c joins, bad does not", func() bool { return rec.names() == "c static-old" })
}

// etcd stopped: the last known pool stays; restarted: the watcher resyncs
// and changes flow again, and a registration comes back by itself.
func TestEtcdOutage(t *testing.T) {
	srv := etcdtest.Start(t)
	k := Keys{Prefix: "/t"}
	lost := make(chan struct{}, 1)
	rec, _ := watchLogging(t, srv, k, slog.New(hook{"serving the last known pool", lost}))
	g := register(t, srv, k, "a", "127.0.0.1:50011", 2*time.Second)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := g.Close(ctx); err != nil {
			t.Errorf("Close after the outage: %v", err)
		}
	}()
	testnet.WaitFor(t, "a joins", func() bool { return rec.names() == "a" })

	srv.Stop()
	select {
	case <-lost:
	case <-time.After(testnet.WaitBound):
		t.Fatal("the watcher did not notice etcd was gone")
	}
	if got := rec.names(); got != "a" {
		t.Fatalf("during the outage the pool is %q; want the last known", got)
	}
	srv.Start()
	srv.Put(k.Backend(DefaultPool, "b"), `{"address":"127.0.0.1:50012"}`)
	testnet.WaitFor(t, "changes flow again, and a is registered again", func() bool { return rec.names() == "a b" })
}

// A watch that fell behind a compaction resyncs: a full read, then a watch.
func TestCompactionResyncs(t *testing.T) {
	srv := etcdtest.Start(t)
	k := Keys{Prefix: "/t"}
	cli := srv.Client()
	w, err := NewWatcher(cli, k, DefaultPool, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// Changes the watcher has not seen, then the history compacted away.
	srv.Put(k.Backend(DefaultPool, "a"), `{"address":"127.0.0.1:50011"}`)
	resp, err := cli.Put(ctx, k.Backend(DefaultPool, "b"), `{"address":"127.0.0.1:50012"}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	run, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(run, rec) }()
	defer func() { stop(); <-done }()
	testnet.WaitFor(t, "the resync finds a and b", func() bool { return rec.names() == "a b" })
}

// A name is one worker's: another address under it is refused, the same
// address again (a restart within the old lease's TTL) is not.
func TestNameTaken(t *testing.T) {
	srv := etcdtest.Start(t)
	k := Keys{Prefix: "/t"}
	a := register(t, srv, k, "a", "127.0.0.1:50011", DefaultTTL)
	_, err := Register(srv.Client(), k, DefaultPool, "a", Registration{Address: "127.0.0.1:50099"}, DefaultTTL, 5*time.Second, quiet)
	if !errors.Is(err, ErrNameTaken) || !strings.Contains(err.Error(), "127.0.0.1:50011") {
		t.Fatalf("a second worker under the same name: %v; want ErrNameTaken naming the holder", err)
	}
	again := register(t, srv, k, "a", "127.0.0.1:50011", DefaultTTL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The old lease's Close must not delete the new registration.
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Get(ctx, again.Key())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("after the old registration closed: %v, %v; want the new one kept", resp, err)
	}
	if err := again.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if resp, err := srv.Client().Get(ctx, again.Key()); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("after Close: %v, %v; want the key gone", resp, err)
	}
}
