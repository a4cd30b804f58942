package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer"
)

// greeter is a backend that greets each connection with its name, then
// reads until the client is done.
func greeter(t *testing.T, name string) string {
	t.Helper()
	addr, _ := tcpServer(t, func(c net.Conn) {
		io.WriteString(c, name+"\n")
		io.Copy(io.Discard, c)
	})
	return addr
}

// ctlConfig writes a balancer config: listen, admin and the backends, named
// b0, b1, … with ids 0, 1, …; extra is appended (an admin token).
func ctlConfig(t *testing.T, path, listen, adminAddr, extra string, backends ...string) {
	t.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, "proxy:\n  listen_address: %q\nstrategy: round_robin\nhealth:\n  interval: 60000\nadmin:\n  listen_address: %q\n%s", listen, adminAddr, extra)
	sb.WriteString("backends:\n")
	for i, b := range backends {
		fmt.Fprintf(&sb, "  - id: %d\n    name: b%d\n    address: %q\n", i, i, b)
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// ctlLB runs `lemonade lb` with an admin listener; it returns the balancer's
// and the admin API's addresses.
func ctlLB(t *testing.T, extra string, backends ...string) (lbAddr, adminURL string) {
	t.Helper()
	lbAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	ctlConfig(t, cfg, lbAddr, adminAddr, extra, backends...)
	lb := start(t, nil, "lb", "-c", cfg, "--log-level", "warn")
	waitListening(t, lb, lbAddr)
	waitListening(t, lb, adminAddr)
	return lbAddr, "http://" + adminAddr
}

// through makes a connection through the balancer and returns the name of
// the backend that greeted it.
func through(t *testing.T, lbAddr string) string {
	t.Helper()
	c, err := net.Dial("tcp", lbAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	name, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no greeting through the balancer: %v", err)
	}
	return strings.TrimSpace(name)
}

// ctl runs `lemonade ctl --admin URL args…` and fails unless it exits with code.
func ctl(t *testing.T, env []string, code int, adminURL string, args ...string) (stdout, stderr string) {
	t.Helper()
	got, stdout, stderr := runLemonade(t, env, append([]string{"ctl", "--admin", adminURL}, args...)...)
	if got != code {
		t.Fatalf("lemonade ctl %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, stdout, stderr)
	}
	return stdout, stderr
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func ctlStatus(t *testing.T, adminURL string) loadbalancer.Snapshot {
	t.Helper()
	out, _ := ctl(t, nil, 0, adminURL, "--json", "status")
	var s loadbalancer.Snapshot
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("ctl --json status: %v\n%s", err, out)
	}
	return s
}

func TestCtlStatusDrainWeightAndApply(t *testing.T) {
	b0, b1, b2 := greeter(t, "b0"), greeter(t, "b1"), greeter(t, "b2")
	lbAddr, adminURL := ctlLB(t, "", b0, b1)
	for range 4 {
		through(t, lbAddr)
	}

	out, _ := ctl(t, nil, 0, adminURL, "status")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "listening on "+lbAddr+", strategy round_robin") || len(lines) != 5 {
		t.Fatalf("status:\n%s", out)
	}
	header := lines[2]
	for _, col := range []string{"ID", "NAME", "ADDRESS", "STATE", "WEIGHT", "ACTIVE", "TOTAL", "TTFB", "ERRORS", "OVERRIDE"} {
		if !strings.Contains(header, col) {
			t.Errorf("header %q lacks %s", header, col)
		}
	}
	// Aligned: every column starts where its header does.
	for _, row := range lines[3:] {
		f := strings.Fields(row)
		if len(f) != 10 || f[3] != "up" || f[4] != "1" || atoi(t, f[6]) < 2 || f[8] != "0.0%" || f[9] != "-" {
			t.Fatalf("row %q", row)
		}
		if strings.Index(row, f[2]) != strings.Index(header, "ADDRESS") || strings.Index(row, f[7]) != strings.Index(header, "TTFB") {
			t.Fatalf("row %q is not aligned with %q", row, header)
		}
	}

	before := ctlStatus(t, adminURL)
	out, _ = ctl(t, nil, 0, adminURL, "drain", "0")
	if want := fmt.Sprintf("backend 0 (b0 at %s) draining: no new connections; open ones (0 now) finish\n", b0); out != want {
		t.Fatalf("drain printed %q, want %q", out, want)
	}
	for range 3 {
		if got := through(t, lbAddr); got != "b1" {
			t.Fatalf("a connection reached %s after the drain of b0", got)
		}
	}
	out, _ = ctl(t, nil, 0, adminURL, "weight", "1", "3")
	if !strings.Contains(out, "backend 1 (b1 at "+b1+") weight 3") {
		t.Fatalf("weight printed %q", out)
	}
	s := ctlStatus(t, adminURL)
	if b := s.Backends[0]; !b.Draining || b.Override != "drain" || b.Total != before.Backends[0].Total {
		t.Fatalf("b0 after drain %+v", b)
	}
	if b := s.Backends[1]; b.Weight != 3 || b.Override != "weight" || b.Total != before.Backends[1].Total+3 {
		t.Fatalf("b1 after weight %+v", b)
	}
	out, _ = ctl(t, nil, 0, adminURL, "status")
	if !strings.Contains(out, "draining") || !strings.Contains(out, "drain\n") || !strings.Contains(out, "weight\n") {
		t.Fatalf("status does not show the overrides:\n%s", out)
	}

	// apply: a dry run first changes nothing.
	next := filepath.Join(t.TempDir(), "next.yaml")
	ctlConfig(t, next, s.ListenAddress, strings.TrimPrefix(adminURL, "http://"), "", b0, b1, b2)
	out, _ = ctl(t, nil, 0, adminURL, "apply", next, "--dry-run")
	if !strings.HasPrefix(out, "dry run, nothing changed; applying "+next+" would make:\n") || !strings.Contains(out, "  backend 2 added at "+b2+"\n") {
		t.Fatalf("apply --dry-run printed:\n%s", out)
	}
	if s := ctlStatus(t, adminURL); len(s.Backends) != 2 {
		t.Fatalf("the dry run added a backend: %+v", s.Backends)
	}
	out, _ = ctl(t, nil, 0, adminURL, "apply", next)
	if !strings.HasPrefix(out, "applied "+next+":\n  backend 2 added at "+b2+"\n") {
		t.Fatalf("apply printed:\n%s", out)
	}
	s = ctlStatus(t, adminURL)
	if len(s.Backends) != 3 || s.LastReloadSource != "api" || s.Backends[0].Override != "drain" {
		t.Fatalf("after apply: %+v", s)
	}

	out, _ = ctl(t, nil, 0, adminURL, "enable", "0")
	if !strings.Contains(out, "enabled: takes new connections, weight 1") {
		t.Fatalf("enable printed %q", out)
	}
	if out, _ := ctl(t, nil, 0, adminURL, "--json", "disable", "2"); !strings.Contains(out, `"override": "disable"`) {
		t.Fatalf("--json disable printed %s", out)
	}
}

func TestCtlErrors(t *testing.T) {
	b0 := greeter(t, "b0")
	_, adminURL := ctlLB(t, "", b0)

	_, stderr := ctl(t, nil, 1, adminURL, "drain", "7")
	if !strings.Contains(stderr, "the admin API answered 404 Not Found: unknown backend: no backend has id 7 (ids: 0)") {
		t.Fatalf("unknown id: %s", stderr)
	}
	_, stderr = ctl(t, nil, 1, adminURL, "weight", "0", "300")
	if !strings.Contains(stderr, "400 Bad Request: invalid weight 300: must be 1..255") {
		t.Fatalf("weight out of range: %s", stderr)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("strategy: fastest\nbackends:\n  - {address: nowhere, weight: 0}\n"), 0o600)
	_, stderr = ctl(t, nil, 1, adminURL, "apply", bad, "--dry-run")
	for _, want := range []string{"400 Bad Request", "3 problems", "body: strategy:", "body: backends[0].address:", "body: backends[0].weight:"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("invalid config: stderr lacks %q:\n%s", want, stderr)
		}
	}

	// Bad usage: nothing is sent.
	for _, args := range [][]string{
		{"weight", "0", "heavy"},
		{"drain"},
		{"apply", filepath.Join(t.TempDir(), "missing.yaml")},
		{"apply", "ctl.go"},
		{"restart"},
	} {
		ctl(t, nil, 2, adminURL, args...)
	}
	_, stderr = ctl(t, nil, 2, "127.0.0.1:50500", "status")
	if !strings.Contains(stderr, `--admin "127.0.0.1:50500" (or LEMONADE_ADMIN_URL): want the admin API's URL`) {
		t.Fatalf("bad URL: %s", stderr)
	}

	// Nothing listening: one clear line, exit 1.
	down := "http://" + freeAddr(t)
	_, stderr = ctl(t, nil, 1, down, "status")
	if want := "lemonade: error: cannot reach the admin API at " + down + ": connection refused\n"; stderr != want {
		t.Fatalf("refused: %q, want %q", stderr, want)
	}
	// The environment names the API too.
	if code, _, stderr := runLemonade(t, []string{"LEMONADE_ADMIN_URL=" + down}, "ctl", "status"); code != 1 || !strings.Contains(stderr, down) {
		t.Fatalf("LEMONADE_ADMIN_URL: exit %d: %s", code, stderr)
	}
}

