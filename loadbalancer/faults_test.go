package loadbalancer

// Faults measured for docs/reliability.md: each test asserts the promise and
// ends with one "measured:" line, the figures the table quotes.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// rawBackend is a TCP backend run by handle, one goroutine per connection;
// cleanup closes the listener and every connection and waits for them.
type rawBackend struct {
	addr string
	mu   sync.Mutex
	// seen is what each connection sent, in order of accept (for the black
	// hole: which client reached it).
	seen  []*bytes.Buffer
	conns []net.Conn
}

func newRawBackend(t *testing.T, handle func(c net.Conn, got *rawBackend, i int)) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rb := &rawBackend{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rb.mu.Lock()
			i := len(rb.conns)
			rb.conns = append(rb.conns, c)
			rb.seen = append(rb.seen, new(bytes.Buffer))
			rb.mu.Unlock()
			wg.Go(func() { defer c.Close(); handle(c, rb, i) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		rb.mu.Lock()
		for _, c := range rb.conns {
			c.Close()
		}
		rb.mu.Unlock()
		wg.Wait()
	})
	return rb
}

func (rb *rawBackend) record(i int, p []byte) {
	rb.mu.Lock()
	rb.seen[i].Write(p)
	rb.mu.Unlock()
}

// saw reports whether a connection sent s.
func (rb *rawBackend) saw(s string) bool {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	for _, b := range rb.seen {
		if strings.Contains(b.String(), s) {
			return true
		}
	}
	return false
}

// blackHole accepts and reads, and never answers.
func blackHole(c net.Conn, rb *rawBackend, i int) {
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		rb.record(i, buf[:n])
		if err != nil {
			return
		}
	}
}

// countingLog is a slog handler that counts the lines at every level.
type countingLog struct {
	mu    sync.Mutex
	lines []slog.Record
}

func (h *countingLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingLog) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.lines = append(h.lines, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *countingLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingLog) WithGroup(string) slog.Handler      { return h }

// count returns how many lines came at info or above and at any level.
func (h *countingLog) count() (info, all int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.lines {
		if r.Level >= slog.LevelInfo {
			info++
		}
	}
	return info, len(h.lines)
}

func (h *countingLog) messages(from int) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var m []string
	for _, r := range h.lines[min(from, len(h.lines)):] {
		m = append(m, r.Level.String()+" "+r.Message)
	}
	return m
}

func backendState(lb *Balancer, name string) backend.Snapshot {
	for _, s := range lb.Snapshot().Backends {
		if s.Name == name {
			return s
		}
	}
	return backend.Snapshot{}
}

