package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			deadline := time.Now().Add(time.Minute)
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				if code, _, err := httpGet("http://" + listen + "/health"); err != nil || code != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprint(code, err))
				} else {
					ok.Add(1)
				}
			}
		})
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	testnet.WaitFor(t, "load through the old balancer", func() bool { return ok.Load() > 100 })

	next := start(t, nil, "lb", "-c", lbConfig())
	testnet.WaitFor(t, "the new balancer shares the old one's socket", func() bool {
		return strings.Contains(next.stderr.String(), "sharing the listening socket")
	})
	if code := old.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("the old balancer exited %d", code)
	}
	after := ok.Load()
	testnet.WaitFor(t, "load through the new balancer alone", func() bool { return ok.Load() > after+300 })
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed across the upgrade; the first: %v", n, n+ok.Load(), firstErr.Load())
	}
	t.Logf("%d requests across the upgrade, none refused or failed", ok.Load())
	if code := next.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("the new balancer exited %d", code)
	}
}
