package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/lemonade-lb/lemonade/loadbalancer"
)

// The live dashboard (GET / on the admin listener) in a real browser:
// Debian's Chromium, headless, driven over the DevTools protocol. .ci/deps
// installs it; without it these tests fail, they never skip.

// screenshotPath is where LEMONADE_UPDATE_SCREENSHOT=1 writes the README's
// screenshot; otherwise the screenshot is taken and checked, not written.
const screenshotPath = "../docs/img/dashboard.png"

// chromiumPath is the browser: $LEMONADE_CHROMIUM, else Debian's.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LEMONADE_CHROMIUM"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "chromium"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("the dashboard tests need Chromium: none at /usr/bin/chromium nor on PATH. Install it with `bash .ci/deps` (apt-get install chromium), or point LEMONADE_CHROMIUM at one")
	return ""
}

// browserTab starts a headless Chromium for the test and returns a tab in
// it; the browser is stopped at cleanup. Actions on the tab are bounded by
// ctx (run them with timeouts derived from it).
func browserTab(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.Flag("no-sandbox", true), // tests run as root, as CI does
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	tab, tcancel := chromedp.NewContext(actx)
	t.Cleanup(func() { tcancel(); acancel() })
	// The first action starts the browser, which lives as long as tab: no
	// timeout on it, only ctx's.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath(t), err)
	}
	// An uncaught exception in the page fails the test.
	exceptions := chromedp.Events(tab, runtime.ExceptionThrown)
	var mu sync.Mutex
	var thrown []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			msg := ev.ExceptionDetails.Text
			if ex := ev.ExceptionDetails.Exception; ex != nil && ex.Description != "" {
				msg += ": " + ex.Description
			}
			mu.Lock()
			thrown = append(thrown, msg)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		tcancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		if len(thrown) > 0 {
			t.Errorf("the page threw: %s", strings.Join(thrown, "; "))
		}
	})
	return tab
}

// do runs browser actions, failing the test with what after timeout.
func do(t *testing.T, tab context.Context, timeout time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// waitFor waits until the page's JavaScript condition holds (checked on
// each animation frame), or fails with what after timeout.
func waitFor(t *testing.T, tab context.Context, timeout time.Duration, what, cond string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, timeout+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingTimeout(timeout))); err != nil {
		t.Fatalf("waiting %v for %s (%s): %v", timeout, what, cond, err)
	}
}

// adminStatus reads GET /api/v1/status with the token.
func adminStatus(t *testing.T, adminURL, token string) loadbalancer.Snapshot {
	t.Helper()
	req, err := http.NewRequest("GET", adminURL+"/api/v1/status", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s loadbalancer.Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/status: %d %v", resp.StatusCode, err)
	}
	return s
}

