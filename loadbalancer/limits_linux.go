//go:build linux

package loadbalancer

import "syscall"

// raiseDescriptorLimit raises the soft RLIMIT_NOFILE to the hard limit and
// returns the soft limit in force. Go already does this at start-up (since
// 1.19); doing it here keeps the promise where the check is, whoever
// embeds the balancer.
func raiseDescriptorLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		raised := syscall.Rlimit{Cur: rl.Max, Max: rl.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			rl = raised
		}
	}
	return rl.Cur, nil
}
