//go:build unix && !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package proxy

// soReusePort: this system has no SO_REUSEPORT; setting -1 fails, and
// ListenReusePort says so.
const soReusePort = -1