// dashboardLB writes a config for these workers and runs `lemonade lb` with
// an admin listener; it returns the balancer's address, the admin URL and the
// process.
func dashboardLB(t *testing.T, strategy, token string, healthMS int, names, addrs []string) (lbAddr, adminURL string, lb *proc) {
	t.Helper()
	lbAddr, adminAddr := freeAddr(t), freeAddr(t)
	var sb strings.Builder
	fmt.Fprintf(&sb, "proxy:\n  listen_address: %q\nstrategy: %s\nhealth:\n  interval: %d\n  timeout: %d\n  rise: 1\n  fall: 1\nadmin:\n  listen_address: %q\n  token: %q\nbackends:\n",
		lbAddr, strategy, healthMS, healthMS, adminAddr, token)
	for i, addr := range addrs {
		fmt.Fprintf(&sb, "  - id: %d\n    name: %s\n    address: %q\n", i, names[i], addr)
	}
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(cfg, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	lb = start(t, nil, "lb", "-c", cfg, "--log-level", "warn")
	waitListening(t, lb, lbAddr)
	waitListening(t, lb, adminAddr)
	return lbAddr, "http://" + adminAddr, lb
}

// traffic requests /work through the balancer about every interval until
// the test ends, so the charts have something to show; with wave, the pace
// swings between a third and twice that, over a minute.
func traffic(t *testing.T, lbAddr string, interval time.Duration, wave bool) {
	t.Helper()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		began := time.Now()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				httpGet("http://" + lbAddr + "/work") // errors are fine: a worker is killed on purpose
				if wave {
					phase := 2 * math.Pi * time.Since(began).Seconds() / 60
					tick.Reset(time.Duration(float64(interval) / (1.15 + 0.85*math.Sin(phase))))
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// rowState is the selector of a backend's row in a state.
func rowState(id int, state string) chromedp.CSS {
	return chromedp.CSS(fmt.Sprintf(`#backends tr[data-id="%d"][data-state="%s"]`, id, state))
}

func TestDashboardShowsAndDrivesTheBalancer(t *testing.T) {
	update := os.Getenv("LEMONADE_UPDATE_SCREENSHOT") == "1"
	timeout := 2 * time.Minute
	if update {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	const token = "dashboard-s3cret"
	frameworks := []string{"nethttp", "gin", "fasthttp", "echo"}
	names := []string{"worker-nethttp", "worker-gin", "worker-fasthttp", "worker-echo"}
	delays := []int{2, 6, 1, 4}
	addrs := make([]string, len(names))
	procs := make([]*proc, len(names))
	for i := range names {
		addrs[i] = freeAddr(t)
		procs[i] = worker(t, frameworks[i], addrs[i], names[i], delays[i])
	}
	lbAddr, adminURL, _ := dashboardLB(t, "weighted_round_robin", token, 200, names, addrs)
	traffic(t, lbAddr, 20*time.Millisecond, update)
	tab := browserTab(t, ctx)

	// Without the token the page loads, and says what it needs.
	do(t, tab, 20*time.Second, "opening the dashboard", chromedp.Navigate(adminURL+"/"), chromedp.WaitVisible(chromedp.CSS("#conn-notice")))
	waitFor(t, tab, 10*time.Second, "the 401 to be explained", `document.getElementById('conn-notice').textContent.includes('needs a token')`)
	do(t, tab, 10*time.Second, "entering the token", chromedp.SendKeys(chromedp.CSS("#token"), token+"\n"))

	// Every backend is listed, up, with its name and address.
	do(t, tab, 15*time.Second, "every backend up", chromedp.WaitVisible(rowState(len(names)-1, "up")))
	waitFor(t, tab, 15*time.Second, "every backend up", fmt.Sprintf(`document.querySelectorAll('#backends tr[data-state="up"]').length === %d`, len(names)))
	rows := eval[[][]string](t, tab, `[...document.querySelectorAll('#backends tbody tr')].map(tr => [tr.dataset.id, tr.querySelector('strong').textContent, tr.querySelector('small').textContent])`)
	if len(rows) != len(names) {
		t.Fatalf("%d rows, want %d: %v", len(rows), len(names), rows)
	}
	for i, row := range rows {
		if want := []string{fmt.Sprint(i), names[i], addrs[i]}; strings.Join(row, " ") != strings.Join(want, " ") {
			t.Errorf("row %d: %v, want %v", i, row, want)
		}
	}
	if hidden := eval[bool](t, tab, `document.getElementById('conn-notice').hidden`); !hidden {
		t.Error("the 401 notice stays after the token was given")
	}
	// The page's style applied (the Content-Security-Policy let it in).
	if bg := eval[string](t, tab, `getComputedStyle(document.querySelector('tr[data-state="up"] .badge')).backgroundColor`); bg != "rgb(47, 138, 62)" {
		t.Errorf("an up badge's background is %q: the page's CSS did not apply", bg)
	}
	waitFor(t, tab, 10*time.Second, "the summary", fmt.Sprintf(`document.getElementById('listen').textContent === %q && document.getElementById('strategy').textContent === 'weighted_round_robin' && /ago\), start/.test(document.getElementById('reload').textContent)`, lbAddr))

	// A killed worker shows down; restarted, up.
	procs[1].cmd.Process.Kill()
	procs[1].wait(t)
	do(t, tab, 15*time.Second, "the killed worker shown down", chromedp.WaitVisible(rowState(1, "down")))
	procs[1] = worker(t, frameworks[1], addrs[1], names[1], delays[1])
	do(t, tab, 15*time.Second, "the restarted worker shown up", chromedp.WaitVisible(rowState(1, "up")))

	// The drain button: no new connection reaches the backend.
	do(t, tab, 15*time.Second, "draining backend 3 with its button",
		chromedp.Click(chromedp.CSS(`#backends tr[data-id="3"] button.drain`)),
		chromedp.WaitVisible(rowState(3, "draining")))
	waitFor(t, tab, 5*time.Second, "the drain to be confirmed", `document.getElementById('action-notice').textContent.includes('worker-echo draining')`)
	before := adminStatus(t, adminURL, token).Backends[3]
	if !before.Draining || before.Override != loadbalancer.OverrideDrain {
		t.Fatalf("after the drain button, backend 3 is %+v", before)
	}
	for range 12 {
		if got := serviceOf(t, mustGet(t, "http://"+lbAddr+"/work")); got == names[3] {
			t.Fatalf("a new connection reached %s after its drain", got)
		}
	}
	if after := adminStatus(t, adminURL, token).Backends[3]; after.Total != before.Total {
		t.Fatalf("the drained backend took %d new connections", after.Total-before.Total)
	}

	// The weight field.
	// Focused, the field is not refreshed by the polls; Enter submits it.
	weight := chromedp.CSS(`#backends tr[data-id="0"] form.weight input`)
	do(t, tab, 15*time.Second, "setting backend 0's weight",
		chromedp.Focus(weight),
		chromedp.SetValue(weight, "3"),
		chromedp.SendKeys(weight, "\n"),
		chromedp.WaitVisible(chromedp.CSS(`#backends tr[data-id="0"][data-override="weight"]`)))
	if b := adminStatus(t, adminURL, token).Backends[0]; b.Weight != 3 || b.Override != loadbalancer.OverrideWeight {
		t.Fatalf("after setting the weight to 3, backend 0 is %+v", b)
	}

	// The charts have data; the screenshot.
	samples := 8
	if update {
		samples = 150 // half the charts' five minutes, in the committed picture
	}
	waitFor(t, tab, time.Duration(samples+10)*time.Second, "the charts to fill", fmt.Sprintf(`window.lemonade.samples >= %d`, samples))
	waitFor(t, tab, 5*time.Second, "a connections/s figure", `/\d/.test(document.querySelector('#backends tr[data-id="0"] .spark span').textContent)`)
	shot := func() []byte {
		ctx, cancel := context.WithTimeout(tab, 20*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		return png
	}()
	if !bytes.HasPrefix(shot, []byte("\x89PNG\r\n\x1a\n")) || len(shot) < 10_000 {
		t.Fatalf("the screenshot is not a PNG of a page (%d bytes)", len(shot))
	}
	if update {
		if err := os.WriteFile(screenshotPath, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", screenshotPath, len(shot))
	}

	// Enable undoes the drain and the weight.
	do(t, tab, 15*time.Second, "enabling backend 3",
		chromedp.Click(chromedp.CSS(`#backends tr[data-id="3"] button.enable`)),
		chromedp.WaitVisible(rowState(3, "up")))
	if b := adminStatus(t, adminURL, token).Backends[3]; b.Draining || b.Override != "" {
		t.Fatalf("after enable, backend 3 is %+v", b)
	}
}

// With 128 backends the page stays fast: one row per backend, made once and
// then only updated in place, and a typical poll drawn before the next is due.
func TestDashboardStaysFastWith128Backends(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 128
	names, addrs := make([]string, n), make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("b%03d", i)
		addrs[i], _ = tcpServer(t, func(net.Conn) {}) // accepts and closes
	}
	lbAddr, adminURL, lb := dashboardLB(t, "round_robin", "", 1000, names, addrs)
	traffic(t, lbAddr, 10*time.Millisecond, false)
	tab := browserTab(t, ctx)
	do(t, tab, 20*time.Second, "opening the dashboard", chromedp.Navigate(adminURL+"/"),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#backends tr[data-id="%d"]`, n-1))))
	if got := eval[int](t, tab, `document.querySelectorAll('#backends tbody tr').length`); got != n {
		t.Fatalf("%d rows, want %d", got, n)
	}
	// Watch the table for nodes added or removed over a few polls.
	eval[chromedp.Void](t, tab, `(() => {
		window.firstRow = document.querySelector('#backends tbody tr');
		window.nodesChanged = 0;
		window.timings = [];
		new MutationObserver((ms) => { for (const m of ms) window.nodesChanged += m.addedNodes.length + m.removedNodes.length; })
			.observe(document.querySelector('#backends tbody'), { childList: true, subtree: true });
		let draws = window.lemonade.draws;
		(function watch() {
			if (window.lemonade.draws !== draws) {
				draws = window.lemonade.draws;
				window.timings.push([window.lemonade.updateMs, window.lemonade.drawMs]);
			}
			requestAnimationFrame(watch);
		})();
	})()`)
	base := eval[int](t, tab, `window.lemonade.samples`)
	waitFor(t, tab, 20*time.Second, "five more polls", fmt.Sprintf(`window.lemonade.samples >= %d && window.timings.length >= 5`, base+5))
	if same := eval[bool](t, tab, `window.firstRow === document.querySelector('#backends tbody tr') && window.firstRow.isConnected`); !same {
		t.Error("the rows were made anew")
	}
	if changed := eval[int](t, tab, `window.nodesChanged`); changed != 0 {
		t.Errorf("%d nodes added or removed in the table over five polls: want it updated in place", changed)
	}
	// Not a speed target (these machines are noisy, and the first poll warms
	// the JIT up): only that the typical poll is drawn before the next is due.
	timings := eval[[][2]float64](t, tab, `window.timings`)
	costs := make([]float64, len(timings))
	for i, tm := range timings {
		costs[i] = tm[0] + tm[1]
	}
	slices.Sort(costs)
	t.Logf("update + draw per poll with %d backends (ms): %v", n, timings)
	if median := costs[len(costs)/2]; median >= 1000 {
		t.Errorf("the median poll took %.0f ms to update and draw with %d backends: want it done before the next poll, a second later", median, n)
	}

	// The balancer gone, the page says so and keeps trying.
	lb.signal(t, syscall.SIGTERM)
	waitFor(t, tab, 15*time.Second, "the page to tell the balancer is gone", `document.getElementById('conn-notice').textContent.startsWith('Cannot reach the admin server') && document.body.classList.contains('stale')`)
}
