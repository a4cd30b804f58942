package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// writeDrainConfig writes a balancer config with one backend and the given
// drain timeout.
func writeDrainConfig(t *testing.T, listen, backend string, drain time.Duration) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lb.yaml")
	body := fmt.Sprintf("runtime:\n  drain_timeout_millis: %d\nproxy:\n  listen_address: %q\nstrategy: round_robin\nhealth:\n  interval: 1000\n  timeout: 500\nbackends:\n  - id: 0\n    name: w\n    address: %q\n",
		drain.Milliseconds(), listen, backend)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// workResult is one GET /work on a connection of its own.
type workResult struct {
	dialed, connected, ended int64 // unix ns: the dial began, the connection was established, the answer ended
	connectFailed            bool
	err                      error // nil: a 200 with the worker's answer
}

func getWork(addr string, connected func()) (r workResult) {
	r.dialed = time.Now().UnixNano()
	defer func() { r.ended = time.Now().UnixNano() }()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	r.connected = time.Now().UnixNano()
	if err != nil {
		r.connectFailed, r.err = true, err
		return r
	}
	defer c.Close()
	connected()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /work HTTP/1.1\r\nHost: lemonade\r\nConnection: close\r\n\r\n"); err != nil {
		r.err = err
		return r
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		r.err = err
		return r
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		r.err = err
	case resp.StatusCode != 200 || !strings.Contains(string(body), "duration_ms"):
		r.err = fmt.Errorf("status %d, %q", resp.StatusCode, body)
	}
	return r
}

