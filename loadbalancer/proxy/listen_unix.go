//go:build unix

package proxy

import (
	"fmt"
	"syscall"
)

// listenerOptions sets, before listen(2), what every accepted socket
// inherits: no Nagle delay, urgent data inline, so that a byte sent with
// MSG_OOB is passed on in its place in the stream rather than dropped, and
// keep-alive probes after keepAliveIdle where the listener can pass them on
// (listenerKeepAlive).
func listenerOptions(_, _ string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) { err = setListenerOptions(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}

func setListenerOptions(fd int) error {
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
		return err
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_OOBINLINE, 1); err != nil {
		return err
	}
	return listenerKeepAlive(fd)
}

// hasUnread reports whether bytes wait in the socket's receive queue, read
// by no one: a close then loses them, so it must reset (Linux does by
// itself; not every system does). A peek, portable where FIONREAD's number
// is not.
func hasUnread(fd int) bool {
	var b [1]byte
	n, _, _ := syscall.Recvfrom(fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n > 0
}

// reusePortOptions is listenerOptions and SO_REUSEPORT.
func reusePortOptions(network, address string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1) }); cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("SO_REUSEPORT: %w", err)
	}
	return listenerOptions(network, address, c)
}
