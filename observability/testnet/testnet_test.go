package testnet

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAddrIsFreeBelowTheEphemeralRangeAndNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		a := Addr(t)
		_, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		if p, _ := strconv.Atoi(port); p < lowPort || p >= highPort {
			t.Fatalf("port %d outside %d-%d", p, lowPort, highPort)
		}
		if seen[a] {
			t.Fatalf("%s handed out twice", a)
		}
		seen[a] = true
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("%s is not free: %v", a, err)
		}
		ln.Close()
	}
}

func TestServeRunsTheHandlerAndStopsWithTheTest(t *testing.T) {
	var handled atomic.Int64
	t.Run("serve", func(t *testing.T) {
		addr := Serve(t, func(c net.Conn) { handled.Add(1); io.Copy(c, c) })
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "hi")
		c.(*net.TCPConn).CloseWrite()
		if got, _ := io.ReadAll(c); string(got) != "hi" {
			t.Fatalf("echo %q", got)
		}
	})
	if handled.Load() != 1 {
		t.Fatalf("handled %d connections", handled.Load())
	}
}

func TestWaitForReturnsOnceTheConditionHolds(t *testing.T) {
	start := time.Now()
	var n atomic.Int64
	WaitFor(t, "three polls", func() bool { return n.Add(1) >= 3 })
	if n.Load() != 3 || time.Since(start) > WaitBound {
		t.Fatalf("polled %d times in %v", n.Load(), time.Since(start))
	}
}

func TestLoadCountsEveryRequestAndStops(t *testing.T) {
	var calls atomic.Int64
	boom := errors.New("boom")
	l := StartLoad(t, 3, time.Minute, func() error {
		if calls.Add(1)%4 == 0 {
			return boom
		}
		return nil
	})
	WaitFor(t, "some failures", func() bool { return l.Failed() >= 5 })
	l.Stop()
	l.Stop() // a second Stop (and the test's cleanup) is harmless
	if n := calls.Load(); l.OK()+l.Failed() != n || l.OK() == 0 {
		t.Fatalf("%d ok + %d failed, %d calls", l.OK(), l.Failed(), n)
	}
	if !errors.Is(l.FirstError(), boom) {
		t.Fatalf("FirstError() = %v", l.FirstError())
	}
}

func TestLoadStopsAtItsLimit(t *testing.T) {
	l := StartLoad(t, 2, 500*time.Millisecond, func() error { return nil })
	done := make(chan struct{})
	go func() { l.clients.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(WaitBound):
		t.Fatal("the load did not stop at its limit")
	}
	if l.FirstError() != nil || l.Failed() != 0 || l.OK() == 0 {
		t.Fatalf("%d ok, %d failed, first error %v", l.OK(), l.Failed(), l.FirstError())
	}
}
