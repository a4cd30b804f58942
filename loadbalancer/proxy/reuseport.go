//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package proxy

import "golang.org/x/sys/unix"

// soReusePort is SO_REUSEPORT, which the syscall package lacks on Linux.
const soReusePort = unix.SO_REUSEPORT
