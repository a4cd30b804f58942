package workerfasthttp

import (
	"context"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// watchClient returns a context that ends when the client of rc closes or
// resets its connection, or when parent ends; call stop before the handler
// returns.
//
// fasthttp reads nothing while a handler runs, so it cannot see the client
// leave. The watcher waits for the socket to become readable and peeks at it
// (MSG_PEEK, nothing is consumed): zero bytes is the client's FIN, an error
// its reset. If bytes are waiting (a pipelined request), the client is still
// there and the watch ends without cancelling.
func watchClient(parent context.Context, rc *fasthttp.RequestCtx) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	sc, ok := rc.Conn().(syscall.Conn)
	if !ok {
		return ctx, cancel
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return ctx, cancel
	}
	// Through rc, so fasthttp restores its own deadlines after the handler:
	// clear the request's read deadline, which would end the watch early.
	if err := rc.SetReadDeadline(time.Time{}); err != nil {
		return ctx, cancel
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		gone := false
		var buf [1]byte
		_ = raw.Read(func(fd uintptr) bool {
			for {
				n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
				switch {
				case err == syscall.EINTR:
					continue
				case err == syscall.EAGAIN:
					return false // nothing yet: wait until the poller says readable
				case err != nil, n == 0:
					gone = true
				}
				return true
			}
		})
		if gone {
			cancel()
		}
	}()
	return ctx, func() {
		// A deadline in the past wakes the watcher's Read.
		if rc.SetReadDeadline(time.Now()) != nil {
			_ = rc.Conn().SetReadDeadline(time.Now())
		}
		<-done
		cancel()
	}
}
