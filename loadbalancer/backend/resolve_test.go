package backend

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Background lookups must all have ended: Addrs starts goroutines.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeDNS replaces the resolver with answer and the clock with one the test
// moves; it counts lookups. Tests using it must not run in parallel.
type fakeDNS struct {
	now   atomic.Int64
	calls atomic.Int64
}

func newFakeDNS(t *testing.T, answer func(host string) ([]netip.Addr, error)) *fakeDNS {
	t.Helper()
	f := &fakeDNS{}
	f.now.Store(int64(time.Hour)) // not zero, as in a long-running process
	oldLookup, oldClock := lookup, clock
	lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		f.calls.Add(1)
		return answer(host)
	}
	clock = func() time.Duration { return time.Duration(f.now.Load()) }
	t.Cleanup(func() { lookup, clock = oldLookup, oldClock })
	return f
}

func (f *fakeDNS) advance(d time.Duration) { f.now.Add(int64(d)) }

// newBackend returns a backend whose background lookups have ended by the
// time the test's fakes are undone.
func newBackend(t *testing.T, address string) *Backend {
	b := New(1, "b", address, 1)
	t.Cleanup(b.waitLookups)
	return b
}

func addrPorts(ss ...string) []netip.AddrPort {
	out := make([]netip.AddrPort, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddrPort(s)
	}
	return out
}

func TestLiteralAddressesAreFixed(t *testing.T) {
	f := newFakeDNS(t, func(string) ([]netip.Addr, error) { return nil, errors.New("no lookup expected") })
	for _, tc := range []struct{ address, want, zone string }{
		{"127.0.0.1:80", "127.0.0.1:80", ""},
		{"[::1]:8080", "[::1]:8080", ""},
		{"[fe80::1%eth0]:80", "[fe80::1%eth0]:80", "eth0"},
		{"[::ffff:10.0.0.1]:443", "10.0.0.1:443", ""}, // dialled as IPv4, as net.Dial does
	} {
		t.Run(tc.address, func(t *testing.T) {
			b := newBackend(t, tc.address)
			if err := b.Resolve(context.Background()); err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			got, err := b.Addrs()
			if err != nil || !slices.Equal(got, addrPorts(tc.want)) {
				t.Fatalf("Addrs = %v, %v; want [%s]", got, err, tc.want)
			}
			if z := got[0].Addr().Zone(); z != tc.zone {
				t.Fatalf("zone %q, want %q", z, tc.zone)
			}
			f.advance(time.Hour)
			b.Reresolve()
			if again, _ := b.Addrs(); &again[0] != &got[0] {
				t.Fatal("a literal's addresses changed")
			}
		})
	}
	if n := f.calls.Load(); n != 0 {
		t.Fatalf("%d lookups for literal addresses", n)
	}
}

func TestBadAddressIsAnErrorNamingIt(t *testing.T) {
	for _, address := range []string{"nohostport", "example.com:http", "[::1]:99999"} {
		b := newBackend(t, address)
		if _, err := b.Addrs(); err == nil || !strings.Contains(err.Error(), address) {
			t.Errorf("Addrs(%q) error %v, want one naming the address", address, err)
		}
		if err := b.Resolve(context.Background()); err == nil {
			t.Errorf("Resolve(%q) succeeded", address)
		}
	}
}

// The real resolver: localhost is in every hosts file.
func TestLocalhostResolves(t *testing.T) {
	b := newBackend(t, "localhost:8080")
	if err := b.Resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := b.Addrs()
	if err != nil || len(got) == 0 {
		t.Fatalf("Addrs = %v, %v", got, err)
	}
	for _, a := range got {
		if !a.Addr().IsLoopback() || a.Port() != 8080 {
			t.Fatalf("localhost resolved to %v", got)
		}
	}
}

func TestAddressesAreOrderedIPv4First(t *testing.T) {
	newFakeDNS(t, func(string) ([]netip.Addr, error) {
		return []netip.Addr{
			netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1"),
			netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("::ffff:192.0.2.2"),
		}, nil
	})
	b := newBackend(t, "svc.example:80")
	if err := b.Resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := addrPorts("192.0.2.1:80", "192.0.2.2:80", "[2001:db8::1]:80", "[2001:db8::2]:80")
	if got, _ := b.Addrs(); !slices.Equal(got, want) {
		t.Fatalf("Addrs = %v, want %v", got, want)
	}
}

func TestUnresolvableNameIsAnErrorAndIsRetried(t *testing.T) {
	var works atomic.Bool
	f := newFakeDNS(t, func(host string) ([]netip.Addr, error) {
		if !works.Load() {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return []netip.Addr{netip.MustParseAddr("192.0.2.7")}, nil
	})
	b := newBackend(t, "db.example:5432")

	// Never looked up: an error naming the host, and a lookup starts.
	if _, err := b.Addrs(); err == nil || !strings.Contains(err.Error(), "db.example") {
		t.Fatalf("first Addrs error %v, want one naming db.example", err)
	}
	b.waitLookups()
	if _, err := b.Addrs(); err == nil || !strings.Contains(err.Error(), "db.example") || !strings.Contains(err.Error(), "no such host") {
		t.Fatalf("Addrs after a failed lookup: error %v", err)
	}
	b.waitLookups()
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d lookups within a second, want 1 (rate limit)", n)
	}

	works.Store(true)
	f.advance(resolveRetry)
	if _, err := b.Addrs(); err == nil {
		t.Fatal("failure was not reported until the retry ended")
	}
	b.waitLookups()
	got, err := b.Addrs()
	if err != nil || !slices.Equal(got, addrPorts("192.0.2.7:5432")) {
		t.Fatalf("Addrs after DNS recovered = %v, %v", got, err)
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d lookups, want 2", n)
	}
}

