package proxy

import (
	"net"
	"syscall"
	"unsafe"
)

// waitReadable blocks until c has bytes to read, or EOF or an error pending,
// without reading them and without holding a buffer: an idle connection costs
// no user-space memory, and the bytes are left for splice(2).
func waitReadable(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var b [1]byte
	return rc.Read(func(fd uintptr) bool {
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		return errno != syscall.EAGAIN
	})
}
