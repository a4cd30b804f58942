package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ResolveTTL is how long a host name's addresses are used before they are
// looked up again. Go's resolver does not expose the DNS TTL, so this is a
// fixed, short bound on how long a DNS change goes unnoticed.
const ResolveTTL = 30 * time.Second

// resolveRetry is the least time between two lookups of one host, so a dead
// DNS server is asked once a second, not once per client.
const resolveRetry = time.Second

// lookupTimeout bounds one lookup, so its goroutine always ends.
const lookupTimeout = 5 * time.Second

// lookup resolves a host name; tests replace it to simulate DNS.
var lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// clock returns monotonic time; tests replace it to move past ResolveTTL
// without sleeping.
var clock = func() time.Duration { return time.Since(clockEpoch) }

var clockEpoch = time.Now()

var errNoAddresses = errors.New("no addresses")

// addrBook holds a Backend's resolved addresses. A literal address is parsed
// once; a host name is looked up by Resolve, then again in the background
// when its addresses are older than ResolveTTL or a dial failed.
type addrBook struct {
	host  string           // the host name to look up; "" for a literal (or a bad address)
	port  uint16           // the port, for a host name's addresses
	fixed []netip.AddrPort // a literal's one address
	err   error            // the address is not HOST:PORT: every call returns it

	cur      atomic.Pointer[lookupResult]
	inFlight atomic.Bool    // a background lookup is running
	lastTry  atomic.Int64   // clock() when the latest lookup started, for resolveRetry
	running  sync.WaitGroup // background lookups, so tests can wait for them
}

// lookupResult is the outcome of the lookups so far. It is replaced whole.
type lookupResult struct {
	addrs []netip.AddrPort // the latest successful lookup's; nil before the first
	at    time.Duration    // clock() when the lookup behind addrs started
	err   error            // the latest attempt's error; nil if it succeeded
	tried time.Duration    // clock() when the latest attempt started
}

func (a *addrBook) init(address string) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		a.err = fmt.Errorf("backend address %q: %w", address, err)
		return
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		a.err = fmt.Errorf("backend address %q: port %q: %w", address, portStr, err)
		return
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		// Unmap so an IPv4-mapped literal is dialled as IPv4, like net.Dial does.
		a.fixed = []netip.AddrPort{netip.AddrPortFrom(ip.Unmap(), uint16(port))}
		return
	}
	a.host, a.port = host, uint16(port)
	// Allocated once, so Addrs returns it without allocating until a lookup ends.
	a.cur.Store(&lookupResult{err: fmt.Errorf("backend host %q: not resolved yet", host)})
	// The first attempt is never held back by the rate limit.
	a.lastTry.Store(int64(clock() - resolveRetry))
}

// Addrs returns the backend's addresses to dial, in order: IPv4 before IPv6.
// It never blocks and does not allocate; the slice is shared and must not
// be modified. For a literal IP address it is that one address. For a host
// name it is the latest successful lookup, kept even when later lookups
// fail (a DNS outage must not take down a backend that still works); when
// that lookup is older than ResolveTTL, Addrs starts one in the background.
// Before any lookup succeeded, it returns the latest lookup error, naming
// the host, and starts another lookup (at most one a second).
func (b *Backend) Addrs() ([]netip.AddrPort, error) {
	a := &b.addrs
	if a.host == "" {
		return a.fixed, a.err
	}
	r := a.cur.Load()
	if r.addrs == nil {
		a.refresh()
		return nil, r.err
	}
	if clock()-r.at >= ResolveTTL {
		a.refresh()
	}
	return r.addrs, nil
}

// Reresolve starts a background lookup of the backend's host name now (at
// most one a second), for when a dial failed: the name may point elsewhere
// now. It does nothing for a literal address.
func (b *Backend) Reresolve() {
	if b.addrs.host != "" {
		b.addrs.refresh()
	}
}

// Resolve looks the backend's host name up and waits for the answer, so a
// new table's first clients already have addresses. It returns the lookup
// error, naming the host; older addresses, if any, stay in use. It does
// nothing for a literal address (and returns the error of an address that
// is not HOST:PORT).
func (b *Backend) Resolve(ctx context.Context) error {
	a := &b.addrs
	if a.host == "" {
		return a.err
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	now := clock()
	a.lastTry.Store(int64(now))
	return a.resolve(ctx, now)
}

// refresh starts a background lookup unless one ran within resolveRetry or
// one is still running.
func (a *addrBook) refresh() {
	now := clock()
	last := a.lastTry.Load()
	if now-time.Duration(last) < resolveRetry || !a.inFlight.CompareAndSwap(false, true) {
		return
	}
	if !a.lastTry.CompareAndSwap(last, int64(now)) { // another caller started one
		a.inFlight.Store(false)
		return
	}
	a.running.Add(1)
	go func() {
		defer a.running.Done()
		defer a.inFlight.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		defer cancel()
		_ = a.resolve(ctx, now) // recorded in cur, where Addrs reports it
	}()
}

// resolve runs one lookup that started at clock() = started and records it,
// unless a later attempt has already been recorded.
func (a *addrBook) resolve(ctx context.Context, started time.Duration) error {
	ips, err := lookup(ctx, a.host)
	if err == nil && len(ips) == 0 {
		err = errNoAddresses
	}
	var addrs []netip.AddrPort
	if err != nil {
		err = fmt.Errorf("resolve backend host %q: %w", a.host, err)
	} else {
		addrs = order(ips, a.port)
	}
	for {
		old := a.cur.Load()
		if started < old.tried {
			return err
		}
		next := &lookupResult{addrs: old.addrs, at: old.at, err: err, tried: started}
		if err == nil {
			next.addrs, next.at = addrs, started
		}
		if a.cur.CompareAndSwap(old, next) {
			return err
		}
	}
}

// order returns ips with port, IPv4 first, each family in the resolver's
// order: the order the previous proxy dialled in, and the same for the
// proxy and the health checker whatever the host's address preferences.
func order(ips []netip.Addr, port uint16) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(ips))
	for _, v4 := range []bool{true, false} {
		for _, ip := range ips {
			if ip = ip.Unmap(); ip.Is4() == v4 {
				out = append(out, netip.AddrPortFrom(ip, port))
			}
		}
	}
	return out
}

// waitLookups waits for the background lookups started so far (for tests,
// whose leak check must not see one still running).
func (b *Backend) waitLookups() { b.addrs.running.Wait() }

// ScopeID returns the scope id that the zone of an IPv6 address names, for
// a sockaddr_in6: 0 without a zone, the number for a numeric zone ("%2"),
// else the index of the interface so named. It asks the kernel, so callers
// convert when the addresses change (Addrs returns the same slice until
// then), not per connection.
func ScopeID(a netip.Addr) (uint32, error) {
	zone := a.Zone()
	if zone == "" {
		return 0, nil
	}
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n), nil
	}
	ifi, err := net.InterfaceByName(zone)
	if err != nil {
		return 0, fmt.Errorf("zone %q of %s: %w", zone, a, err)
	}
	return uint32(ifi.Index), nil
}
