package service

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// fakeServer blocks in serve until shutdown; busy makes shutdown wait for
// its context, like a server with a request that will not finish.
type fakeServer struct {
	stop chan struct{}
	busy bool
}

func (f *fakeServer) serve() error { <-f.stop; return nil }

func (f *fakeServer) shutdown(ctx context.Context) error {
	defer close(f.stop)
	if f.busy {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func TestServeUntilDoneClean(t *testing.T) {
	f := &fakeServer{stop: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeUntilDone(ctx, time.Second, f.serve, f.shutdown) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("clean shutdown returned %v", err)
	}
}

func TestServeUntilDoneTimeout(t *testing.T) {
	f := &fakeServer{stop: make(chan struct{}), busy: true}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := ServeUntilDone(ctx, 20*time.Millisecond, f.serve, f.shutdown)
	if !errors.Is(err, ErrShutdownTimeout) {
		t.Fatalf("got %v; want ErrShutdownTimeout", err)
	}
}

func TestServeUntilDoneServeFails(t *testing.T) {
	boom := errors.New("boom")
	err := ServeUntilDone(context.Background(), time.Second,
		func() error { return boom },
		func(context.Context) error { t.Error("shutdown called"); return nil })
	if !errors.Is(err, boom) {
		t.Fatalf("got %v; want boom", err)
	}
	err = ServeUntilDone(context.Background(), time.Second,
		func() error { return nil },
		func(context.Context) error { return nil })
	if err == nil {
		t.Fatal("a server that stops by itself must be an error")
	}
}

func TestListen(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	_, err = Listen(addr)
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Listen(%s) error = %v; want one naming the address, in use", addr, err)
	}
	if strings.Count(err.Error(), addr) != 1 {
		t.Errorf("error repeats the address: %v", err)
	}
	if _, err := Listen("127.0.0.1"); err == nil || !strings.Contains(err.Error(), `"127.0.0.1"`) {
		t.Errorf("Listen without port error = %v", err)
	}
	var _ net.Listener = ln
}

func TestRun(t *testing.T) {
	// Refused before serve: a bad setting, a bad address, a busy address.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{ListenAddress: "127.0.0.1:0", ServiceName: "x", WorkDelay: -1}, "work delay"},
		{Config{ListenAddress: "127.0.0.1:0"}, "service name"},
		{Config{ListenAddress: "nope", ServiceName: "x"}, `"nope"`},
		{Config{ListenAddress: busy.Addr().String(), ServiceName: "x"}, busy.Addr().String()},
	} {
		err := Run(context.Background(), tc.cfg, func(context.Context, net.Listener, Config) error {
			t.Errorf("Run(%+v) called serve", tc.cfg)
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%+v) = %v; want an error naming %s", tc.cfg, err, tc.want)
		}
	}

	// Accepted: serve gets ctx, cfg and a listener on the address, and its
	// error is Run's.
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "ctx")
	cfg := Config{ListenAddress: "127.0.0.1:0", ServiceName: "x"}
	boom := errors.New("boom")
	err = Run(ctx, cfg, func(c context.Context, ln net.Listener, got Config) error {
		defer ln.Close()
		if c.Value(key{}) != "ctx" {
			t.Error("serve did not get Run's context")
		}
		if got != cfg {
			t.Errorf("serve got %+v; want %+v", got, cfg)
		}
		if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() || a.Port == 0 {
			t.Errorf("serve got a listener on %v; want one on 127.0.0.1", ln.Addr())
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("Run = %v; want serve's error", err)
	}
}

func TestServeUntilDoneShutdownFails(t *testing.T) {
	boom := errors.New("boom")
	stop := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := ServeUntilDone(ctx, time.Second,
		func() error { <-stop; return nil },
		func(context.Context) error { close(stop); return boom })
	if !errors.Is(err, boom) || err.Error() != "shutdown: boom" {
		t.Fatalf("got %v; want shutdown: boom", err)
	}
}

// A listener that fails makes ServeHTTP return its error at once.
func TestServeHTTPListenerFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	err = ServeHTTP(context.Background(), ln, http.NotFoundHandler())
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ServeHTTP on a closed listener = %v; want net.ErrClosed", err)
	}
}