func TestCtlToken(t *testing.T) {
	b0 := greeter(t, "b0")
	_, adminURL := ctlLB(t, "  token: s3cret-token\n", b0)
	_, stderr := ctl(t, nil, 1, adminURL, "status")
	if !strings.Contains(stderr, "401 Unauthorized: admin token required") || !strings.Contains(stderr, "LEMONADE_ADMIN_TOKEN") {
		t.Fatalf("without the token: %s", stderr)
	}
	ctl(t, nil, 1, adminURL, "--token", "wrong", "status")
	ctl(t, nil, 0, adminURL, "--token", "s3cret-token", "status")
	ctl(t, []string{"LEMONADE_ADMIN_TOKEN=s3cret-token"}, 0, adminURL, "drain", "0")
}

// An admin API open to the network without a token never starts.
func TestPublicAdminWithoutTokenIsRefused(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	ctlConfig(t, cfg, freeAddr(t), "0.0.0.0:50500", "", greeter(t, "b0"))
	code, _, stderr := runLemonade(t, nil, "lb", "-c", cfg)
	if code != 2 || !strings.Contains(stderr, cfg+": admin.listen_address: \"0.0.0.0:50500\" is not a loopback address and admin.token is not set") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	code, _, stderr = runLemonade(t, []string{"LEMONADE_LB_ADMIN_TOKEN=s3cret-token"}, "lb", "--check", "-c", cfg)
	if code != 0 {
		t.Fatalf("with LEMONADE_LB_ADMIN_TOKEN: exit %d: %s", code, stderr)
	}
}
