package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rssBytes reads a process's resident set size.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// The balancer holds 10,000 concurrent idle proxied connections; the RSS they
// cost is logged and bounded. Each proxied connection
// takes two descriptors in the balancer, so a hard open-file limit below
// 20,100 (this workplace's is 20,000 and cannot be raised from inside) caps
// the count just under it; the log says so.
func TestTenThousandIdleConnections(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	conns := min(10000, int(lim.Max-100)/2)
	if conns < 5000 {
		t.Fatalf("open-file hard limit %d: too low to hold even 5000 proxied connections", lim.Max)
	}
	if conns < 10000 {
		t.Logf("open-file hard limit %d per process: holding %d connections (2 descriptors each in the balancer)", lim.Max, conns)
	}

	// A plain copy: io.Copy(c, c) would splice through two pipes (four
	// descriptors) per connection and run this process out of them.
	backendAddr, accepted := tcpServer(t, func(c net.Conn) {
		io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
	})

	lbAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	writeLBConfig(t, cfg, lbAddr, "least_connections", 5000, backendAddr)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "admin:\n  listen_address: %q\n", adminAddr)
	f.Close()
	lb := start(t, nil, "lb", "-c", cfg)
	waitListening(t, lb, lbAddr)
	waitListening(t, lb, adminAddr)
	for deadline := time.Now().Add(10 * time.Second); accepted.Load() < 1; time.Sleep(5 * time.Millisecond) { // the probe above went through
		if time.Now().After(deadline) {
			t.Fatal("the balancer's probe connection never reached the backend")
		}
	}
	time.Sleep(200 * time.Millisecond)
	before := rssBytes(t, lb.cmd.Process.Pid)
	start := usageOf(t, lb, adminAddr)

	clients := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i := range conns {
		c, err := net.DialTimeout("tcp", lbAddr, 10*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		clients = append(clients, c)
		// Pace the opening so no accept backlog (4096 here) overflows into
		// SYN retransmits: this measures holding connections, not a burst.
		for wait := time.Now(); i%500 == 499 && accepted.Load() < int64(i)-500; {
			if time.Since(wait) > 30*time.Second {
				t.Fatalf("backend has %d connections of %d opened, after 30s", accepted.Load()-1, i+1)
			}
			time.Sleep(time.Millisecond)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for accepted.Load() < int64(conns)+1 {
		if time.Now().After(deadline) {
			out, _ := exec.Command("sh", "-c", fmt.Sprintf("ls -l /proc/%d/fd | awk '{print $NF}' | cut -d: -f1 | sort | uniq -c", lb.cmd.Process.Pid)).CombinedOutput()
			t.Fatalf("backend has %d of %d connections after 30s; balancer descriptors:\n%s", accepted.Load()-1, conns, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	after := rssBytes(t, lb.cmd.Process.Pid)
	perConn := (after - before) / int64(conns)

	// Every connection is still proxied: a sample answers through the balancer.
	for i := 0; i < conns; i += conns / 100 {
		c := clients[i]
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4)
		if _, err := io.WriteString(c, "ping"); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("connection %d answered %q, %v", i, buf, err)
		}
	}
	t.Logf("%d idle connections held; balancer RSS %d MiB → %d MiB: %.1f KiB per connection",
		conns, before>>20, after>>20, float64(perConn)/1024)
	// An idle connection holds no goroutine and no buffer, only its state in
	// the event loop (about 0.6 KiB measured).
	if perConn > 4<<10 {
		t.Fatalf("%.1f KiB of RSS per idle connection, want at most 4 KiB", float64(perConn)/1024)
	}

	// Closed, they leave nothing behind: descriptors and goroutines return to
	// where they were before the first one (+5 for an admin request or a
	// health check in flight).
	held := usageOf(t, lb, adminAddr)
	for _, c := range clients {
		c.Close()
	}
	clients = nil
	var end usage
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		end = usageOf(t, lb, adminAddr)
		if end.files <= start.files+5 && end.goroutines <= start.goroutines+5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after closing: %s; before the connections: %s", end, start)
		}
	}
	t.Logf("measured: before %s; holding %d connections %s; after closing them %s", start, conns, held, end)
}

func TestDemoRunsEverythingAndStopsOnCtrlC(t *testing.T) {
	lbAddr, adminAddr := freeAddr(t), freeAddr(t)
	// Five worker ports 10 apart from a free base.
	base := 0
	for try := 0; try < 50 && base == 0; try++ {
		_, p, _ := net.SplitHostPort(freeAddr(t))
		n, _ := strconv.Atoi(p)
		if n+40 > 65535 {
			continue
		}
		free := true
		for i := range 5 {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", n+10*i))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			base = n
		}
	}
	if base == 0 {
		t.Fatal("no free port range for the demo workers")
	}
	demo := start(t, nil, "demo", "--listen", lbAddr, "--admin", adminAddr, "--worker-port", fmt.Sprint(base), "--delay", "1")
	waitListening(t, demo, lbAddr)
	waitListening(t, demo, adminAddr)
	seen := map[string]bool{}
	for range 10 {
		seen[serviceOf(t, mustGet(t, "http://"+lbAddr+"/work"))] = true
	}
	for _, fw := range frameworkNames {
		if !seen["worker-"+fw] {
			t.Errorf("no answer from worker-%s in 10 round-robin requests: %v", fw, seen)
		}
	}
	status := mustGet(t, "http://"+adminAddr+"/status")
	if !strings.Contains(status, `"strategy": "round_robin"`) || strings.Count(status, `"address"`) != 5 {
		t.Fatalf("/status: %s", status)
	}
	out := demo.stdout.String()
	for _, want := range []string{lbAddr, adminAddr, "worker-fiber", "curl http://" + lbAddr + "/work"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo table lacks %q:\n%s", want, out)
		}
	}
	if code := demo.signal(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit code %d after Ctrl-C", code)
	}

	// A taken port is named.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, port, _ := net.SplitHostPort(taken.Addr().String())
	code, _, stderr := runLemonade(t, nil, "demo", "--listen", freeAddr(t), "--admin", "", "--worker-port", port)
	if code == 0 || !strings.Contains(stderr, taken.Addr().String()) {
		t.Fatalf("demo with worker port %s taken: exit %d, stderr %s", port, code, stderr)
	}
}
