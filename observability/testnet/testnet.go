// Package testnet holds what every module's tests need from the network:
// loopback addresses that are safe to hand to another process, TCP servers
// that stop with the test, waiting on a condition with a deadline that
// holds on a loaded machine, and a bounded load of clients. It is for tests
// only.
package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Port range Addr draws from: below the ephemeral range (32768 and up on
// Linux), where client sockets never take a port on their own, so a port
// found free stays free until the process it is given to binds it.
const (
	lowPort  = 20000
	highPort = 32000
)

var (
	mu     sync.Mutex
	handed = map[int]bool{}
)

// Addr returns a 127.0.0.1 address whose port nothing listens on, for a
// listener another process (or a config) will open: a port below the
// ephemeral range, never handed out twice by this process.
func Addr(tb testing.TB) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		p := lowPort + rand.IntN(highPort-lowPort)
		if handed[p] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // taken
		}
		ln.Close()
		handed[p] = true
		return ln.Addr().String()
	}
	tb.Fatalf("no free loopback port in %d-%d", lowPort, highPort)
	return ""
}

// Serve runs handle for each connection to a new loopback listener (port 0)
// until the test ends, then closes the listener and waits for the handlers
// (which must return once their connection is closed or they are done). It
// returns the listener's address. The connection is closed after handle.
func Serve(tb testing.TB, handle func(net.Conn)) string {
	tb.Helper()
	return ServeOn(tb, "127.0.0.1:0", handle)
}

// ServeOn is Serve on address.
func ServeOn(tb testing.TB, address string, handle func(net.Conn)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", address)
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); handle(c) })
		}
	})
	return ln.Addr().String()
}

// WaitBound is how long WaitFor waits: far above what any condition takes
// on an idle machine, so that a loaded 2-core one passes too.
const WaitBound = 10 * time.Second

// WaitFor polls cond every few milliseconds until it holds, and fails the
// test, naming what, if it does not within WaitBound.
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(WaitBound)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("after %v, still not: %s", WaitBound, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Load is clients sending requests one at a time, each until Stop or until
// its time limit has passed: a load loop that always stops by itself.
type Load struct {
	ok, failed atomic.Int64
	firstErr   atomic.Pointer[error]
	stop       chan struct{}
	stopOnce   sync.Once
	clients    sync.WaitGroup
}

// StartLoad starts clients goroutines, each calling request again and again
// for at most limit, and counting what it returns. Stop ends them; the test's
// end does too.
func StartLoad(tb testing.TB, clients int, limit time.Duration, request func() error) *Load {
	l := &Load{stop: make(chan struct{})}
	deadline := time.Now().Add(limit)
	for range clients {
		l.clients.Go(func() {
			for time.Now().Before(deadline) {
				select {
				case <-l.stop:
					return
				default:
				}
				if err := request(); err != nil {
					l.failed.Add(1)
					l.firstErr.CompareAndSwap(nil, &err)
				} else {
					l.ok.Add(1)
				}
			}
		})
	}
	tb.Cleanup(l.Stop)
	return l
}

// OK is how many requests have succeeded so far.
func (l *Load) OK() int64 { return l.ok.Load() }

// Failed is how many requests have failed so far.
func (l *Load) Failed() int64 { return l.failed.Load() }

// FirstError is the first failure's error, or nil.
func (l *Load) FirstError() error {
	if p := l.firstErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Stop ends the load and waits for every client's request in progress.
func (l *Load) Stop() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.clients.Wait()
}
