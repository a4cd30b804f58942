package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// runMainEnv makes the test binary run main instead of the tests (runCommand).
const runMainEnv = "FAIRNESS_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// command is the test binary run as the fairness command with args; under
// go test -cover it writes its counters into GOCOVERDIR like any -cover binary.
// Under -race it would wait a second before a clean exit: not here.
func command(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1",
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return cmd
}

// runCommand runs the fairness command with args to its end.
func runCommand(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := command(args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if cmd.ProcessState == nil {
		t.Fatalf("fairness %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// backend is an in-process fairness backend on a loopback port.
func backend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { serveListener(ln); close(done) }()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// fakeServer serves each connection to a loopback port with handle, which
// must return once the peer has gone; the listener is handed over too.
func fakeServer(t *testing.T, handle func(ln net.Listener, c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); handle(ln, c) })
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestCommandLine(t *testing.T) {
	target := backend(t)
	for _, c := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{nil, 2, "", usageText},
		{[]string{"help"}, 0, usageText, ""},
		{[]string{"--help"}, 0, usageText, ""},
		{[]string{"serve"}, 2, "", `fairness: unknown subcommand "serve"` + "\n" + usageText},
		{[]string{"probe"}, 1, "", "fairness: probe: -target is required\n"},
		{[]string{"client", "-bulk", "-1", "-target", target}, 1, "", "fairness: client: -bulk must be 0 or more\n"},
		{[]string{"probe", "-target", target}, 0, "", ""},
	} {
		name := strings.Join(c.args, " ")
		if name == "" {
			name = "no arguments"
		}
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := runCommand(t, c.args...)
			if code != c.code || stdout != c.stdout || stderr != c.stderr {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr %q",
					code, stdout, stderr, c.code, c.stdout, c.stderr)
			}
		})
	}
	// -h on a subcommand: its flags, and no error.
	for _, sub := range []string{"backend", "client", "probe"} {
		code, stdout, stderr := runCommand(t, sub, "-h")
		if code != 0 || stdout != "" || !strings.HasPrefix(stderr, "Usage of "+sub+":\n") || !strings.Contains(stderr, "\n  -") {
			t.Errorf("%s -h: exit %d, stdout %q, stderr %q; want exit 0 and the flags on stderr", sub, code, stdout, stderr)
		}
	}
}

// The backend subcommand says where it listens and serves a probe there.
func TestCommandBackend(t *testing.T) {
	cmd := command("backend", "-addr", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	line, err := bufio.NewReader(stderr).ReadString('\n')
	if err != nil {
		t.Fatalf("no line from the backend: %v", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "fairness backend listening on ")
	if !ok {
		t.Fatalf("backend said %q", line)
	}
	if err := runProbe([]string{"-target", addr}); err != nil {
		t.Errorf("probe of the backend at %s: %v", addr, err)
	}
}

func TestBackendErrors(t *testing.T) {
	if err := runBackend([]string{"-port", "1"}); err == nil || !strings.Contains(err.Error(), "flag provided but not defined: -port") {
		t.Errorf("runBackend(-port 1) = %v, want the unknown flag named", err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if err := runBackend([]string{"-addr", busy.Addr().String()}); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("runBackend on a busy address = %v, want EADDRINUSE", err)
	}
}

// A connection that ends without a first byte (a health check) is closed.
func TestBackendClosesSilentConnection(t *testing.T) {
	c, err := net.Dial("tcp", backend(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("read after a silent half-close = %d, %v; want 0, EOF", n, err)
	}
}

func TestClientFlagErrors(t *testing.T) {
	target := closedAddr(t) // never dialled: every case fails first
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "client: -target is required"},
		{[]string{"-bulk", "-1"}, "client: -bulk must be 0 or more"},
		{[]string{"-duration", "0s"}, "client: -duration must be positive"},
		{[]string{"-warmup", "-1ms"}, "client: -warmup must be 0 or more"},
		{[]string{"-pings", "-5"}, "client: -pings must be 0 or more"},
		{[]string{"-timeout", "0s"}, "client: -timeout must be positive"},
		{[]string{"-dir", "sideways"}, `client: -dir must be both, up or down, not "sideways"`},
		{[]string{"-bulk", "many"}, `invalid value "many" for flag -bulk: parse error`},
	} {
		args := c.args
		if args != nil {
			args = append([]string{"-target", target}, args...)
		}
		var out bytes.Buffer
		if err := runClient(args, &out); err == nil || err.Error() != c.want {
			t.Errorf("client %s: %v, want %q", strings.Join(args, " "), err, c.want)
		}
		if out.Len() != 0 {
			t.Errorf("client %s printed %q", strings.Join(args, " "), out.String())
		}
	}
}

func TestProbeErrors(t *testing.T) {
	if err := runProbe(nil); err == nil || err.Error() != "probe: -target is required" {
		t.Errorf("probe without -target: %v", err)
	}
	if err := runProbe([]string{"-timeout", "soon"}); err == nil || !strings.Contains(err.Error(), `invalid value "soon" for flag -timeout`) {
		t.Errorf("probe -timeout soon: %v", err)
	}
	if err := runProbe([]string{"-target", closedAddr(t)}); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("probe of a closed port: %v, want ECONNREFUSED", err)
	}
	wrong := fakeServer(t, func(_ net.Listener, c net.Conn) {
		c.Read(make([]byte, 1))
		c.Write([]byte{'x'})
		io.Copy(io.Discard, c)
	})
	if err := runProbe([]string{"-target", wrong}); err == nil || err.Error() != `echo returned 'x', want 'p'` {
		t.Errorf("probe of a server answering x: %v", err)
	}
	silent := fakeServer(t, func(_ net.Listener, c net.Conn) { io.Copy(io.Discard, c) })
	if err := runProbe([]string{"-target", silent, "-timeout", "50ms"}); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("probe of a server that never answers: %v, want a timeout", err)
	}
}