func TestResolveReportsTheLookupError(t *testing.T) {
	newFakeDNS(t, func(host string) ([]netip.Addr, error) {
		if host == "empty.example" {
			return nil, nil
		}
		return nil, errors.New("server misbehaving")
	})
	for _, host := range []string{"down.example", "empty.example"} {
		b := newBackend(t, host+":80")
		err := b.Resolve(context.Background())
		if err == nil || !strings.Contains(err.Error(), host) {
			t.Fatalf("Resolve error %v, want one naming %s", err, host)
		}
		if _, err2 := b.Addrs(); err2 == nil || err2.Error() != err.Error() {
			t.Fatalf("Addrs error %v, want Resolve's %v", err2, err)
		}
	}
}

func TestDNSChangeIsFollowedAfterTTL(t *testing.T) {
	var answer atomic.Pointer[netip.Addr]
	set := func(s string) { a := netip.MustParseAddr(s); answer.Store(&a) }
	var fail atomic.Bool
	set("192.0.2.1")
	f := newFakeDNS(t, func(string) ([]netip.Addr, error) {
		if fail.Load() {
			return nil, errors.New("timeout")
		}
		return []netip.Addr{*answer.Load()}, nil
	})
	b := newBackend(t, "api.example:9000")
	if err := b.Resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	old := addrPorts("192.0.2.1:9000")

	set("192.0.2.2")
	f.advance(ResolveTTL - time.Nanosecond)
	if got, _ := b.Addrs(); !slices.Equal(got, old) {
		t.Fatalf("within the TTL: %v", got)
	}
	b.waitLookups()
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d lookups within the TTL, want 1 (Resolve's)", n)
	}

	f.advance(time.Nanosecond)
	if got, _ := b.Addrs(); !slices.Equal(got, old) { // never waits for the lookup
		t.Fatalf("at the TTL: %v", got)
	}
	b.waitLookups()
	if got, _ := b.Addrs(); !slices.Equal(got, addrPorts("192.0.2.2:9000")) {
		t.Fatalf("after the re-lookup: %v", got)
	}

	// A failed re-lookup keeps the last good addresses and is retried.
	fail.Store(true)
	set("192.0.2.3")
	f.advance(ResolveTTL)
	b.Addrs()
	b.waitLookups()
	if got, err := b.Addrs(); err != nil || !slices.Equal(got, addrPorts("192.0.2.2:9000")) {
		t.Fatalf("after a failed re-lookup: %v, %v", got, err)
	}
	b.waitLookups()
	fail.Store(false)
	f.advance(resolveRetry)
	b.Addrs()
	b.waitLookups()
	if got, _ := b.Addrs(); !slices.Equal(got, addrPorts("192.0.2.3:9000")) {
		t.Fatalf("after DNS recovered: %v", got)
	}
}

func TestReresolveRunsOneLookupAtATime(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 100)
	f := newFakeDNS(t, func(string) ([]netip.Addr, error) {
		started <- struct{}{}
		<-release
		return []netip.Addr{netip.MustParseAddr("192.0.2.9")}, nil
	})
	b := newBackend(t, "slow.example:80")
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(b.Reresolve)
	}
	wg.Wait()
	<-started
	f.advance(time.Minute) // past the rate limit, but one is still in flight
	b.Reresolve()
	if _, err := b.Addrs(); err == nil {
		t.Fatal("addresses before any lookup ended")
	}
	close(release)
	b.waitLookups()
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d lookups in flight together, want 1", n)
	}
	if got, err := b.Addrs(); err != nil || len(got) != 1 {
		t.Fatalf("Addrs = %v, %v", got, err)
	}
}

// A background lookup that started before Resolve and ends after it must
// not replace Resolve's newer answer.
func TestOlderLookupDoesNotOverwriteNewer(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	var n atomic.Int64
	f := newFakeDNS(t, func(string) ([]netip.Addr, error) {
		if n.Add(1) == 1 {
			close(started)
			<-release
			return []netip.Addr{netip.MustParseAddr("192.0.2.1")}, nil
		}
		return []netip.Addr{netip.MustParseAddr("192.0.2.2")}, nil
	})
	b := newBackend(t, "race.example:80")
	b.Reresolve()
	<-started
	f.advance(time.Millisecond)
	if err := b.Resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(release)
	b.waitLookups()
	if got, _ := b.Addrs(); !slices.Equal(got, addrPorts("192.0.2.2:80")) {
		t.Fatalf("Addrs = %v, want Resolve's newer answer", got)
	}
}

func TestAddrsDoesNotAllocate(t *testing.T) {
	newFakeDNS(t, func(string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}, nil
	})
	for _, address := range []string{"127.0.0.1:80", "name.example:80"} {
		b := newBackend(t, address)
		if err := b.Resolve(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { b.Addrs() }); n != 0 {
			t.Errorf("%s: Addrs allocates %v times", address, n)
		}
	}
}

func TestScopeID(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		t.Skipf("no interfaces: %v", err)
	}
	ifi := ifs[0]
	for _, tc := range []struct {
		addr string
		want uint32
	}{
		{"fe80::1", 0},
		{"192.0.2.1", 0},
		{"fe80::1%7", 7},
		{"fe80::1%" + ifi.Name, uint32(ifi.Index)},
	} {
		got, err := ScopeID(netip.MustParseAddr(tc.addr))
		if err != nil || got != tc.want {
			t.Errorf("ScopeID(%s) = %d, %v; want %d", tc.addr, got, err, tc.want)
		}
	}
	if _, err := ScopeID(netip.MustParseAddr("fe80::1%no-such-if0")); err == nil || !strings.Contains(err.Error(), "no-such-if0") {
		t.Errorf("unknown zone: error %v, want one naming it", err)
	}
}
