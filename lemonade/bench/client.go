package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// target is what every worker's client needs to know about the URL.
type target struct {
	addr     string        // host:port to dial
	tls      *tls.Config   // nil for http
	request  []byte        // the request, serialised once
	template *http.Request // for http.ReadResponse
}

func newTarget(o Options) (*target, error) {
	req, err := http.NewRequest(http.MethodGet, o.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", userAgent)
	req.Close = o.NoKeepAlive // writes Connection: close
	var buf bytes.Buffer
	if err := req.Write(&buf); err != nil {
		return nil, err
	}
	t := &target{request: buf.Bytes(), template: req}
	port := req.URL.Port()
	if req.URL.Scheme == "https" {
		if port == "" {
			port = "443"
		}
		t.tls = &tls.Config{ServerName: req.URL.Hostname(), NextProtos: []string{"http/1.1"}}
	} else if port == "" {
		port = "80"
	}
	t.addr = net.JoinHostPort(req.URL.Hostname(), port)
	return t, nil
}

// client sends requests one at a time on one connection, kept alive unless
// the options or the server say otherwise.
//
// It is not net/http's Transport on purpose: the Transport hands every
// request and response between the caller and two goroutines per
// connection, which doubled the CPU time per request and halved the
// throughput a 2-core machine could generate (see docs/usage-bench.md). The
// HTTP itself is still net/http's: Request.Write serialises the request
// once and http.ReadResponse parses every response.
type client struct {
	t       *target
	timeout time.Duration
	conn    net.Conn
	br      *bufio.Reader
	reused  bool        // conn has carried a whole request already
	unwatch func() bool // stops the context.AfterFunc that aborts conn's I/O
}

// longAgo is a deadline that makes pending and future I/O fail at once.
var longAgo = time.Unix(1, 0)

// do sends one request and reads the whole response, keeping up to maxBody
// bytes of its body in *buf. A request on a reused connection that the
// server had closed meanwhile (an idle timeout, a limit of requests per
// connection) is sent again once on a new one, as net/http does.
func (c *client) do(ctx context.Context, buf *[]byte) (status, n int, err error) {
	deadline := time.Now().Add(c.timeout)
	for {
		if c.conn == nil {
			if err := c.dial(ctx, deadline); err != nil {
				return 0, 0, err
			}
		}
		if err := c.conn.SetDeadline(deadline); err != nil {
			c.close()
			return 0, 0, err
		}
		if ctx.Err() != nil { // the watcher may have run before SetDeadline
			c.close()
			return 0, 0, ctx.Err()
		}
		status, n, err = c.roundTrip(buf)
		if err == nil {
			return status, n, nil
		}
		retry := c.reused && status == 0 && closedBeforeAnswer(err)
		c.close()
		if !retry {
			return status, n, err
		}
	}
}

func (c *client) roundTrip(buf *[]byte) (status, n int, err error) {
	if _, err := c.conn.Write(c.t.request); err != nil {
		return 0, 0, err
	}
	// ReadResponse reports a connection closed before any byte as
	// io.ErrUnexpectedEOF; Peek tells that case apart (io.EOF), for retrying.
	if _, err := c.br.Peek(1); err != nil {
		return 0, 0, err
	}
	resp, err := http.ReadResponse(c.br, c.t.template)
	if err != nil {
		return 0, 0, err
	}
	n, err = readBody(resp.Body, buf)
	resp.Body.Close()
	if err != nil {
		return resp.StatusCode, n, err
	}
	if resp.Close || c.t.template.Close {
		c.close()
	} else {
		c.reused = true
	}
	return resp.StatusCode, n, nil
}

// closedBeforeAnswer tells whether err says the server closed the
// connection before answering at all.
func closedBeforeAnswer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (c *client) dial(ctx context.Context, deadline time.Time) error {
	d := &net.Dialer{Deadline: deadline}
	var conn net.Conn
	var err error
	if c.t.tls != nil {
		conn, err = (&tls.Dialer{NetDialer: d, Config: c.t.tls}).DialContext(ctx, "tcp", c.t.addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", c.t.addr)
	}
	if err != nil {
		return err
	}
	c.conn, c.reused = conn, false
	if c.br == nil {
		c.br = bufio.NewReaderSize(conn, 4096)
	} else {
		c.br.Reset(conn)
	}
	// When the run ends, requests in flight end too.
	c.unwatch = context.AfterFunc(ctx, func() { conn.SetDeadline(longAgo) })
	return nil
}

func (c *client) close() {
	if c.conn == nil {
		return
	}
	c.unwatch()
	c.conn.Close()
	c.conn = nil
}

// readBody reads body to its end, keeping up to maxBody bytes in *buf
// (grown as needed) and discarding the rest.
func readBody(body io.Reader, buf *[]byte) (int, error) {
	b, n := *buf, 0
	for {
		if n == len(b) {
			if len(b) >= maxBody {
				*buf = b
				_, err := io.Copy(io.Discard, body)
				return n, err
			}
			b = append(b, make([]byte, len(b))...)
		}
		m, err := body.Read(b[n:])
		n += m
		if err == io.EOF { // the io.Reader contract: EOF itself, never wrapped
			*buf = b
			return n, nil
		}
		if err != nil {
			*buf = b
			return n, err
		}
	}
}