// readEnd reads c until it ends and reports the bytes read, the error that
// ended it and when it ended; a read deadline past within is an error.
func readEnd(c net.Conn, within time.Duration) (n int64, end time.Time, err error) {
	c.SetReadDeadline(time.Now().Add(within))
	n, err = io.Copy(io.Discard, c)
	end = time.Now()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return n, end, fmt.Errorf("still open after %v", within)
	}
	return n, end, nil // EOF or a reset: closed
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// Row "black-hole backend": a backend that accepts and never answers is
// taken out by the http check after fall failed checks (each one waits for
// the check timeout, so not before), new requests go to the healthy one, and
// a client stuck on the black hole is closed by idle_timeout: not before it,
// and not long after.
func TestBlackHoleBackendIsMarkedDownAndItsClientIsClosedWhenIdle(t *testing.T) {
	const (
		interval = 200 * time.Millisecond
		timeout  = 150 * time.Millisecond
		fall     = 3
		idle     = time.Second
	)
	hole := newRawBackend(t, blackHole)
	ok := newBackend(t, "ok")
	cfg := testConfig(t, "round_robin", ok)
	cfg.Backends = append([]config.Backend{{ID: 1, Name: "hole", Address: hole.addr, Weight: 1}}, cfg.Backends...)
	one := 1
	cfg.Proxy.Retries = &one
	cfg.Proxy.IdleTimeout = idle
	cfg.Health = config.Health{Kind: config.HealthHTTP, Path: "/health", Interval: interval, Timeout: timeout, Rise: 1, Fall: fall}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	lb := startBalancerLogging(t, quiet, cfg)

	// A client that reaches the black hole before the checks take it out
	// (round robin: one of the first two connections does).
	type ending struct {
		n   int64
		end time.Time
		err error
	}
	var stuck net.Conn
	var sent time.Time
	var stuckEnd chan ending
	for i := 0; stuck == nil; i++ {
		if i == 4 {
			t.Fatal("4 clients and none reached the black hole before it was taken out")
		}
		c, err := net.Dial("tcp", lb.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		marker := fmt.Sprintf("/stuck-%d", i)
		sent = time.Now() // before the write: the idle clock starts no earlier
		if _, err := io.WriteString(c, "GET "+marker+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		ended := make(chan ending, 1)
		go func() {
			n, end, err := readEnd(c, idle+10*time.Second)
			ended <- ending{n, end, err}
		}()
		deadline := time.After(5 * time.Second)
	wait:
		for {
			select {
			case e := <-ended: // answered (by ok) or closed: not stuck
				if e.n == 0 {
					t.Fatalf("client %d closed with no answer after %v: %v", i, e.end.Sub(sent), e.err)
				}
				break wait
			case <-deadline:
				t.Fatalf("client %d neither answered nor seen by the black hole within 5s", i)
			case <-time.After(5 * time.Millisecond):
				if hole.saw(marker) {
					stuck, stuckEnd = c, ended
					break wait
				}
			}
		}
	}

	// The checks take the black hole out.
	var downAfter time.Duration
	for {
		if !backendState(lb, "hole").Up {
			downAfter = time.Since(began)
			break
		}
		if time.Since(began) > 10*time.Second {
			t.Fatalf("black hole still up 10s after the start: %+v", backendState(lb, "hole"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Each failed check waits for the whole timeout, and the checks are
	// spaced by interval ±10%: fall of them cannot end sooner.
	if earliest := fall*timeout + (fall-1)*interval*9/10; downAfter < earliest {
		t.Fatalf("black hole down after %v, before %d failed checks could end (%v)", downAfter, fall, earliest)
	}
	// The first check comes within an interval, then fall checks of at most
	// a timeout each, spaced by at most 1.1 intervals; a loaded machine
	// gets a second on top.
	if latest := interval + fall*timeout + (fall-1)*interval*11/10 + time.Second; downAfter > latest {
		t.Fatalf("black hole down after %v, want within %v", downAfter, latest)
	}
	if s := backendState(lb, "ok"); !s.Up {
		t.Fatalf("healthy backend down: %+v", s)
	}

	const requests = 20
	for i := range requests {
		if body, err := get(lb.Addr().String(), ""); err != nil || body != "ok" {
			t.Fatalf("request %d after the black hole was taken out: %q, %v", i, body, err)
		}
	}

	e := <-stuckEnd
	if e.err != nil {
		t.Fatalf("client stuck on the black hole: %v (idle_timeout %v)", e.err, idle)
	}
	closedAfter := e.end.Sub(sent)
	if e.n != 0 {
		t.Fatalf("stuck client read %d bytes from a black hole", e.n)
	}
	if closedAfter < idle {
		t.Fatalf("stuck client closed %v after its last byte, before the %v idle timeout", closedAfter, idle)
	}
	// The loops look for idle connections every idle/4.
	if closedAfter > idle+idle/4+2*time.Second {
		t.Fatalf("stuck client closed %v after its last byte, want about the %v idle timeout", closedAfter, idle)
	}
	stuck.Close()
	t.Logf("measured: black hole (http check every %v, timeout %v, fall %d) marked down %s after the start; %d/%d requests after that answered by the healthy backend; client stuck on it closed %s after its last byte (idle_timeout %v), 0 bytes received",
		interval, timeout, fall, seconds(downAfter), requests, requests, seconds(closedAfter), idle)
}

// rejectAll opens clients connections to addr, workers at a time, and
// returns how long each took from the dial to the balancer's close; a
// client that is not closed within 5s or gets a byte is an error.
func rejectAll(addr string, clients, workers int) ([]time.Duration, error) {
	var mu sync.Mutex
	var took []time.Duration
	var firstErr error
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(clients) {
				begin := time.Now()
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				var n int64
				var end time.Time
				if err == nil {
					n, end, err = readEnd(c, 5*time.Second)
					c.Close()
				}
				if err == nil && n != 0 {
					err = fmt.Errorf("read %d bytes with no backend", n)
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				took = append(took, end.Sub(begin))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(took)
	return took, firstErr
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// Row "all backends down": every client is closed at once, whether the
// balancer still dials the dead backends (refused) or has marked them down,
// each one is counted as rejected, and the log says nothing per client.
func TestAllBackendsDownRejectsEachClientAtOnceAndLogsNothingPerClient(t *testing.T) {
	const (
		clients        = 1000 // half while dials are refused, half once marked down
		workers        = 8
		connectTimeout = 10 * time.Second
	)
	cfg := config.Default()
	cfg.Proxy.ListenAddress = "127.0.0.1:0"
	cfg.Proxy.ConnectTimeout = connectTimeout
	cfg.Runtime.DrainTimeout = 2 * time.Second
	for i := range 2 {
		cfg.Backends = append(cfg.Backends, config.Backend{ID: i, Name: fmt.Sprint("dead", i), Address: freePort(t), Weight: 1})
	}
	one := 1
	cfg.Proxy.Retries = &one
	cfg.Health.Interval = time.Hour                  // the active checks never act here
	cfg.Health.Passive = config.Passive{MaxFails: 0} // phase 1: the backends stay up, every client dials both
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &countingLog{}
	lb := startBalancerLogging(t, slog.New(logs), cfg)
	addr := lb.Addr().String()
	infoBefore, linesBefore := logs.count()

	refused, err := rejectAll(addr, clients/2, workers)
	if err != nil {
		t.Fatalf("dials refused: %v", err)
	}
	s := lb.Snapshot()
	dialsRefused := s.Backends[0].ConnectFailures + s.Backends[1].ConnectFailures
	if s.Proxy.NoBackend != clients/2 || s.Proxy.Accepted != clients/2 || dialsRefused != clients {
		t.Fatalf("after %d clients with both backends refusing: %d rejected, %d accepted, %d dials failed; want %d, %d, %d",
			clients/2, s.Proxy.NoBackend, s.Proxy.Accepted, dialsRefused, clients/2, clients/2, clients)
	}

	// Phase 2: the passive policy takes both down; from then on no dial.
	next := clone(cfg)
	next.Health.Passive = config.Passive{MaxFails: 3, FailDuration: 10 * time.Second}
	if err := lb.Apply(next); err != nil {
		t.Fatal(err)
	}
	down, err := rejectAll(addr, clients/2, workers)
	if err != nil {
		t.Fatalf("backends down: %v", err)
	}
	s = lb.Snapshot()
	dialsDown := s.Backends[0].ConnectFailures + s.Backends[1].ConnectFailures - dialsRefused
	if s.Backends[0].Up || s.Backends[1].Up {
		t.Fatalf("dead backends still up with the passive policy on: %+v", s.Backends)
	}
	if s.Proxy.NoBackend != clients || s.Proxy.Accepted != clients {
		t.Fatalf("after %d clients: %d rejected, %d accepted; want every one rejected", clients, s.Proxy.NoBackend, clients)
	}
	if dialsDown > 2*workers+6 {
		t.Fatalf("%d dials to backends marked down after 3 failures each", dialsDown)
	}

	for phase, took := range map[string][]time.Duration{"dials refused": refused, "marked down": down} {
		if worst := took[len(took)-1]; worst > connectTimeout/5 {
			t.Errorf("%s: a client was closed %v after it connected; want at once, far below connect_timeout %v", phase, worst, connectTimeout)
		}
	}

	// What was logged while 1000 clients were rejected: the two health
	// transitions and the reload, nothing per client. Transitions seen by a
	// failed dial are written off the data path: wait for them.
	waitFor(t, "the two transitions logged", func() bool {
		return strings.Count(strings.Join(logs.messages(linesBefore), "\n"), "backend health changed") == 2
	})
	info, all := logs.count()
	info -= infoBefore
	all -= linesBefore
	if dropped := lb.Snapshot().Proxy.LogsDropped; info > 10 || dropped != 0 {
		t.Fatalf("%d lines at info and above (%d dropped) while %d clients were rejected; want no line per client:\n%s",
			info, dropped, clients, strings.Join(logs.messages(linesBefore), "\n"))
	}
	t.Logf("measured: %d clients with every backend down, %d counted rejected; dials refused (%d refused dials): closed p50 %v, p99 %v, max %v after connecting; marked down (%d dials): p50 %v, p99 %v, max %v (connect_timeout %v); %d log lines at info and above (%d at any level) for the %d clients",
		clients, s.Proxy.NoBackend, dialsRefused,
		quantile(refused, 0.5).Round(10*time.Microsecond), quantile(refused, 0.99).Round(10*time.Microsecond), refused[len(refused)-1].Round(10*time.Microsecond),
		dialsDown, quantile(down, 0.5).Round(10*time.Microsecond), quantile(down, 0.99).Round(10*time.Microsecond), down[len(down)-1].Round(10*time.Microsecond),
		connectTimeout, info, all, clients)
}

// trickleBackend counts the slowloris bytes ('~') it receives and answers
// a whole HTTP request (one ending with a blank line) with "ok".
type trickleBackend struct {
	*rawBackend
	tildes atomic.Int64
}

func newTrickleBackend(t *testing.T) *trickleBackend {
	tb := &trickleBackend{}
	tb.rawBackend = newRawBackend(t, func(c net.Conn, _ *rawBackend, _ int) {
		var tail []byte
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			tb.tildes.Add(int64(bytes.Count(buf[:n], []byte("~"))))
			tail = append(tail, buf[:n]...)
			if bytes.Contains(tail, []byte("\r\n\r\n")) {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
				return
			}
			tail = tail[max(0, len(tail)-3):]
			if err != nil {
				return
			}
		}
	})
	return tb
}

// slowloris is a client sending one byte every interval and never a whole
// request, until halted (or for at most 30s or 1000 bytes).
type slowloris struct {
	c    net.Conn
	sent atomic.Int64
	last atomic.Int64 // unix ns just before the latest write
	stop chan struct{}
	done chan error
	once sync.Once
	err  error
}

func startSlowloris(t *testing.T, addr string, every time.Duration) *slowloris {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &slowloris{c: c, stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		deadline := time.After(30 * time.Second)
		for s.sent.Load() < 1000 {
			select {
			case <-s.stop:
				s.done <- nil
				return
			case <-deadline:
				s.done <- errors.New("still trickling after 30s")
				return
			case <-tick.C:
			}
			s.last.Store(time.Now().UnixNano())
			if _, err := c.Write([]byte("~")); err != nil {
				s.done <- fmt.Errorf("write %d: %w", s.sent.Load()+1, err)
				return
			}
			s.sent.Add(1)
		}
		s.done <- errors.New("sent 1000 bytes")
	}()
	t.Cleanup(func() { s.halt(); c.Close() })
	return s
}

// halt stops the trickle and returns why it ended (nil: halted while
// every write went through).
func (s *slowloris) halt() error {
	s.once.Do(func() { close(s.stop); s.err = <-s.done })
	return s.err
}

// Row "slowloris": a client trickling a byte every 50ms is proxied for as
// long as it trickles (an L4 balancer cannot tell it from a slow upload),
// with or without idle_timeout; once it stops, idle_timeout closes it; and
// 50 of them under max_connections 60 leave room for normal clients.
func TestSlowlorisClientsAreProxiedUntilIdleAndLeaveRoom(t *testing.T) {
	const (
		every = 50 * time.Millisecond
		idle  = time.Second
	)
	tb := newTrickleBackend(t)
	cfg := config.Default()
	cfg.Proxy.ListenAddress = "127.0.0.1:0"
	cfg.Runtime.DrainTimeout = 2 * time.Second
	cfg.Backends = []config.Backend{{ID: 0, Name: "tb", Address: tb.addr, Weight: 1}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	lb := startBalancer(t, cfg)
	addr := lb.Addr().String()

	// Without idle_timeout: 1s of trickle, every byte at the backend, the
	// slot held.
	s := startSlowloris(t, addr, every)
	const noIdleBytes = 20
	waitFor(t, "20 bytes trickled", func() bool { return s.sent.Load() >= noIdleBytes })
	waitFor(t, "the trickled bytes at the backend", func() bool { return tb.tildes.Load() >= noIdleBytes })
	if n := lb.Snapshot().Proxy.Active; n != 1 {
		t.Fatalf("%d connections open, want the slowloris's", n)
	}

	// idle_timeout (20 trickle intervals) reaches the open connection: it
	// keeps trickling for twice the timeout and stays open.
	next := clone(cfg)
	next.Proxy.IdleTimeout = idle
	if err := lb.Apply(next); err != nil {
		t.Fatal(err)
	}
	from, fromAt := s.sent.Load(), time.Now()
	waitFor(t, "trickling for twice the idle timeout", func() bool { return time.Since(fromAt) >= 2*idle })
	if n := lb.Snapshot().Proxy.Active; n != 1 {
		t.Fatalf("%d connections open after trickling for %v with idle_timeout %v, want the slowloris's", n, 2*idle, idle)
	}
	if err := s.halt(); err != nil {
		t.Fatalf("slowloris with idle_timeout %v, trickling every %v: %v", idle, every, err)
	}
	sent := s.sent.Load()
	waitFor(t, "every trickled byte at the backend", func() bool { return tb.tildes.Load() == sent })
	idleBytes, trickled := sent-from, time.Duration(s.last.Load()-fromAt.UnixNano())
	// Once it stops, the idle timeout closes it.
	_, end, err := readEnd(s.c, idle+10*time.Second)
	if err != nil {
		t.Fatalf("slowloris that stopped trickling: %v (idle_timeout %v)", err, idle)
	}
	closedAfter := end.Sub(time.Unix(0, s.last.Load()))
	if closedAfter < idle || closedAfter > idle+idle/4+2*time.Second {
		t.Fatalf("slowloris closed %v after its last byte; want about the %v idle timeout, never before", closedAfter, idle)
	}
	waitFor(t, "its slot freed", func() bool { return lb.Snapshot().Proxy.Active == 0 })

	// 50 of them under max_connections 60: normal clients still get in.
	next = clone(next)
	next.Proxy.MaxConnections = 60
	if err := lb.Apply(next); err != nil {
		t.Fatal(err)
	}
	const crowd = 50
	var horde []*slowloris
	for range crowd {
		horde = append(horde, startSlowloris(t, addr, every))
	}
	waitFor(t, "50 slowloris connected to the backend", func() bool { return lb.Snapshot().Proxy.Active == crowd })
	tildesBefore := sent // the first slowloris's bytes (all arrived); the 50's come on top
	// Normal requests one after another for 1.5 idle timeouts (at most
	// 2000): the 50 trickle all along and stay.
	var requests int
	var slowest time.Duration
	requestsBegan := time.Now()
	for requests < 2000 && (requests < 20 || time.Since(requestsBegan) < idle*3/2) {
		begin := time.Now()
		body, err := get(addr, "")
		if err != nil || body != "ok" {
			t.Fatalf("normal request %d beside %d slowloris at max_connections 60: %q, %v", requests, crowd, body, err)
		}
		slowest = max(slowest, time.Since(begin))
		requests++
	}
	requestsTook := time.Since(requestsBegan)
	waitFor(t, "the last normal connection closed", func() bool { return lb.Snapshot().Proxy.Active <= crowd })
	if n := lb.Snapshot().Proxy.Active; n != crowd {
		t.Fatalf("%d connections open after %v of normal requests, want the %d slowloris", n, requestsTook, crowd)
	}
	for i, h := range horde {
		if err := h.halt(); err != nil {
			t.Fatalf("slowloris %d of %d: %v", i, crowd, err)
		}
	}
	// Every byte the 50 trickled, before and during the normal requests,
	// reached the backend.
	var hordeSent int64
	for _, h := range horde {
		hordeSent += h.sent.Load()
	}
	waitFor(t, "every byte of the 50 at the backend", func() bool { return tb.tildes.Load()-tildesBefore == hordeSent })
	t.Logf("measured: slowloris (1 byte every %v) without idle_timeout: %d bytes proxied, slot held; with idle_timeout %v: %d/%d bytes over %s proxied, still open, closed %s after its last byte; %d slowloris at max_connections 60: %d/%d normal requests ok over %s (slowest %v), all %d still open and every one of the %d bytes they trickled proxied",
		every, noIdleBytes, idle, idleBytes, idleBytes, seconds(trickled), seconds(closedAfter), crowd, requests, requests, seconds(requestsTook), slowest.Round(100*time.Microsecond), crowd, hordeSent)
}

// Row "listen address changed by reload": connections opened on the old
// address keep working to the end (one of them with a request split across
// the switch), the new address serves at once, the old one refuses new
// connections, and no request fails.
func TestListenAddressChangeUnderLoadLosesNothing(t *testing.T) {
	a, b := newSlowBackend(t, "a", 2*time.Millisecond), newSlowBackend(t, "b", 2*time.Millisecond)
	cfg := testConfig(t, "round_robin", a, b)
	cfg.Runtime.DrainTimeout = 5 * time.Second
	lb := startBalancer(t, cfg)
	oldAddr := lb.Addr().String()

	stop := make(chan struct{})
	var stopOnce sync.Once
	perRequest := startLoad(lb, 4, stop) // follows the listen address
	// Keep-alive connections opened on the old address before the switch.
	const kept = 6
	var applyBegin, applyEnd atomic.Int64 // unix ns
	type keptStats struct {
		before, after, across atomic.Int64
		err                   atomic.Pointer[error]
	}
	stats := make([]*keptStats, kept)
	var wg sync.WaitGroup
	stopAll := func() { stopOnce.Do(func() { close(stop) }); perRequest.wg.Wait(); wg.Wait() }
	defer stopAll()
	for i := range kept {
		k := dialKeepAlive(t, oldAddr)
		st := &keptStats{}
		stats[i] = st
		wg.Go(func() {
			for n := 0; n < 5000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				begin := time.Now().UnixNano()
				if _, err := k.get(); err != nil {
					st.err.Store(&err)
					return
				}
				end := time.Now().UnixNano()
				switch ab, ae := applyBegin.Load(), applyEnd.Load(); {
				case ae != 0 && begin < ab && end > ae:
					st.across.Add(1)
				case ae != 0 && begin > ae:
					st.after.Add(1)
				default:
					st.before.Add(1)
				}
			}
		})
	}
	keptTotal := func(f func(*keptStats) int64) (n int64) {
		for _, st := range stats {
			n += f(st)
		}
		return n
	}
	failed := func() bool {
		for _, st := range stats {
			if st.err.Load() != nil {
				return true
			}
		}
		return perRequest.failed.Load() > 0
	}
	waitFor(t, "load on the old address", func() bool {
		return failed() || perRequest.ok.Load() >= 50 && keptTotal(func(s *keptStats) int64 { return s.before.Load() }) >= 50
	})
	// A request split across the switch on a connection to the old address.
	split := dialKeepAlive(t, oldAddr)
	split.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(split.c, "GET / HTTP/1.1\r\nHo"); err != nil {
		t.Fatal(err)
	}
	okBefore := perRequest.ok.Load()

	next := clone(cfg)
	next.Proxy.ListenAddress = freePort(t)
	applyBegin.Store(time.Now().UnixNano())
	if err := lb.Apply(next); err != nil {
		t.Fatal(err)
	}
	applyEnd.Store(time.Now().UnixNano())
	applyTook := time.Duration(applyEnd.Load() - applyBegin.Load())
	newAddr := lb.Addr().String()
	if newAddr == oldAddr {
		t.Fatalf("still on %s after the reload", oldAddr)
	}

	if _, err := io.WriteString(split.c, "st: lemonade\r\n\r\n"); err != nil {
		t.Fatalf("second half of a request on the old address after the switch: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(split.c), nil)
	if err != nil {
		t.Fatalf("request split across the switch: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("request split across the switch: status %d", resp.StatusCode)
	}

	var refusedAfter time.Duration
	waitFor(t, "the old address refusing", func() bool {
		c, err := net.DialTimeout("tcp", oldAddr, time.Second)
		if err == nil {
			c.Close()
			return false
		}
		refusedAfter = time.Since(time.Unix(0, applyEnd.Load()))
		return true
	})
	waitFor(t, "requests on both sides of the switch", func() bool {
		if failed() {
			return true
		}
		for _, st := range stats {
			if st.after.Load() < 20 {
				return false
			}
		}
		return perRequest.ok.Load() >= okBefore+50
	})
	stopAll()
	for i, st := range stats {
		if p := st.err.Load(); p != nil {
			t.Errorf("keep-alive connection %d opened on the old address: %v after %d requests before the switch, %d after", i, *p, st.before.Load(), st.after.Load())
		}
	}
	if n := perRequest.failed.Load(); n != 0 {
		t.Errorf("%d of %d connection-per-request requests failed; first: %v", n, n+perRequest.ok.Load(), perRequest.errs[0])
	}
	if t.Failed() {
		t.FailNow()
	}
	before, across, after := keptTotal(func(s *keptStats) int64 { return s.before.Load() }), keptTotal(func(s *keptStats) int64 { return s.across.Load() }), keptTotal(func(s *keptStats) int64 { return s.after.Load() })
	t.Logf("measured: listen address changed under load (apply %v): %d connection-per-request requests and %d on %d keep-alive connections opened on the old address (%d before the switch, %d in flight across it, %d after), 0 failed; a request split across the switch answered 200; the old address refused new connections %v after the apply",
		applyTook.Round(10*time.Microsecond), perRequest.ok.Load(), before+across+after, kept, before, across, after, refusedAfter.Round(time.Millisecond))
}
