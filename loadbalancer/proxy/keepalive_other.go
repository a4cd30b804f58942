//go:build unix && !linux

package proxy

// listenerKeepAlive does nothing here: the goroutine engine sets keep-alive
// on each accepted connection (serve_other.go).
func listenerKeepAlive(int) error { return nil }
