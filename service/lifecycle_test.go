package service

import (
	"context"
	"errors"
	"net"
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
