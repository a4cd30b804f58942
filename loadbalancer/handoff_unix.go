//go:build unix

package loadbalancer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/config"
	"github.com/lemonade-lb/lemonade/loadbalancer/proxy"
)

// With proxy.reuse_port a new balancer can start beside a running one on
// the same address. Two sockets in one SO_REUSEPORT group are not enough
// for an upgrade with nothing lost: the kernel hashes each new connection
// to one of them, and when the old process closes its socket, connections
// that were queued on it and not yet accepted are reset (Linux migrates
// them only with net.ipv4.tcp_migrate_req=1, since 5.14). So the balancer
// already on the address hands its listening socket to the newcomer over a
// Unix socket, and both accept from that one socket; when the old one
// stops, it only closes its own descriptor, the socket and its queue live
// on in the new process, and nothing is lost. SO_REUSEPORT is the fallback
// when no balancer answers there.

// handoffTimeout bounds one handoff, on either side.
const handoffTimeout = 2 * time.Second

// offers numbers this process's offers, for paths of their own.
var offers atomic.Int64

// errNoSibling is receiveListener's answer when no balancer offers a socket.
var errNoSibling = errors.New("no balancer offers a listening socket there")

// handoffDir is the private directory (this user's, mode 0700) where
// balancers offer their listening sockets: $XDG_RUNTIME_DIR/lemonade, or
// lemonade-UID in the temporary directory.
func handoffDir() (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("lemonade-%d", os.Getuid()))
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
		dir = filepath.Join(rt, "lemonade")
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return "", err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !st.IsDir() || !ok || int(sys.Uid) != os.Getuid() || st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is not a directory of this user's alone (mode 0700): not offering or taking listening sockets there", dir)
	}
	return dir, nil
}

// handoffPattern is the name of every offer for address in dir: one per
// balancer process, so that a balancer that comes and goes never removes
// another's.
func handoffPattern(dir, address string) string {
	name := strings.NewReplacer(":", "_", "[", "", "]", "", "/", "_", "*", "_", "?", "_").Replace(address)
	return filepath.Join(dir, "listener-"+name+".*.sock")
}

// receiveListener takes the listening socket for address from a balancer
// that offers it in dir. It returns errNoSibling when none does.
func receiveListener(dir, address string) (*net.TCPListener, error) {
	offers, _ := filepath.Glob(handoffPattern(dir, address))
	var errs []error
	for _, path := range offers {
		ln, err := receiveFrom(path, address)
		if err == nil {
			return ln, nil
		}
		if errors.Is(err, errNoSibling) {
			os.Remove(path) // its balancer is gone without cleaning up
			continue
		}
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return nil, errNoSibling
}

// receiveFrom takes the listening socket for address offered at path.
func receiveFrom(path, address string) (*net.TCPListener, error) {
	c, err := net.DialTimeout("unix", path, handoffTimeout)
	if err != nil {
		return nil, errNoSibling
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	_ = uc.SetDeadline(time.Now().Add(handoffTimeout))
	msg, oob := make([]byte, 64), make([]byte, syscall.CmsgSpace(4))
	n, oobn, _, _, err := uc.ReadMsgUnix(msg, oob)
	if err != nil {
		return nil, fmt.Errorf("handoff from %s: %w", path, err)
	}
	cmsgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(cmsgs) != 1 {
		return nil, fmt.Errorf("handoff from %s: no descriptor in the answer %q", path, msg[:n])
	}
	fds, err := syscall.ParseUnixRights(&cmsgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			syscall.Close(fd)
		}
		return nil, fmt.Errorf("handoff from %s: want one descriptor: %v", path, err)
	}
	f := os.NewFile(uintptr(fds[0]), "listener")
	defer f.Close() // FileListener keeps a copy
	if err := checkListening(fds[0]); err != nil {
		return nil, fmt.Errorf("handoff from %s: %w", path, err)
	}
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("handoff from %s: %w", path, err)
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok || !sameAddress(tl.Addr().String(), address) {
		ln.Close()
		return nil, fmt.Errorf("handoff from %s: got a listener on %s, not on %s", path, ln.Addr(), address)
	}
	return tl, nil
}

// checkListening says what is wrong with fd as a listening stream socket.
func checkListening(fd int) error {
	if typ, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE); err != nil || typ != syscall.SOCK_STREAM {
		return fmt.Errorf("the descriptor is not a stream socket (%v)", err)
	}
	if on, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN); err != nil || on != 1 {
		return fmt.Errorf("the descriptor is not a listening socket (%v)", err)
	}
	return nil
}

