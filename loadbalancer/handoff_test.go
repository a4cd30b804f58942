//go:build unix

package loadbalancer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/proxy"
	"github.com/lemonade-lb/lemonade/observability/testnet"
)

// lockedBuffer is a log destination tests read while the balancer writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// An upgrade on one address: the second balancer shares the first's
// listening socket, and the first's shutdown under load fails no request.
func TestReusePortUpgradeLosesNothing(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	cfg := testConfig(t, "round_robin", a, b)
	cfg.Proxy.ListenAddress = freePort(t)
	cfg.Proxy.ReusePort = true
	cfg.Runtime.DrainTimeout = 5 * time.Second

	ctxOld, stopOld := context.WithCancel(context.Background())
	old, err := Start(ctxOld, quiet, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stopOld(); <-old.Done() }()

	// Load: clients one request at a time, each on a new connection, until stopped.
	load := testnet.StartLoad(t, 4, time.Minute, func() error {
		_, err := get(cfg.Proxy.ListenAddress, "")
		return err
	})
	waitFor(t, "load through the first balancer", func() bool { return load.OK() > 50 })

	var logs lockedBuffer
	ctxNew, stopNew := context.WithCancel(context.Background())
	next, err := Start(ctxNew, slog.New(slog.NewTextHandler(&logs, nil)), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stopNew(); <-next.Done() }()
	if !strings.Contains(logs.String(), "sharing the listening socket") {
		t.Fatalf("the second balancer did not share the first's socket:\n%s", logs.String())
	}
	before := next.Snapshot().Proxy.Accepted
	waitFor(t, "both balancers accept", func() bool { return next.Snapshot().Proxy.Accepted > before+20 })

	stopOld()
	<-old.Done()
	after := load.OK()
	waitFor(t, "load through the second balancer alone", func() bool { return load.OK() > after+200 })
	load.Stop()
	if n := load.Failed(); n != 0 {
		t.Fatalf("%d of %d requests failed across the upgrade; the first: %v", n, n+load.OK(), load.FirstError())
	}
	t.Logf("%d requests across the upgrade, none failed", load.OK())
}

// With no balancer on the address, reuse_port binds with SO_REUSEPORT (a
// plain second bind then succeeds too), and a stale offer path is ignored.
func TestReusePortWithoutASibling(t *testing.T) {
	a := newBackend(t, "a")
	cfg := testConfig(t, "round_robin", a)
	cfg.Proxy.ListenAddress = freePort(t)
	cfg.Proxy.ReusePort = true
	dir, err := handoffDir()
	if err != nil {
		t.Fatal(err)
	}
	pattern := handoffPattern(dir, cfg.Proxy.ListenAddress)
	stalePath := strings.Replace(pattern, "*", "999999999", 1)
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: stalePath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close() // the path stays, nobody behind it
	t.Cleanup(func() { os.Remove(stalePath) })

	lb := startBalancer(t, cfg)
	if _, err := get(lb.Addr().String(), ""); err != nil {
		t.Fatal(err)
	}
	beside, err := proxy.ListenReusePort(cfg.Proxy.ListenAddress)
	if err != nil {
		t.Fatalf("SO_REUSEPORT: a second listener on %s: %v", cfg.Proxy.ListenAddress, err)
	}
	beside.Close()
	if _, err := proxy.Listen(cfg.Proxy.ListenAddress); err == nil {
		t.Error("a listener without SO_REUSEPORT bound the same address")
	}
	// The stale offer is gone, and the running balancer offers its socket.
	if _, err := os.Lstat(stalePath); err == nil {
		t.Errorf("the stale offer %s is still there", stalePath)
	}
	own, _ := filepath.Glob(strings.Replace(pattern, "*", fmt.Sprintf("%d-*", os.Getpid()), 1))
	if len(own) != 1 {
		t.Errorf("offers of this process for the address: %v; want one", own)
	}
}

// A handed-over descriptor must be a listening stream socket on the
// address asked for.
func TestReceiveListenerChecksWhatItGets(t *testing.T) {
	dir := t.TempDir()
	offer := func(name string, fd int) string {
		path := filepath.Join(dir, name)
		ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ul.Close() })
		go func() {
			c, err := ul.AcceptUnix()
			if err != nil {
				return
			}
			defer c.Close()
			_ = sendListener(c, fd)
		}()
		return path
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	connFd, err := dupListenerLike(conn.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(connFd)
	lnFd, err := dupListener(ln.(*net.TCPListener))
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(lnFd)

	if _, err := receiveFrom(offer("conn.sock", connFd), ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "not a listening socket") {
		t.Errorf("a connected socket: %v", err)
	}
	if _, err := receiveFrom(offer("other.sock", lnFd), "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "not on 127.0.0.1:1") {
		t.Errorf("a listener on another address: %v", err)
	}
	got, err := receiveFrom(offer("good.sock", lnFd), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	got.Close()
	if _, err := receiveFrom(filepath.Join(dir, "nobody.sock"), ln.Addr().String()); !errors.Is(err, errNoSibling) {
		t.Errorf("no offer: %v", err)
	}
}

// dupListenerLike duplicates a connection's descriptor, as dupListener does
// a listener's.
func dupListenerLike(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = syscall.Dup(int(s)) }); err != nil {
		return -1, err
	}
	return fd, derr
}

func TestSameAddress(t *testing.T) {
	for _, c := range []struct {
		got, want string
		same      bool
	}{
		{"127.0.0.1:80", "127.0.0.1:80", true},
		{"[::]:80", ":80", true},
		{"127.0.0.1:80", "localhost:80", true},
		{"127.0.0.1:80", "127.0.0.2:80", false},
		{"127.0.0.1:80", "127.0.0.1:81", false},
		{"127.0.0.1:80", "nonsense", false},
	} {
		if got := sameAddress(c.got, c.want); got != c.same {
			t.Errorf("sameAddress(%s, %s) = %v", c.got, c.want, got)
		}
	}
}