// refusedAtConnect reports whether a failed connect was refused. A SYN that
// meets the listening socket as it closes may be answered with a reset,
// which gVisor's connect reports as ECONNRESET (Linux: ECONNREFUSED); either
// way the kernel refused the connection before it was established.
func refusedAtConnect(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// Row "SIGTERM under load": the requests in flight when the signal comes
// complete, new connections are refused, and the process exits 0 once they
// are done, before the drain timeout; a second signal during a drain exits
// at once with code 1 (main.go's signalContext), cutting what is left.
func TestSIGTERMUnderLoadDrainsInFlightAndASecondSignalExitsAtOnce(t *testing.T) {
	const (
		clients = 16
		workMS  = 300
		drain   = 5 * time.Second
	)
	wAddr, lbAddr := freeAddr(t), freeAddr(t)
	worker(t, "nethttp", wAddr, "slow", workMS)
	lb := start(t, nil, "lb", "-c", writeDrainConfig(t, lbAddr, wAddr, drain))
	waitListening(t, lb, lbAddr)

	var signalled atomic.Int64 // unix ns just before SIGTERM; 0 before
	var inFlight, completed atomic.Int64
	var mu sync.Mutex
	var results []workResult
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			deadline := time.Now().Add(30 * time.Second)
			for n := 0; n < 1000 && time.Now().Before(deadline) && signalled.Load() == 0; n++ {
				r := getWork(lbAddr, func() { inFlight.Add(1) })
				if !r.connectFailed {
					inFlight.Add(-1)
				}
				if r.err == nil {
					completed.Add(1)
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { signalled.CompareAndSwap(0, time.Now().UnixNano()); wg.Wait() })
	defer stopLoad()
	for deadline := time.Now().Add(20 * time.Second); completed.Load() < 2*clients || inFlight.Load() < clients; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("load not steady within 20s: %d completed, %d in flight", completed.Load(), inFlight.Load())
		}
	}

	sigAt := time.Now()
	signalled.Store(sigAt.UnixNano())
	if err := lb.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused once the listener is closed.
	var refusedAfter time.Duration
	for {
		c, err := net.DialTimeout("tcp", lbAddr, time.Second)
		if err != nil {
			if !refusedAtConnect(err) {
				t.Fatalf("a new connection after SIGTERM: %v, want refused", err)
			}
			refusedAfter = time.Since(sigAt)
			break
		}
		c.Close()
		if time.Since(sigAt) > 5*time.Second {
			t.Fatal("new connections still accepted 5s after SIGTERM")
		}
		time.Sleep(5 * time.Millisecond)
	}
	code := lb.wait(t)
	drained := time.Since(sigAt)
	stopLoad()
	if code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	if drained >= drain || strings.Contains(lb.stderr.String(), "drain timeout reached") {
		t.Fatalf("exited %v after SIGTERM with the %v drain timeout: the drain did not end with the last request", drained, drain)
	}
	var before, atSignal, atSignalOK, raced, racedOK, racedRefused int
	var lost []string
	for _, r := range results {
		switch {
		case r.ended < sigAt.UnixNano(): // done before the signal
			before++
			if r.err != nil {
				lost = append(lost, "before the signal: "+r.err.Error())
			}
		case !r.connectFailed && r.connected < sigAt.UnixNano(): // in flight at the signal
			atSignal++
			if r.err == nil {
				atSignalOK++
			} else {
				lost = append(lost, r.err.Error())
			}
		case r.dialed < sigAt.UnixNano(): // the dial raced the signal
			raced++
			switch {
			case r.err == nil:
				racedOK++
			case r.connectFailed && refusedAtConnect(r.err):
				racedRefused++
			default:
				lost = append(lost, "raced the signal: "+r.err.Error())
			}
		}
	}
	if len(lost) != 0 {
		t.Fatalf("%d requests lost: %v", len(lost), lost[:min(5, len(lost))])
	}
	if atSignal < clients/2 {
		t.Fatalf("only %d requests in flight at SIGTERM, want about %d", atSignal, clients)
	}

	// A second signal during a drain: a connection that never ends keeps
	// the drain going (30s), and SIGINT ends the process at once, code 1.
	var got atomic.Int64
	holdAddr, _ := tcpServer(t, func(c net.Conn) {
		buf := make([]byte, 512)
		for {
			n, err := c.Read(buf)
			got.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	lbAddr2 := freeAddr(t)
	lb2 := start(t, nil, "lb", "-c", writeDrainConfig(t, lbAddr2, holdAddr, 30*time.Second))
	waitListening(t, lb2, lbAddr2)
	held, err := net.Dial("tcp", lbAddr2)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	io.WriteString(held, "hold")
	for deadline := time.Now().Add(10 * time.Second); got.Load() < 4; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the held connection's bytes never reached the backend")
		}
	}
	if err := lb2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", lbAddr2, time.Second)
		if err != nil && strings.Contains(lb2.stderr.String(), "load balancer draining") {
			break
		}
		if err == nil {
			c.Close()
		}
		if !lb2.running() || time.Now().After(deadline) {
			t.Fatalf("not draining 10s after SIGTERM (running: %v):\n%s", lb2.running(), lb2.stderr.String())
		}
	}
	secondAt := time.Now()
	if err := lb2.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	code = lb2.wait(t)
	exitedAfter := time.Since(secondAt)
	if code != 1 || !strings.Contains(lb2.stderr.String(), "second signal: exiting now") {
		t.Fatalf("second signal during the drain: exit %d, want 1 and the log line:\n%s", code, lb2.stderr.String())
	}
	if exitedAfter > 2*time.Second {
		t.Fatalf("second signal: exited after %v, want at once (the drain timeout is 30s)", exitedAfter)
	}
	if err := readUntilClosed(held, 5*time.Second); err != nil {
		t.Fatalf("connection held through the exit: %v", err)
	}
	t.Logf("measured: SIGTERM after %d requests, with %d in flight (worker -d %d, %d clients): %d completed, 0 lost; %d more raced the signal (%d ok, %d refused, 0 lost); new connections refused %v after the signal; exit 0 after a %s drain (drain_timeout %v); second signal during a drain: exit 1 after %v, open connections cut",
		before, atSignal, workMS, clients, atSignalOK, raced, racedOK, racedRefused, refusedAfter.Round(time.Millisecond), fmt.Sprintf("%.2fs", drained.Seconds()), drain, exitedAfter.Round(time.Millisecond))
}

// readUntilClosed reads c until it ends (EOF or a reset) within d.
func readUntilClosed(c net.Conn, d time.Duration) error {
	c.SetReadDeadline(time.Now().Add(d))
	if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("still open after %v", d)
	}
	return nil
}
