package servicetest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/service"
)

// Bounds of the bad input checks. A server refuses bad input it can see at
// once within quickBound, well under any read timeout, so waiting for a
// timeout to end it counts as a hang. Input the server can only refuse by
// timing out (a header or body that stops coming) gets slowBound: the
// server's read timeout and some slack for a busy machine.
const (
	quickBound = 5 * time.Second
	slowBound  = service.ReadTimeout + 5*time.Second
)

// BadInput sends malformed and hostile HTTP to serve on raw connections and
// checks that the server refuses each input, with a 4xx or by closing the
// connection, within a bound, never with a 5xx, a hang or a crash; and that
// it still answers a good request after each. An adapter must give up on a
// header or body that stops coming within service.ReadTimeout. The inputs
// are independent: all of them are sent at once, each on its own
// connection, so the suite takes one read timeout however many wait for it
// (whatever -parallel says). A connection the server never lets go of also
// shows when the server stops (see Start).
func BadInput(t *testing.T, serve ServeFunc) {
	target := Start(t, Config("bad-input"), serve)
	c := newClient(t, target)

	cases := []struct {
		name   string
		within time.Duration
		send   func(net.Conn) error
		served []int // statuses of good requests the input starts with, before the bad part
	}{
		{name: "garbage request line", within: quickBound, send: write("hello, this is not HTTP\r\n\r\n")},
		{name: "method only", within: quickBound, send: write("GET\r\n\r\n")},
		{name: "request line without version", within: quickBound, send: write("GET /health\r\nHost: x\r\n\r\n")},
		{name: "binary blob", within: quickBound, send: write(string(binaryBlob()) + "\r\n\r\n")},
		{name: "header line without colon", within: quickBound,
			send: write("GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")},
		{name: "invalid Content-Length", within: quickBound,
			send: write("POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")},
		{name: "2 MiB header", within: quickBound,
			send: write("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n")},
		{name: "10k header lines", within: quickBound, send: write(manyHeaders(10_000))},
		{name: "pipelined garbage after a good request", within: quickBound, served: []int{200},
			send: write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01 garbage \xff\r\n\r\n")},
		{name: "body shorter than Content-Length, then close", within: quickBound,
			send: func(conn net.Conn) error {
				if err := write(shortBody)(conn); err != nil {
					return err
				}
				return conn.(*net.TCPConn).CloseWrite()
			}},
		{name: "body shorter than Content-Length, then stall", within: slowBound, send: write(shortBody)},
		{name: "header trickled a byte at a time", within: slowBound, send: trickle},
		// Like a TLS record, with no line end: a server may wait for the end
		// of the request line, but only as long as for any header.
		{name: "binary without a line end", within: slowBound, send: write(strings.Repeat("\x16\x03\x01\x00", 16<<10))},
	}
	addr := strings.TrimPrefix(target.URL, "http://")
	exchanges := make([]chan exchange, len(cases))
	for i, tc := range cases {
		exchanges[i] = make(chan exchange, 1)
		go func() { exchanges[i] <- rawExchange(addr, tc.within, tc.send) }()
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ex := <-exchanges[i]
			t.Logf("after %s: statuses %v, end %v", ex.took.Round(time.Millisecond), ex.statuses, ex.end)
			ex.check(t, tc.served)
			if r, err := c.try(t.Context(), "GET", "/health"); err != nil || r.status != 200 {
				t.Errorf("GET /health afterwards: status %d, error %v; want 200", r.status, err)
			}
		})
	}
}

// shortBody promises 1000 bytes of body and sends 10. Every route answers
// POST with 405, so a server that answers without the body refuses it too.
const shortBody = "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789"

// write returns a send that writes s in one go.
func write(s string) func(net.Conn) error {
	return func(conn net.Conn) error {
		_, err := io.WriteString(conn, s)
		return err
	}
}

