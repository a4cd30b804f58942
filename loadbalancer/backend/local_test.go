package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestLocalFailure(t *testing.T) {
	dial := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"EMFILE from socket", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}, true},
		{"ENFILE", dial(syscall.ENFILE), true},
		{"ENOBUFS", dial(syscall.ENOBUFS), true},
		{"ENOMEM", dial(syscall.ENOMEM), true},
		{"EADDRNOTAVAIL", dial(syscall.EADDRNOTAVAIL), true},
		{"EAGAIN from connect", dial(syscall.EAGAIN), true},
		{"bare EMFILE (raw syscalls)", syscall.EMFILE, true},
		{"bare EAGAIN (raw connect)", syscall.EAGAIN, true},
		{"wrapped with %w", fmt.Errorf("check: %w", dial(syscall.EMFILE)), true},
		{"EAGAIN from read", os.NewSyscallError("read", syscall.EAGAIN), false},
		{"refused", dial(syscall.ECONNREFUSED), false},
		{"reset", dial(syscall.ECONNRESET), false},
		{"unreachable", dial(syscall.EHOSTUNREACH), false},
		{"timeout", context.DeadlineExceeded, false},
		{"other", errors.New("EMFILE"), false},
	} {
		if got := LocalFailure(tc.err); got != tc.want {
			t.Errorf("%s: LocalFailure(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// A real refused dial is the backend's failure.
func TestLocalFailureOfARealDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		t.Skip("something listens on the freed port")
	}
	if LocalFailure(err) {
		t.Fatalf("refused dial %v reported as a local failure", err)
	}
}
