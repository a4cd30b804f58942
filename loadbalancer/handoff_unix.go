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

// errNoSibling is receiveListener's answer when no balancer offers a socket.
var errNoSibling = errors.New("no balancer offers a listening socket there")

// handoffPath is the Unix socket where the balancer listening on address
// offers its listening socket: in the temporary directory, named after the
// address.
func handoffPath(address string) string {
	name := strings.NewReplacer(":", "_", "[", "", "]", "", "/", "_").Replace(address)
	return filepath.Join(os.TempDir(), "lemonade-listener-"+name+".sock")
}

// receiveListener takes the listening socket for address from the balancer
// that offers it at path. It returns errNoSibling when none does.
func receiveListener(path, address string) (*net.TCPListener, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, errNoSibling
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || int(sys.Uid) != os.Getuid() || st.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("%s is not a socket of this user: not asking it for a listener", path)
	}
	c, err := net.DialTimeout("unix", path, handoffTimeout)
	if err != nil {
		return nil, errNoSibling // a stale path: its balancer is gone
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

// offerListener offers ln's socket at path, to the next balancer on the
// same address, until ctx ends. It keeps a descriptor of its own (the
// engine takes ln's). Whoever asks gets a descriptor of the socket: only
// this user can (the socket file is 0600).
func (b *Balancer) offerListener(ctx context.Context, ln *net.TCPListener, path string) {
	fd, err := dupListener(ln)
	if err != nil {
		b.log.Warn("cannot offer the listening socket to the next balancer: an upgrade may reset queued connections", "error", err)
		return
	}
	offering := false
	defer func() {
		if !offering {
			syscall.Close(fd)
		}
	}()
	// Take the path over from a balancer that offered before: a newcomer
	// must reach the one that stays.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		b.log.Warn("cannot offer the listening socket to the next balancer: an upgrade may reset queued connections", "path", path, "error", err)
		return
	}
	old := syscall.Umask(0o077)
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		b.log.Warn("cannot offer the listening socket to the next balancer: an upgrade may reset queued connections", "path", path, "error", err)
		return
	}
	ul.SetUnlinkOnClose(false) // removed below, only while it is still ours
	mine, _ := os.Lstat(path)
	offering = true
	served := make(chan struct{})
	go func() {
		<-ctx.Done()
		ul.Close()
		<-served
		syscall.Close(fd)
		if now, err := os.Lstat(path); err == nil && mine != nil && os.SameFile(now, mine) {
			os.Remove(path)
		}
	}()
	go func() {
		defer close(served)
		for {
			c, err := ul.AcceptUnix()
			if err != nil {
				return // closed
			}
			if err := sendListener(c, fd); err != nil {
				b.log.Warn("handing the listening socket to the next balancer failed", "error", err)
			} else {
				b.log.Info("listening socket handed to the next balancer on this address", "address", ln.Addr().String())
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
	path := handoffPath(p.ListenAddress)
	ln, err := receiveListener(path, p.ListenAddress)
	if err == nil {
		b.log.Info("sharing the listening socket of the balancer already on this address", "address", p.ListenAddress, "from", path)
		return ln, nil
	}
	if !errors.Is(err, errNoSibling) {
		b.log.Warn("no listening socket from the balancer on this address; binding a new one", "address", p.ListenAddress, "error", err)
	}
	return proxy.ListenReusePort(p.ListenAddress)
}