// sameAddress reports whether the bound address got is the configured want
// (whose host may be a name, or empty for every interface).
func sameAddress(got, want string) bool {
	gh, gp, err1 := net.SplitHostPort(got)
	wh, wp, err2 := net.SplitHostPort(want)
	if err1 != nil || err2 != nil || gp != wp {
		return false
	}
	if wh == "" || wh == "localhost" {
		return true
	}
	gi, wi := net.ParseIP(gh), net.ParseIP(wh)
	return gi != nil && wi != nil && gi.Equal(wi)
}

// offerListener offers ln's socket in dir, to the next balancer on the
// same address, until ctx ends, at a path of this process's own. It keeps a
// descriptor of its own (the engine takes ln's). Only this user can ask:
// the directory is 0700.
func (b *Balancer) offerListener(ctx context.Context, ln *net.TCPListener, dir, address string) {
	warn := func(err error) {
		b.log.Warn("cannot offer the listening socket to the next balancer: an upgrade may reset queued connections", "error", err)
	}
	fd, err := dupListener(ln)
	if err != nil {
		warn(err)
		return
	}
	path := strings.Replace(handoffPattern(dir, address), "*", fmt.Sprintf("%d-%d", os.Getpid(), offers.Add(1)), 1)
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		syscall.Close(fd)
		warn(err)
		return
	}
	served := make(chan struct{})
	go func() {
		<-ctx.Done()
		ul.Close() // removes path
		<-served
		syscall.Close(fd)
	}()
	go func() {
		defer close(served)
		for {
			c, err := ul.AcceptUnix()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil { // out of descriptors, say: the next one may find some
				b.log.Warn("offering the listening socket: accept failed", "error", err)
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			if err := sendListener(c, fd); err != nil {
				b.log.Warn("handing the listening socket to the next balancer failed", "error", err)
			} else {
				b.log.Info("listening socket handed to the next balancer on this address", "address", address)
			}
			c.Close()
		}
	}()
}

// sendListener writes the descriptor fd to c.
func sendListener(c *net.UnixConn, fd int) error {
	_ = c.SetDeadline(time.Now().Add(handoffTimeout))
	_, _, err := c.WriteMsgUnix([]byte("lemonade listener"), syscall.UnixRights(fd), nil)
	return err
}

// dupListener returns a descriptor of its own of ln's socket. It goes
// through SyscallConn, not File: File().Fd() would put the socket, which the
// processes sharing it all see, in blocking mode.
func dupListener(ln *net.TCPListener) (int, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) {
		r, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
			return
		}
		fd = int(r)
	}); err != nil {
		return -1, err
	}
	return fd, derr
}

// listen binds p's listen address. With p.ReusePort it shares the listening
// socket of a balancer already on that address, when one offers it, else
// binds a new one with SO_REUSEPORT.
func (b *Balancer) listen(p config.Proxy) (*net.TCPListener, error) {
	if !p.ReusePort {
		return proxy.Listen(p.ListenAddress)
	}
	dir, err := handoffDir()
	if err == nil {
		var ln *net.TCPListener
		if ln, err = receiveListener(dir, p.ListenAddress); err == nil {
			b.log.Info("sharing the listening socket of the balancer already on this address", "address", p.ListenAddress)
			return ln, nil
		}
	}
	if errors.Is(err, errNoSibling) {
		b.log.Info("no balancer on this address offers its listening socket: binding one with SO_REUSEPORT", "address", p.ListenAddress)
	} else {
		b.log.Warn("no listening socket from the balancer on this address; binding one with SO_REUSEPORT", "address", p.ListenAddress, "error", err)
	}
	return proxy.ListenReusePort(p.ListenAddress)
}