func TestRoundTripOnClosedConn(t *testing.T) {
	c, err := net.Dial("tcp", backend(t))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := roundTrip(c, make([]byte, 1), time.Second); !errors.Is(err, net.ErrClosed) {
		t.Errorf("roundTrip on a closed conn = %v, want net.ErrClosed", err)
	}
}

// hangUp ends what the server sends (a FIN, never a reset: the client reads
// EOF) and waits for the client to go.
func hangUp(c net.Conn) {
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c)
}

// echoOnce echoes one byte, then hangs up.
func echoOnce(_ net.Listener, c net.Conn) {
	b := make([]byte, 1)
	if _, err := c.Read(b); err == nil {
		c.Write(b)
	}
	hangUp(c)
}

// resultField is the value of key in the client's "result" line.
func resultField(t *testing.T, out, key string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^result .*\b` + key + `=(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s in a result line:\n%s", key, out)
	}
	return m[1]
}

func TestClientFailures(t *testing.T) {
	quick := []string{"-bulk", "0", "-warmup", "0s", "-duration", "5s", "-pings", "0", "-timeout", "5s"}
	for _, c := range []struct {
		name   string
		target string
		args   []string
		want   string // the error's beginning
		is     error
		result bool // whether a result line is printed
	}{
		{"refused", closedAddr(t), nil, "ping connection: ", syscall.ECONNREFUSED, false},
		{"hung up at once", fakeServer(t, func(_ net.Listener, c net.Conn) { hangUp(c) }), nil, "first round trip: ", io.EOF, false},
		{"hung up after one round trip", fakeServer(t, echoOnce), nil, "round trip 1: ", io.EOF, true},
		{"no bulk connection", fakeServer(t, func(ln net.Listener, c net.Conn) {
			ln.Close() // before the first echo: the bulk connection is refused
			io.Copy(c, c)
		}), []string{"-bulk", "1"}, "bulk connection 1: ", syscall.ECONNREFUSED, false},
		{"no round trip in the time", backend(t), []string{"-duration", "1ns"}, "no round trip completed", nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			args := append(append([]string{"-target", c.target}, quick...), c.args...)
			err := runClient(args, &out)
			if err == nil || !strings.HasPrefix(err.Error(), c.want) || (c.is != nil && !errors.Is(err, c.is)) {
				t.Fatalf("client: %v, want %q… (%v)\n%s", err, c.want, c.is, out.String())
			}
			if !c.result {
				if out.Len() != 0 {
					t.Errorf("printed %q before any measurement", out.String())
				}
				return
			}
			if got := resultField(t, out.String(), "pings"); got != "0" {
				t.Errorf("pings=%s, want 0", got)
			}
		})
	}
}

// Bulk connections the backend cuts off fail the run and are reported.
func TestClientBulkErrors(t *testing.T) {
	target := fakeServer(t, func(_ net.Listener, c net.Conn) {
		b := make([]byte, 1)
		if _, err := c.Read(b); err != nil || b[0] == bulkBoth {
			return // a bulk connection: closed at once
		}
		serveEcho(c, b[0])
	})
	var out bytes.Buffer
	err := runClient([]string{"-target", target, "-bulk", "2", "-warmup", "100ms", "-duration", "100ms", "-pings", "0"}, &out)
	if err == nil {
		t.Fatalf("client: no error\n%s", out.String())
	}
	n := resultField(t, out.String(), "bulk_errors")
	if !strings.HasPrefix(err.Error(), n+" bulk connection(s) failed, the first: ") || n == "0" {
		t.Errorf("client: %v, with bulk_errors=%s", err, n)
	}
	if !strings.Contains(out.String(), "\nbulk errors: "+n+", the first: ") {
		t.Errorf("no bulk errors line:\n%s", out.String())
	}
	if pings, _ := strconv.Atoi(resultField(t, out.String(), "pings")); pings == 0 {
		t.Errorf("no round trip while the bulk connections failed:\n%s", out.String())
	}
}

// -pings paces the round trips: never more than the rate allows.
func TestClientPacesPings(t *testing.T) {
	var out bytes.Buffer
	err := runClient([]string{"-target", backend(t), "-bulk", "0", "-warmup", "0s", "-duration", "200ms", "-pings", "50"}, &out)
	if err != nil {
		t.Fatalf("client: %v\n%s", err, out.String())
	}
	pings, _ := strconv.Atoi(resultField(t, out.String(), "pings"))
	if pings < 1 || pings > 11 { // one at the start, then one every 20ms
		t.Errorf("pings=%d in 200ms at 50/s, want 1 to 11", pings)
	}
	if !strings.Contains(out.String(), "1 ping connection (50/s)") || resultField(t, out.String(), "pings_per_s") != "50" {
		t.Errorf("the rate is not reported:\n%s", out.String())
	}
}
