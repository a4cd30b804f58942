package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// service reads the "service" field of a /work or /health answer.
func serviceOf(t *testing.T, body string) string {
	t.Helper()
	var r struct{ Service string }
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("answer %q: %v", body, err)
	}
	return r.Service
}

// The seed README's commands, with our binary: the example config unchanged
// (workers on 50510 and 50520, balancer on 50501), then the environment form.
func TestSeedReadmeLoadBalancerCommands(t *testing.T) {
	worker(t, "gin", "127.0.0.1:50510", "worker-1", 1)
	worker(t, "echo", "127.0.0.1:50520", "worker-2", 1)

	t.Run("config file", func(t *testing.T) {
		lb := start(t, nil, "load-balancer", "--config", "../config/load-balancer.yaml")
		waitListening(t, lb, "127.0.0.1:50501")
		if got := serviceOf(t, mustGet(t, "http://127.0.0.1:50501/health")); got != "worker-1" && got != "worker-2" {
			t.Fatalf("/health through the balancer answered by %q", got)
		}
		var seq []string
		for range 10 {
			seq = append(seq, serviceOf(t, mustGet(t, "http://127.0.0.1:50501/work")))
		}
		for i := 1; i < len(seq); i++ {
			if seq[i] == seq[i-1] {
				t.Fatalf("round_robin did not rotate: %v", seq)
			}
		}
		if code := lb.signal(t, syscall.SIGTERM); code != 0 {
			t.Fatalf("exit code %d after SIGTERM", code)
		}
	})

	t.Run("environment", func(t *testing.T) {
		lbAddr := freeAddr(t)
		lb := start(t, []string{
			"LEMONADE_LB_LISTEN_ADDRESS=" + lbAddr,
			"LEMONADE_LB_STRATEGY=weighted_round_robin",
			"LEMONADE_LB_BACKEND_ADDRESSES=heavy=127.0.0.1:50510*3,127.0.0.1:50520",
		}, "lb")
		waitListening(t, lb, lbAddr)
		counts := map[string]int{}
		for range 8 {
			counts[serviceOf(t, mustGet(t, "http://"+lbAddr+"/work"))]++
		}
		if counts["worker-1"] != 6 || counts["worker-2"] != 2 {
			t.Fatalf("weights 3:1 over 8 requests gave %v", counts)
		}
		if code := lb.signal(t, syscall.SIGINT); code != 0 {
			t.Fatalf("exit code %d after SIGINT", code)
		}
	})
}

func writeLBConfig(t *testing.T, path, listen, strategy string, healthMS int, backends ...string) {
	t.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, "runtime:\n  drain_timeout_millis: 2000\n  config_watch_interval_millis: 200\nproxy:\n  listen_address: %q\n  max_connections: 30000\nstrategy: %s\nhealth:\n  interval: %d\n  timeout: 500\n  rise: 1\n  fall: 1\nbackends:\n", listen, strategy, healthMS)
	for i, b := range backends {
		fmt.Fprintf(&sb, "  - id: %d\n    name: b%d\n    address: %q\n", i, i, b)
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCheckFlagValidatesAndListsEveryProblem(t *testing.T) {
	code, out, _ := runLemonade(t, nil, "lb", "--check", "-c", "../config/load-balancer.yaml")
	if code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("--check on the example: exit %d: %s", code, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("strategy: fastest\nproxy:\n  listen_adress: 1\nbackends:\n  - id: 1\n    address: 127.0.0.1:1\n    weight: 300\n  - id: 1\n    address: nowhere\n"), 0o600)
	code, _, stderr := runLemonade(t, nil, "lb", "--check", "-c", bad)
	if code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	for _, want := range []string{bad, "fastest", "round_robin", "listen_adress", "backends[0].weight", "backends[1].id", "nowhere"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not name %q:\n%s", want, stderr)
		}
	}
	// A bad config never starts the balancer either.
	if code, _, _ := runLemonade(t, nil, "lb", "-c", bad); code != 2 {
		t.Fatalf("starting with a bad config: exit %d, want 2", code)
	}
}

func TestPortTakenIsAClearError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	writeLBConfig(t, cfg, ln.Addr().String(), "round_robin", 1000, freeAddr(t))
	code, _, stderr := runLemonade(t, nil, "lb", "-c", cfg)
	if code != 1 || !strings.Contains(stderr, ln.Addr().String()) {
		t.Fatalf("exit %d, stderr %s; want 1 and the address named", code, stderr)
	}
}

