package proxy

// The access log's lines as both engines write them: one per connection,
// with how it ended. No build tag: run with -tags lemonade_goroutines for the
// goroutine engine.

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/accesslog"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/observability/testnet"
)

// line is one access log line, as JSON reads it.
type line struct {
	Time     string   `json:"time"`
	Client   *string  `json:"client"`
	Listener string   `json:"listener"`
	Backend  *string  `json:"backend"`
	BackAddr *string  `json:"backend_address"`
	BytesIn  int64    `json:"bytes_in"`
	BytesOut int64    `json:"bytes_out"`
	Duration float64  `json:"duration_ms"`
	Connect  *float64 `json:"connect_ms"`
	TTFB     *float64 `json:"ttfb_ms"`
	Retries  int      `json:"retries"`
	End      string   `json:"end"`
	raw      string
}

// accessLogOf sends srv's lines, in JSON, to a file; next waits for the
// next line (5s at most).
func accessLogOf(t *testing.T, srv *Server) (next func() line) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "access.log")
	out, err := accesslog.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l := accesslog.New(nil)
	l.Use(out, accesslog.JSON)
	srv.SetAccessLog(l)
	t.Cleanup(func() { l.Close() }) // runs before the server's cleanup (registered earlier): later lines are dropped and counted
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r := bufio.NewReader(f)
	var partial string
	return func() line {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			s, err := r.ReadString('\n')
			partial += s
			if err == nil {
				var ln line
				if err := json.Unmarshal([]byte(partial), &ln); err != nil {
					t.Fatalf("access log line %q: %v", partial, err)
				}
				ln.raw, partial = partial, ""
				return ln
			}
			if err != io.EOF {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 5s, no access log line (stats %+v, log %+v)", srv.Stats(), l.Stats())
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

func str(p *string) string {
	if p == nil {
		return "null"
	}
	return *p
}

func TestAccessLogLineOfACleanConnection(t *testing.T) {
	backendAddr := server(t, replyAfterEOF)
	h := start(t, Settings{}, backendAddr)
	next := accessLogOf(t, h.srv)
	c := dialClient(t, h.addr)
	io.WriteString(c, "hello")
	c.CloseWrite()
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	ln := next()
	if ln.End != "client_fin" {
		t.Errorf("end = %q, want client_fin: %s", ln.End, ln.raw)
	}
	if str(ln.Client) != c.LocalAddr().String() || ln.Listener != h.addr {
		t.Errorf("client %s listener %s, want %s and %s: %s", str(ln.Client), ln.Listener, c.LocalAddr(), h.addr, ln.raw)
	}
	if str(ln.Backend) != "b0" || str(ln.BackAddr) != backendAddr {
		t.Errorf("backend %s at %s, want b0 at %s: %s", str(ln.Backend), str(ln.BackAddr), backendAddr, ln.raw)
	}
	if ln.BytesIn != 5 || ln.BytesOut != int64(len(reply)) {
		t.Errorf("bytes in/out %d/%d, want 5/%d: %s", ln.BytesIn, ln.BytesOut, len(reply), ln.raw)
	}
	if ln.Connect == nil || ln.TTFB == nil || *ln.Connect < 0 || *ln.TTFB < 0 || ln.Duration < *ln.Connect || ln.Retries != 0 {
		t.Errorf("timings or retries wrong: %s", ln.raw)
	}
	if at, err := time.Parse(time.RFC3339Nano, ln.Time); err != nil || time.Since(at) > time.Minute || time.Until(at) > time.Second {
		t.Errorf("time %q (%v): not now", ln.Time, err)
	}
}

// Each way a connection can end, by the fault that ends it.
func TestAccessLogNamesHowEachConnectionEnded(t *testing.T) {
	type run func(t *testing.T, h *harness)
	cases := []struct {
		name    string
		set     Settings
		backend func(net.Conn)
		client  run
		want    string
	}{
		{"backend FIN first", Settings{}, func(c net.Conn) {
			io.WriteString(c, "bye")
		}, func(t *testing.T, h *harness) {
			c := dialClient(t, h.addr)
			io.ReadAll(c)
			c.Close()
		}, "backend_fin"},
		{"client reset", Settings{}, func(c net.Conn) {
			io.Copy(io.Discard, c)
		}, func(t *testing.T, h *harness) {
			c := dialClient(t, h.addr)
			io.WriteString(c, "half a request")
			waitFor(t, func() bool { return h.pool[0].Active() == 1 })
			abort(c)
		}, "client_reset"},
		{"backend reset", Settings{}, func(c net.Conn) {
			io.ReadFull(c, make([]byte, 3))
			io.WriteString(c, "partial")
			abort(c)
		}, func(t *testing.T, h *harness) {
			c := dialClient(t, h.addr)
			io.WriteString(c, "GET")
			io.ReadAll(c)
		}, "backend_reset"},
		{"idle timeout", Settings{IdleTimeout: 50 * time.Millisecond}, func(c net.Conn) {
			io.Copy(io.Discard, c)
		}, func(t *testing.T, h *harness) {
			c := dialClient(t, h.addr)
			io.ReadAll(c)
		}, "idle_timeout"},
		{"drain timeout", Settings{}, func(c net.Conn) {
			io.Copy(io.Discard, c)
		}, func(t *testing.T, h *harness) {
			c := dialClient(t, h.addr)
			waitFor(t, func() bool { return h.pool[0].Active() == 1 })
			if n := h.srv.CloseBackend(h.pool[0]); n != 1 {
				t.Errorf("CloseBackend closed %d, want 1", n)
			}
			io.ReadAll(c)
		}, "drain_timeout"},
		{"shutdown", Settings{}, func(c net.Conn) {
			io.Copy(io.Discard, c)
		}, func(t *testing.T, h *harness) {
			c := dialClient(t, h.addr)
			waitFor(t, func() bool { return h.pool[0].Active() == 1 })
			h.srv.CloseAll()
			io.ReadAll(c)
		}, "shutdown"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, tc.set, server(t, tc.backend))
			next := accessLogOf(t, h.srv)
			tc.client(t, h)
			if ln := next(); ln.End != tc.want {
				t.Errorf("end = %q, want %q: %s", ln.End, tc.want, ln.raw)
			}
		})
	}
}