// trickle starts a request and then sends its header one byte every 100 ms,
// for longer than a server may wait for a header, and then stops: a
// slowloris.
func trickle(conn net.Conn) error {
	if _, err := io.WriteString(conn, "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		return err
	}
	for range slowBound / (100 * time.Millisecond) {
		time.Sleep(100 * time.Millisecond)
		if _, err := conn.Write([]byte{'a'}); err != nil {
			return err // the server hung up: done
		}
	}
	return nil
}

// binaryBlob is 4 KiB holding every byte value, line ends included, so the
// server sees a "request line" of binary soon.
func binaryBlob() []byte {
	b := make([]byte, 4096)
	for i := range b {
		b[i] = byte(i * 131) // 131 is odd: each value once per 256 bytes
	}
	return b
}

// manyHeaders is a GET /health with n header lines of about 120 bytes: over
// 1 MiB in all for n = 10 000.
func manyHeaders(n int) string {
	var b strings.Builder
	b.WriteString("GET /health HTTP/1.1\r\nHost: x\r\n")
	v := strings.Repeat("v", 100)
	for i := range n {
		fmt.Fprintf(&b, "X-Header-%05d: %s\r\n", i, v)
	}
	b.WriteString("\r\n")
	return b.String()
}

// exchange is what came back on a raw connection.
type exchange struct {
	statuses []int         // of every response read, in order
	end      error         // why reading stopped: nil after a refusal (status >= 400), else the error
	took     time.Duration // from dialling to the end
}

// rawExchange dials addr and sends the input with send while reading the
// responses, so a server that answers and hangs up before reading it all
// does not block the test. It reads until a response has a status of 400 or
// more, the server closes the connection, or within passes; then it closes
// the connection and waits for send to return.
func rawExchange(addr string, within time.Duration, send func(net.Conn) error) (ex exchange) {
	start := time.Now()
	defer func() { ex.took = time.Since(start) }()
	conn, err := net.DialTimeout("tcp", addr, within)
	if err != nil {
		return exchange{end: err}
	}
	sent := make(chan error, 1)
	go func() { sent <- send(conn) }()
	defer func() {
		conn.Close()
		<-sent // a write error only says the server hung up first
	}()
	if err := conn.SetReadDeadline(start.Add(within)); err != nil {
		return exchange{end: err}
	}

	br := bufio.NewReader(conn)
	for range 8 { // more answers than any input here holds requests
		// ReadResponse calls a close before the status line unexpected;
		// here it is the server refusing the input.
		if _, err := br.Peek(1); err != nil {
			ex.end = err
			return ex
		}
		res, err := http.ReadResponse(br, nil)
		if err == nil {
			_, err = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		if err != nil {
			ex.end = err
			return ex
		}
		ex.statuses = append(ex.statuses, res.StatusCode)
		if res.StatusCode >= 400 {
			return ex
		}
	}
	ex.end = errors.New("too many responses")
	return ex
}

// check fails t unless the exchange shows the input refused: the statuses
// in served for its good requests first, then a 4xx or the connection
// closed (EOF or reset). A 5xx is the server failing, not refusing; a
// deadline is a hang; a response cut short is a broken answer.
func (ex exchange) check(t *testing.T, served []int) {
	t.Helper()
	if len(ex.statuses) < len(served) || !slices.Equal(ex.statuses[:len(served)], served) {
		t.Fatalf("statuses %v (then %v); want %v first", ex.statuses, ex.end, served)
	}
	rest := ex.statuses[len(served):]
	switch {
	case len(rest) > 1 || len(rest) == 1 && (rest[0] < 400 || rest[0] >= 500):
		t.Errorf("bad input answered with statuses %v; want a 4xx or the connection closed", rest)
	case len(rest) == 1:
		// refused with a 4xx
	case errors.Is(ex.end, io.EOF), errors.Is(ex.end, syscall.ECONNRESET):
		// closed
	case errors.Is(ex.end, os.ErrDeadlineExceeded):
		t.Errorf("no answer and the connection still open: the server hangs")
	default:
		t.Errorf("reading the answer: %v", ex.end)
	}
}
