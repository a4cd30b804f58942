//go:build !linux

package proxy

func runAsChild() (int, bool) { return 0, false }
