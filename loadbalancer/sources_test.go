package loadbalancer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// fileSources starts a balancer from a config file (at path, holding data)
// with backend a, and returns it with its Sources, discovery off.
func fileSources(t *testing.T, a *backendServer) (lb *Balancer, src *Sources, path string, data []byte) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "lb.yaml")
	writeConfig(t, path, "round_robin", a)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.LoadDataWith(path, data, config.Fleet{})
	if err != nil {
		t.Fatal(err)
	}
	lb = startBalancer(t, cfg)
	return lb, NewSources(lb, path, data, config.Fleet{}), path, data
}

// Each source replaces its part, and the whole is applied; a part that does
// not build changes nothing and leaves the other sources working.
func TestSourcesLayerTheFleetOverTheFile(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	lb, src, path, _ := fileSources(t, a)
	names := func() string {
		var ns []string
		for _, be := range lb.Config().Backends {
			ns = append(ns, be.Name)
		}
		return strings.Join(ns, " ")
	}

	found := []config.Backend{{ID: 1 << 30, Name: "b", Address: b.addr, Weight: 1}}
	if err := src.SetFleetBackends(found); err != nil {
		t.Fatal(err)
	}
	if got := names(); got != "a b" || lb.Snapshot().LastReloadSource != SourceFleet {
		t.Fatalf("backends %q from %s; want a b from the fleet", got, lb.Snapshot().LastReloadSource)
	}
	if seen := answers(t, lb, 4); !seen["a"] || !seen["b"] {
		t.Errorf("answers %v: want the file's and the discovered backend's", seen)
	}

	if err := src.SetFleetSettings("etcd /t/config", []byte("strategy: least_connections\n")); err != nil {
		t.Fatal(err)
	}
	if lb.Config().Strategy != "least_connections" || names() != "a b" {
		t.Fatalf("strategy %s, backends %s", lb.Config().Strategy, names())
	}

	// A bad setting: rejected and counted; nothing changes, and the fleet's
	// backends still apply with the last good settings.
	failed := lb.Snapshot().ReloadsFailed
	if err := src.SetFleetSettings("etcd /t/config", []byte("strategy: random\n")); err == nil || !strings.Contains(err.Error(), "etcd /t/config: strategy") {
		t.Fatalf("a bad strategy: %v", err)
	}
	if s := lb.Snapshot(); s.ReloadsFailed != failed+1 || lb.Config().Strategy != "least_connections" {
		t.Fatalf("after a bad setting: %d failed, strategy %s", s.ReloadsFailed, lb.Config().Strategy)
	}
	found = append(found, config.Backend{ID: 1<<30 + 1, Name: "c", Address: c.addr, Weight: 1})
	if err := src.SetFleetBackends(found); err != nil {
		t.Fatal(err)
	}
	if names() != "a b c" || lb.Config().Strategy != "least_connections" {
		t.Fatalf("backends %s, strategy %s", names(), lb.Config().Strategy)
	}

	// A bad file: rejected; the fleet's changes go on with the last good file.
	writeInPlace(t, path, "strategy: [\n")
	bad, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.ReloadFile(bad, true); err == nil {
		t.Fatal("a broken file was applied")
	}
	if err := src.SetFleetBackends(found[:1]); err != nil {
		t.Fatalf("the fleet's change with a broken file on disk: %v", err)
	}
	if names() != "a b" {
		t.Fatalf("backends %s; want c drained", names())
	}
	// The file's own edits apply over the fleet's part.
	writeConfig(t, path, "round_robin", a, c)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.ReloadFile(good, false); err != nil {
		t.Fatal(err)
	}
	if names() != "a c b" || lb.Config().Strategy != "least_connections" {
		t.Fatalf("backends %s, strategy %s; want the file's a c, the fleet's b, the fleet's strategy", names(), lb.Config().Strategy)
	}
}

// A part rejected only in combination with another's comes in once the
// other changes: each source's latest part is kept, not only the last good.
func TestSourcesRetryARejectedPartWhenAnotherChanges(t *testing.T) {
	a := newBackend(t, "a")
	lb, src, _, data := fileSources(t, a)
	applied := 0
	src.AfterApply = func() { applied++ }
	if err := src.SetFleetSettings("etcd /t/config", []byte("health: {passive: {max_fails: 3}}\n")); err != nil {
		t.Fatal(err)
	}
	// The file: another strategy, and no passive window, which the fleet's
	// max_fails forbids.
	edited := strings.Replace(string(data), "strategy: round_robin", "strategy: least_connections\nhealth:\n  passive: {fail_duration: 0}", 1)
	edited = strings.Replace(edited, "health:\n  interval: 50ms\n", "", 1)
	if err := src.ReloadFile([]byte(edited), false); err == nil {
		t.Fatalf("the file was applied with the fleet's max_fails and no fail_duration:\n%s", edited)
	}
	if lb.Config().Strategy != "round_robin" {
		t.Fatalf("strategy %s after a rejected file", lb.Config().Strategy)
	}
	// The fleet drops max_fails: the file's edit comes in with it.
	if err := src.SetFleetSettings("etcd /t/config", []byte("health: {passive: {max_fails: 0}}\n")); err != nil {
		t.Fatal(err)
	}
	if lb.Config().Strategy != "least_connections" {
		t.Fatalf("strategy %s; want the file's edit, rejected before, applied now", lb.Config().Strategy)
	}
	if applied != 2 {
		t.Errorf("AfterApply ran %d times; want after each of the two applies", applied)
	}
}
