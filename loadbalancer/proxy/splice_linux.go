package proxy

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// Why not plain io.Copy: Go's splice keeps its pipe for the whole copy, so
// every connection that has moved a byte holds two pipes (four descriptors)
// while it sits idle. This loop takes a pipe from a pool only while bytes are
// in flight, so an idle connection costs its two sockets and nothing else,
// and it makes the same syscalls per chunk as the standard library's.

// maxChunk is what one splice moves at most: the default pipe capacity.
const maxChunk = 64 << 10

// pipe is a kernel pipe used as splice's buffer; the pool closes the ones it
// drops through the cleanup.
type pipe struct {
	r, w    int
	cleanup runtime.Cleanup
}

var pipes = sync.Pool{New: func() any {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return nil
	}
	p := &pipe{r: fds[0], w: fds[1]}
	p.cleanup = runtime.AddCleanup(p, closeFDs, fds)
	return p
}}

func closeFDs(fds [2]int) {
	syscall.Close(fds[0])
	syscall.Close(fds[1])
}

// close closes a pipe that must not go back to the pool (it may hold bytes).
func (p *pipe) close() {
	p.cleanup.Stop()
	closeFDs([2]int{p.r, p.w})
}

// splicer moves the bytes of one direction, src to dst, through a pooled
// pipe. Its fill and drain are bound once, so a chunk allocates nothing.
type splicer struct {
	src, dst    syscall.RawConn
	p           *pipe
	n           int   // bytes in the pipe
	err         error // syscall error of the last splice
	written     int64
	fill, drain func(fd uintptr) bool
}

var errNoPipe = errors.New("proxy: no pipe for splice (out of file descriptors?)")

// fillPipe is called by RawConn.Read: it splices what src has into a pipe
// taken from the pool, and gives the pipe back if there was nothing to read,
// so waiting for the next bytes holds none.
func (s *splicer) fillPipe(fd uintptr) bool {
	p, _ := pipes.Get().(*pipe)
	if p == nil {
		s.err = errNoPipe
		return true
	}
	for {
		n, err := syscall.Splice(int(fd), nil, p.w, nil, maxChunk, spliceFlags)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			pipes.Put(p)
			return false
		}
		s.p, s.n, s.err = p, int(n), err
		return true
	}
}

// drainPipe is called by RawConn.Write: it splices the pipe's bytes into dst,
// waiting (by returning false) while dst's send buffer is full.
func (s *splicer) drainPipe(fd uintptr) bool {
	for s.n > 0 {
		n, err := syscall.Splice(s.p.r, nil, int(fd), nil, s.n, spliceFlags)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			s.err = err
			return true
		}
		s.n -= int(n)
		s.written += int64(n)
	}
	return true
}

const spliceFlags = 0x1 | 0x2 // SPLICE_F_MOVE | SPLICE_F_NONBLOCK

func newSplicer(dst, src *net.TCPConn) (*splicer, error) {
	srcRC, err := src.SyscallConn()
	if err != nil {
		return nil, err
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &splicer{src: srcRC, dst: dstRC}
	s.fill, s.drain = s.fillPipe, s.drainPipe
	return s, nil
}

// copyConn copies src to dst until src's EOF (nil error) or an error. first
// runs once, when the first bytes arrive. With idle > 0, a wait longer than
// idle ends the copy with os.ErrDeadlineExceeded unless l saw activity in
// the other direction meanwhile.
func copyConn(dst, src *net.TCPConn, l *link, idle time.Duration, first func()) (int64, error) {
	s, err := newSplicer(dst, src)
	if err != nil {
		return 0, err
	}
	for {
		if idle > 0 {
			src.SetReadDeadline(time.Now().Add(idle))
		}
		s.p, s.n, s.err = nil, 0, nil
		if err := s.src.Read(s.fill); err != nil {
			if idle > 0 && errors.Is(err, os.ErrDeadlineExceeded) && l.activeWithin(idle) {
				continue // the other direction is busy: not idle
			}
			return s.written, err
		}
		if s.err != nil || s.n == 0 { // an error, or EOF
			if s.p != nil {
				pipes.Put(s.p) // empty
			}
			return s.written, s.err
		}
		if first != nil {
			first()
			first = nil
		}
		if idle > 0 {
			l.touch()
		}
		if err := s.dst.Write(s.drain); err != nil || s.err != nil {
			s.p.close() // it may still hold bytes: never reuse it
			if err == nil {
				err = s.err
			}
			return s.written, err
		}
		pipes.Put(s.p)
	}
}
