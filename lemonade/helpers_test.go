package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/observability/testnet"
	"go.uber.org/goleak"
)

// lemonadeBin is the CLI built once for the tests that run it as a user would.
var lemonadeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lemonade-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lemonadeBin = filepath.Join(dir, "lemonade")
	build := []string{"build", "-o", lemonadeBin}
	if os.Getenv("GOCOVERDIR") != "" {
		// Most of this module is tested by running the binary: under go test -cover
		// (make cover, .ci/cover) it counts too, this module's packages in the tests'
		// mode, its counters written into GOCOVERDIR.
		mode := testing.CoverMode()
		if mode == "" {
			mode = "atomic"
		}
		build = append(build, "-cover", "-covermode="+mode, "-coverpkg=./...")
	}
	if out, err := exec.Command("go", append(build, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building lemonade: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// collectCoverage copies the coverage files a process wrote into from (one it
// could write, when it ran as another user) to GOCOVERDIR.
func collectCoverage(t *testing.T, from string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(os.Getenv("GOCOVERDIR"), e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a process the test started; only it is ever signalled.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
	err            error
}

// start runs the lemonade binary with args and extra environment variables;
// the process is killed at cleanup if it is still running.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startCmd(t, exec.Command(lemonadeBin, args...), env)
}

func startCmd(t *testing.T, cmd *exec.Cmd, env []string) *proc {
	t.Helper()
	p := &proc{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", strings.Join(cmd.Args, " "), p.stderr.String())
		}
	})
	return p
}

// signal sends sig and waits for the exit code (failing after 20s).
func (p *proc) signal(t *testing.T, sig os.Signal) int {
	t.Helper()
	p.cmd.Process.Signal(sig)
	return p.wait(t)
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%v did not exit within 20s", p.cmd.Args)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// runLemonade runs the binary to completion and returns its exit code and output.
func runLemonade(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := start(t, env, args...)
	return p.wait(t), p.stdout.String(), p.stderr.String()
}

// freeAddr returns a loopback address for a process to listen on
// (testnet.Addr: below the ephemeral range, never the same one twice).
func freeAddr(t *testing.T) string { t.Helper(); return testnet.Addr(t) }

// waitListening waits until something accepts connections on addr.
func waitListening(t *testing.T, p *proc, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if p != nil && !p.running() {
			t.Fatalf("%v exited before listening on %s:\n%s", p.cmd.Args, addr, p.stderr.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listening on %s after 20s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

// httpGet makes one request on a new connection.
func httpGet(url string) (int, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// getHealth asks addr for /health on a new connection: nil for a 200.
func getHealth(addr string) error {
	code, body, err := httpGet("http://" + addr + "/health")
	if err == nil && code != 200 {
		err = fmt.Errorf("GET /health: %d %q", code, body)
	}
	return err
}

func mustGet(t *testing.T, url string) string {
	t.Helper()
	code, body, err := httpGet(url)
	if err != nil || code != 200 {
		t.Fatalf("GET %s: %d %q %v", url, code, body, err)
	}
	return body
}

// worker starts a worker of framework fw on addr and waits for it.
func worker(t *testing.T, fw, addr, name string, delayMS int) *proc {
	t.Helper()
	p := start(t, nil, "worker", "-f", fw, "-a", addr, "-n", name, "-d", fmt.Sprint(delayMS), "--log-level", "warn")
	waitListening(t, p, addr)
	return p
}

// tcpServer runs handle for each connection to a loopback listener until the
// test ends, and returns its address and a count of accepted connections.
func tcpServer(t *testing.T, handle func(net.Conn)) (addr string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); handle(c) }()
		}
	}()
	return ln.Addr().String(), accepted
}
