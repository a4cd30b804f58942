package backend

import (
	"errors"
	"os"
	"syscall"
)

// LocalFailure reports whether err is this host's failure, not the
// backend's: out of descriptors (EMFILE, ENFILE), of socket buffers or
// memory (ENOBUFS, ENOMEM), or of local ports (EADDRNOTAVAIL, and EAGAIN
// from connect). Such a failed dial says nothing about the backend, so it
// must neither mark it down nor count against it. err may be a bare
// syscall.Errno or wrapped (*net.OpError, *os.SyscallError, %w).
func LocalFailure(err error) bool {
	if err == nil {
		return false
	}
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EADDRNOTAVAIL} {
		if errors.Is(err, errno) {
			return true
		}
	}
	if !errors.Is(err, syscall.EAGAIN) {
		return false
	}
	// EAGAIN means "no local port" only from connect; from another named
	// syscall it means something else.
	var se *os.SyscallError
	return !errors.As(err, &se) || se.Syscall == "connect"
}