// No backend answers: the line names the last backend tried, no address,
// and the retries.
func TestAccessLogOfAConnectionNoBackendTook(t *testing.T) {
	h := start(t, Settings{Retries: 1, Passive: backend.Passive{}}, testnet.Addr(t), testnet.Addr(t))
	next := accessLogOf(t, h.srv)
	c := dialClient(t, h.addr)
	if _, err := io.ReadAll(c); err != nil {
		t.Fatal(err)
	}
	ln := next()
	if ln.End != "no_backend" || ln.Retries != 1 || ln.BackAddr != nil || ln.Connect != nil || ln.TTFB != nil {
		t.Errorf("want no_backend, 1 retry, no backend address, connect or ttfb: %s", ln.raw)
	}
	if b := str(ln.Backend); b != "b0" && b != "b1" {
		t.Errorf("backend %s, want the last one tried: %s", b, ln.raw)
	}
	if ln.BytesIn != 0 || ln.BytesOut != 0 {
		t.Errorf("bytes moved without a backend: %s", ln.raw)
	}
}

// A shutdown while the backend is dialled: the backend is named, with no
// address (none was connected).
func TestAccessLogOfAShutdownDuringTheDial(t *testing.T) {
	h := start(t, Settings{ConnectTimeout: 10 * time.Second}, stuckAddress(t))
	next := accessLogOf(t, h.srv)
	c := dialClient(t, h.addr)
	waitFor(t, func() bool { return h.pool[0].Active() == 1 })
	h.srv.CloseAll()
	io.ReadAll(c)
	if ln := next(); ln.End != "shutdown" || str(ln.Backend) != "b0" || ln.BackAddr != nil || ln.Connect != nil {
		t.Errorf("want shutdown, backend b0, no address, no connect: %s", ln.raw)
	}
}

// A client that resets while its backend is dialled.
func TestAccessLogOfAClientThatLeftDuringTheDial(t *testing.T) {
	h := start(t, Settings{ConnectTimeout: 10 * time.Second}, stuckAddress(t))
	next := accessLogOf(t, h.srv)
	c := dialClient(t, h.addr)
	waitFor(t, func() bool { return h.pool[0].Active() == 1 })
	abort(c)
	if ln := next(); ln.End != "client_reset" || ln.Connect != nil {
		t.Errorf("want client_reset before any connect: %s", ln.raw)
	}
}

// A full queue drops lines and counts them; the proxy never waits for the
// log.
func TestAccessLogNeverBlocksTheProxy(t *testing.T) {
	h := start(t, Settings{}, server(t, func(c net.Conn) {}))
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	reader, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0) // a reader that does not read yet
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	out, err := accesslog.Open(fifo)
	if err != nil {
		t.Fatal(err)
	}
	l := accesslog.New(nil)
	defer l.Close()
	l.Use(out, accesslog.Text)
	h.srv.SetAccessLog(l)
	defer h.srv.SetAccessLog(nil)
	// The pipe holds 64 KiB, the writer's buffer 64 KiB and the queue
	// QueueSize lines: twice that many connections overflow it all.
	n := 0
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for l.Stats().Dropped == 0 && ctx.Err() == nil && n < 4*accesslog.QueueSize {
		c := dialClient(t, h.addr)
		io.ReadAll(c)
		c.Close()
		n++
	}
	waitFor(t, func() bool { return h.srv.Stats().Active == 0 })
	if l.Stats().Dropped == 0 {
		t.Fatalf("%d connections, nothing dropped: %+v", n, l.Stats())
	}
	// Everything sent is written or dropped once the reader reads.
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, reader); close(done) }()
	closed := make(chan struct{})
	go func() { l.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the log's Close did not return once the pipe was read")
	}
	if s := l.Stats(); s.Written+s.Dropped != uint64(n) {
		t.Errorf("%d connections, %d lines written + %d dropped", n, s.Written, s.Dropped)
	}
}
