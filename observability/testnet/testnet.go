// Package testnet holds what every module's tests need from the network:
// loopback addresses that are safe to hand to another process, TCP servers
// that stop with the test, and waiting on a condition with a deadline that
// holds on a loaded machine. It is for tests only.
package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
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