// Under load, killing a worker fails no new connection while the other is
// up, and a restarted worker is back within two health intervals.
func TestKilledWorkerCostsNoConnectionAndComesBack(t *testing.T) {
	w1, w2, lbAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	worker(t, "fasthttp", w1, "one", 0)
	victim := worker(t, "nethttp", w2, "two", 0)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	const healthMS = 300
	writeLBConfig(t, cfg, lbAddr, "round_robin", healthMS, w1, w2)
	lb := start(t, nil, "lb", "-c", cfg)
	waitListening(t, lb, lbAddr)

	// Requests in flight on the killed worker when it dies are lost (a layer-4
	// balancer cannot replay them); what must not fail is any request that
	// starts after the worker is gone.
	var ok, inFlightLost atomic.Int64
	var lastTwo atomic.Int64 // unix ns when the last request answered by "two" began
	var killedAt atomic.Int64
	var mu sync.Mutex
	var errs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(30 * time.Second)
			for n := 0; n < 20000 && time.Now().Before(deadline); n++ {
				select {
				case <-stop:
					return
				default:
				}
				began := time.Now().UnixNano()
				code, body, err := httpGet("http://" + lbAddr + "/work")
				if err != nil || code != 200 {
					if k := killedAt.Load(); k == 0 || began < k {
						inFlightLost.Add(1)
						continue
					}
					mu.Lock()
					errs = append(errs, fmt.Sprint(code, err))
					mu.Unlock()
					continue
				}
				ok.Add(1)
				if strings.Contains(body, `"two"`) {
					lastTwo.Store(began)
				}
			}
		}()
	}
	// Both workers are taking the load before the kill.
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10s (%d requests ok)", what, ok.Load())
			}
		}
	}
	waitUntil("traffic on both workers", func() bool { return lastTwo.Load() != 0 && ok.Load() >= 50 })
	victim.cmd.Process.Kill()
	victim.wait(t)
	killed := time.Now()
	killedAt.Store(killed.UnixNano())
	// Watch the load for a while after the kill: at least a second (over
	// three health intervals) and at least 200 more answered requests.
	okAtKill := ok.Load()
	waitUntil("requests answered after the kill", func() bool { return ok.Load() >= okAtKill+200 })
	if rest := time.Second - time.Since(killed); rest > 0 {
		time.Sleep(rest) // an observation window, not a synchronisation
	}
	if last := time.Unix(0, lastTwo.Load()); last.After(killed) {
		t.Fatalf("answers from the killed worker after it died (%v)", last.Sub(killed))
	}
	restarted := time.Now()
	worker(t, "nethttp", w2, "two", 0)
	for time.Unix(0, lastTwo.Load()).Before(restarted) {
		// Two health intervals, with generous slack for a loaded machine
		// (the time measured is logged below).
		if time.Since(restarted) > 2*healthMS*time.Millisecond+3*time.Second {
			t.Fatalf("restarted worker got no traffic within two health intervals (+3s slack for a loaded machine)")
		}
		time.Sleep(10 * time.Millisecond)
	}
	back := time.Since(restarted)
	close(stop)
	wg.Wait()
	if len(errs) != 0 {
		t.Fatalf("%d requests that began after the worker died failed: %v", len(errs), errs[:min(5, len(errs))])
	}
	t.Logf("%d requests ok; %d lost in flight at the kill; none failed after it; restarted worker back after %v", ok.Load(), inFlightLost.Load(), back)
}

// A protocol that relies on half-close: the server answers only after the
// client's EOF.
func TestHalfCloseProtocolPassesThrough(t *testing.T) {
	echoAddr, _ := tcpServer(t, func(c net.Conn) {
		var lines []string
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		for i := len(lines) - 1; i >= 0; i-- { // reversed: proves all arrived first
			fmt.Fprintln(c, lines[i])
		}
	})
	lbAddr := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	writeLBConfig(t, cfg, lbAddr, "least_connections", 1000, echoAddr)
	lb := start(t, nil, "lb", "-c", cfg)
	waitListening(t, lb, lbAddr)
	for range 5 {
		c, err := net.Dial("tcp", lbAddr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprint(c, "one\ntwo\nthree\n")
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "three\ntwo\none\n" {
			t.Fatalf("answer %q, %v", got, err)
		}
	}
}

func TestRedisBenchmarkThroughTheBalancer(t *testing.T) {
	for _, tool := range []string{"redis-server", "redis-benchmark", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: `make test` installs it (apt-get install redis-server redis-tools)", tool)
		}
	}
	var redis []string
	for range 2 {
		addr := freeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		p := startCmd(t, exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"), nil)
		waitListening(t, p, addr)
		t.Cleanup(func() { p.cmd.Process.Signal(syscall.SIGTERM); p.wait(t) })
		redis = append(redis, port)
	}
	lbAddr := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	writeLBConfig(t, cfg, lbAddr, "round_robin", 1000, "127.0.0.1:"+redis[0], "127.0.0.1:"+redis[1])
	lb := start(t, nil, "lb", "-c", cfg)
	waitListening(t, lb, lbAddr)
	_, lbPort, _ := net.SplitHostPort(lbAddr)
	out, err := exec.Command("redis-benchmark", "-h", "127.0.0.1", "-p", lbPort, "-t", "set,get", "-n", "20000", "-c", "20", "-r", "1000", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	text := string(out)
	if !strings.Contains(text, "SET:") || !strings.Contains(text, "GET:") || strings.Contains(strings.ToLower(text), "error") {
		t.Fatalf("redis-benchmark output:\n%s", text)
	}
	for _, port := range redis {
		keys, err := exec.Command("redis-cli", "-p", port, "dbsize").Output()
		if err != nil || strings.TrimSpace(string(keys)) == "0" {
			t.Fatalf("redis on %s has %q keys (%v): the balancer did not spread the clients", port, keys, err)
		}
	}
	t.Logf("through lemonade: %s", strings.Join(strings.Fields(text), " "))
}

func TestSIGHUPReloadsTheFile(t *testing.T) {
	w1, w2, lbAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	worker(t, "echo", w1, "one", 0)
	worker(t, "gin", w2, "two", 0)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	writeLBConfig(t, cfg, lbAddr, "round_robin", 1000, w1)
	lb := start(t, nil, "lb", "-c", cfg)
	waitListening(t, lb, lbAddr)
	if got := serviceOf(t, mustGet(t, "http://"+lbAddr+"/work")); got != "one" {
		t.Fatalf("answered by %s", got)
	}
	writeLBConfig(t, cfg, lbAddr, "round_robin", 1000, w2) // backend 0 moves to w2
	lb.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for serviceOf(t, mustGet(t, "http://"+lbAddr+"/work")) != "two" {
		if time.Now().After(deadline) {
			t.Fatal("reloaded backend not serving within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(lb.stderr.String(), "config applied") {
		t.Fatalf("no reload summary logged:\n%s", lb.stderr.String())
	}
}
