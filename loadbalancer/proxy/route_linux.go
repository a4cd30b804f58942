//go:build !lemonade_goroutines

package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
)

// route is what a new connection is routed by: the table and each backend's
// socket address, resolved when the table is set (at start and on each
// reload), never on the hot path.
type route struct {
	t     *Table
	dests map[*backend.Backend]*dest
}

// dest is a backend's address in the form connect(2) takes.
type dest struct {
	family int
	addr   unsafe.Pointer // *syscall.RawSockaddrInet4 or *syscall.RawSockaddrInet6
	len    uintptr
	err    error // the address did not resolve: every dial fails with it
}

// resolveTimeout bounds the lookup of one backend host name.
const resolveTimeout = 5 * time.Second

func newRoute(t *Table) *route {
	r := &route{t: t}
	if t == nil {
		return r // no backend: every client is closed
	}
	// Host names are looked up at once, so a reload waits for the slowest
	// lookup, not for their sum.
	dests := make([]*dest, len(t.Backends))
	var wg sync.WaitGroup
	for i, b := range t.Backends {
		wg.Go(func() { dests[i] = resolve(b.Address) })
	}
	wg.Wait()
	r.dests = make(map[*backend.Backend]*dest, len(t.Backends))
	for i, b := range t.Backends {
		r.dests[b] = dests[i]
	}
	return r
}

func resolve(address string) *dest {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return &dest{err: err}
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return &dest{err: fmt.Errorf("port %q: %w", portStr, err)}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
		defer cancel()
		ips, lerr := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if lerr != nil || len(ips) == 0 {
			return &dest{err: fmt.Errorf("cannot resolve %q: %v", host, lerr)}
		}
		ip = ips[0]
		for _, x := range ips { // IPv4 first, as the standard library's dialer does
			if x.Is4() || x.Is4In6() {
				ip = x
				break
			}
		}
	}
	ip = ip.Unmap()
	if ip.Is4() {
		sa := &syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: ip.As4()}
		putPort(&sa.Port, port)
		return &dest{family: syscall.AF_INET, addr: unsafe.Pointer(sa), len: unsafe.Sizeof(*sa)}
	}
	sa := &syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Addr: ip.As16()}
	putPort(&sa.Port, port)
	if zone := ip.Zone(); zone != "" {
		ifi, err := net.InterfaceByName(zone)
		if err != nil {
			return &dest{err: fmt.Errorf("zone %q: %w", zone, err)}
		}
		sa.Scope_id = uint32(ifi.Index)
	}
	return &dest{family: syscall.AF_INET6, addr: unsafe.Pointer(sa), len: unsafe.Sizeof(*sa)}
}

// putPort stores port in network byte order.
func putPort(p *uint16, port uint64) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}
