package proxy

import (
	"syscall"
	"time"
)

// listenerKeepAlive turns keep-alive on for every socket the listener
// accepts: on Linux they inherit it, so the event loops pay no syscall per
// connection for it.
func listenerKeepAlive(fd int) error {
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1); err != nil {
		return err
	}
	return syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, int(keepAliveIdle/time.Second))
}
