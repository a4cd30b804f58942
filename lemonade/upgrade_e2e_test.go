package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/observability/testnet"
)

// An upgrade with proxy.reuse_port: under load, a second balancer starts on
// the same address, SIGTERM stops the first, and not one request is
// refused or fails.
func TestUpgradeWithReusePortRefusesNothing(t *testing.T) {
	w1, w2 := freeAddr(t), freeAddr(t)
	worker(t, "nethttp", w1, "w1", 0)
	worker(t, "gin", w2, "w2", 0)
	listen := freeAddr(t)
	lbConfig := func() string {
		path := filepath.Join(t.TempDir(), "lb.yaml")
		body := fmt.Sprintf("proxy: {listen_address: %q, reuse_port: true}\nadmin: {listen_address: %q}\nruntime: {drain_timeout_millis: 5000}\nbackends: [{address: %q}, {address: %q}]\n",
			listen, freeAddr(t), w1, w2)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	old := start(t, nil, "lb", "-c", lbConfig())
	waitListening(t, old, listen)

	load := testnet.StartLoad(t, 4, time.Minute, func() error { return getHealth(listen) })
	testnet.WaitFor(t, "load through the old balancer", func() bool { return load.OK() > 100 })

	next := start(t, nil, "lb", "-c", lbConfig())
	testnet.WaitFor(t, "the new balancer shares the old one's socket", func() bool {
		return strings.Contains(next.stderr.String(), "sharing the listening socket")
	})
	if code := old.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("the old balancer exited %d", code)
	}
	after := load.OK()
	testnet.WaitFor(t, "load through the new balancer alone", func() bool { return load.OK() > after+300 })
	load.Stop()
	if n := load.Failed(); n != 0 {
		t.Fatalf("%d of %d requests failed across the upgrade; the first: %v", n, n+load.OK(), load.FirstError())
	}
	t.Logf("%d requests across the upgrade, none refused or failed", load.OK())
	if code := next.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("the new balancer exited %d", code)
	}
}
