package main

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The soak (`make soak`, SOAK=60s by default there, SOAK=10m for longer):
// load through the balancer while it is reloaded, its workers restarted and
// its backends drained, over and over. At the end no request has failed
// (two of three workers are always up), and the balancer's RSS, goroutines
// and descriptors are back where they were after the warm-up, within
// soakTolerance. Without SOAK it does not run: `make test` has the short
// versions of each fault.
func TestSoak(t *testing.T) {
	d := os.Getenv("SOAK")
	if d == "" {
		t.Skip("SOAK is not set: run `make soak` (SOAK=60s) for the soak")
	}
	length, err := time.ParseDuration(d)
	if err != nil || length < 10*time.Second {
		t.Fatalf("SOAK=%q: want a duration of at least 10s", d)
	}
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	frameworks := []string{"fasthttp", "nethttp", "gin"}
	workers := make([]*proc, 3)
	for i := range workers {
		workers[i] = worker(t, frameworks[i], addrs[i], fmt.Sprint("w", i), 0)
	}
	lbAddr, adminAddr := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "lb.yaml")
	writeConfig := func(strategy string, weights []int, backends []int) {
		var sb strings.Builder
		fmt.Fprintf(&sb, "runtime: {drain_timeout_millis: 1000, config_watch_interval_millis: 100}\n")
		fmt.Fprintf(&sb, "proxy: {listen_address: %q, idle_timeout: 30s}\nstrategy: %s\n", lbAddr, strategy)
		fmt.Fprintf(&sb, "health: {interval: 200, timeout: 500, rise: 1, fall: 1}\nadmin: {listen_address: %q}\n", adminAddr)
		fmt.Fprintf(&sb, "access_log: {path: %q}\nbackends:\n", filepath.Join(dir, "access.log"))
		for _, i := range backends {
			fmt.Fprintf(&sb, "  - {id: %d, name: w%d, address: %q, weight: %d}\n", i, i, addrs[i], weights[i])
		}
		if err := os.WriteFile(cfg, []byte(sb.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("round_robin", []int{1, 1, 1}, []int{0, 1, 2})
	lb := start(t, nil, "lb", "-c", cfg)
	waitListening(t, lb, lbAddr)
	waitListening(t, lb, adminAddr)

	// The load: clients that open a connection per request, and clients
	// that keep theirs, each bounded by the soak's end.
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var errs []string
	end := time.Now().Add(length)
	var load sync.WaitGroup
	for i := range 6 {
		keepAlive := i%2 == 1
		load.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: !keepAlive}}
			defer c.CloseIdleConnections()
			for time.Now().Before(end) {
				resp, err := c.Get("http://" + lbAddr + "/work")
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					errs = append(errs, fmt.Sprintf("keep-alive %v: %v", keepAlive, err))
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		})
	}

	admin := func(method, path string) {
		req, _ := http.NewRequest(method, "http://"+adminAddr+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", method, path, err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s %s: %d", method, path, resp.StatusCode)
		}
	}
	// waitHealth waits until the balancer sees backend id up or down (10s
	// at most).
	waitHealth := func(id int, up bool) {
		deadline := time.Now().Add(10 * time.Second)
		series := fmt.Sprintf(`lemonade_backend_up{address=%q,backend="w%d",id="%d"} 1`, addrs[id], id, id)
		for strings.Contains(mustGet(t, "http://"+adminAddr+"/metrics"), series) != up {
			if time.Now().After(deadline) {
				t.Fatalf("backend %d not seen up=%v within 10s", id, up)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// waitIdle waits until backend id has no open connection (10s at most).
	waitIdle := func(id int) {
		deadline := time.Now().Add(10 * time.Second)
		series := fmt.Sprintf(`lemonade_backend_active_connections{address=%q,backend="w%d",id="%d"} 0`, addrs[id], id, id)
		for !strings.Contains(mustGet(t, "http://"+adminAddr+"/metrics"), series) {
			if time.Now().After(deadline) {
				t.Fatalf("backend %d still has connections 10s after it was disabled", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// The faults, in turn, until the soak's end. Each leaves two workers up.
	warm := time.Now().Add(length / 10)
	var base usage
	steps := 0
	for time.Now().Before(end) {
		if base.rss == 0 && time.Now().After(warm) {
			base = usageOf(t, lb, adminAddr)
		}
		victim := steps % 3
		switch steps % 4 {
		case 0: // a reload: another strategy, other weights
			strategies := []string{"least_connections", "weighted_round_robin", "round_robin", "adaptive"}
			writeConfig(strategies[(steps/4)%len(strategies)], []int{1 + steps%3, 2, 1}, []int{0, 1, 2})
			lb.cmd.Process.Signal(syscall.SIGHUP)
		case 1: // a worker restarted as an operator does: taken out first (disable: the
			// kept-alive connections are closed after the drain timeout, between requests)
			admin("POST", fmt.Sprintf("/api/v1/backends/%d/disable", victim))
			waitIdle(victim)
			workers[victim].signal(t, syscall.SIGTERM)
			waitHealth(victim, false)
			workers[victim] = worker(t, frameworks[victim], addrs[victim], fmt.Sprint("w", victim), 0)
			waitHealth(victim, true)
			admin("POST", fmt.Sprintf("/api/v1/backends/%d/enable", victim))
		case 2: // a drain through the API, then enable
			admin("POST", fmt.Sprintf("/api/v1/backends/%d/drain", victim))
			time.Sleep(300 * time.Millisecond) // a window of load on the others, not a synchronisation
			admin("POST", fmt.Sprintf("/api/v1/backends/%d/enable", victim))
		case 3: // a backend removed by a reload, then added back
			keep := []int{}
			for i := range 3 {
				if i != victim {
					keep = append(keep, i)
				}
			}
			writeConfig("round_robin", []int{1, 1, 1}, keep)
			lb.cmd.Process.Signal(syscall.SIGHUP)
			time.Sleep(300 * time.Millisecond) // as above: load while it drains
			writeConfig("round_robin", []int{1, 1, 1}, []int{0, 1, 2})
			lb.cmd.Process.Signal(syscall.SIGHUP)
			waitHealth(victim, true)
		}
		steps++
		time.Sleep(200 * time.Millisecond) // pace the faults; the load runs meanwhile
	}
	load.Wait()
	if base.rss == 0 {
		t.Fatal("the soak ended before its warm-up did")
	}
	// The load is over: connections close; then the figures must be back.
	var last usage
	deadline := time.Now().Add(15 * time.Second)
	for {
		last = usageOf(t, lb, adminAddr)
		if last.within(base) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("soak %v: %d requests ok, %d failed, %d faults; after warm-up %s; at the end %s", length, ok.Load(), failed.Load(), steps, base, last)
	if n := failed.Load(); n != 0 {
		t.Errorf("%d requests failed, with two workers up at all times: %v", n, errs[:min(5, len(errs))])

	}
	if !last.within(base) {
		t.Errorf("not flat: after warm-up %s, at the end %s (tolerance: %s)", base, last, soakTolerance)
	}
	if code := lb.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("balancer exit %d", code)
	}
}

// soakTolerance is how far the end may be from the warm-up: a few
// goroutines and descriptors (the admin client's, a health check in
// flight), and the heap's slack.
const soakTolerance = "goroutines +10, descriptors +10, RSS +25% or +8 MiB"

type usage struct {
	rss               int64 // bytes
	goroutines, files int
}

func (u usage) String() string {
	return fmt.Sprintf("RSS %.1f MiB, %d goroutines, %d descriptors", float64(u.rss)/(1<<20), u.goroutines, u.files)
}

func (u usage) within(base usage) bool {
	rssSlack := max(base.rss/4, 8<<20)
	return u.goroutines <= base.goroutines+10 && u.files <= base.files+10 && u.rss <= base.rss+rssSlack
}

// usageOf reads the balancer's RSS and descriptors from /proc and its
// goroutines from its metrics.
func usageOf(t *testing.T, p *proc, adminAddr string) usage {
	t.Helper()
	pid := p.cmd.Process.Pid
	var u usage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			u.rss = kb << 10
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	u.files = len(fds)
	for line := range strings.Lines(mustGet(t, "http://"+adminAddr+"/metrics")) {
		if rest, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			u.goroutines = int(math.Round(f))
		}
	}
	return u
}
