package admin

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// The browser test of the dashboard is lemonade/dashboard_e2e_test.go; these
// check how the page is served.

// tokenAdmin runs a balancer with admin.token set and its admin server, and
// returns the admin server's base URL.
func tokenAdmin(t *testing.T, token string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a backend that accepts and never answers
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cfg := config.Default()
	cfg.Proxy.ListenAddress = "127.0.0.1:0"
	cfg.Admin.ListenAddress = "127.0.0.1:0"
	cfg.Admin.Token = token
	cfg.Health.Interval = time.Hour
	cfg.Backends = []config.Backend{{ID: 0, Name: "a", Address: ln.Addr().String(), Weight: 1}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return startAPI(t, cfg).base
}

func request(t *testing.T, method, url, auth string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// The page holds no data and is served without the token; what it reads and
// changes still needs it.
func TestDashboardIsServedWithoutTheToken(t *testing.T) {
	base := tokenAdmin(t, "dash-token")
	resp, page := request(t, "GET", base+"/", "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(page, "<title>Lemonade</title>") {
		t.Fatalf("GET / without the token: %d %s\n%.200s", resp.StatusCode, resp.Header.Get("Content-Type"), page)
	}
	for _, path := range []string{"/api/v1/status", "/status", "/index.html"} {
		if resp, body := request(t, "GET", base+path, ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without the token: %d %s", path, resp.StatusCode, body)
		}
	}
	if resp, body := request(t, "GET", base+"/api/v1/status", "dash-token"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/v1/status with the token: %d %s", resp.StatusCode, body)
	}
	resp, body := request(t, "HEAD", base+"/", "")
	if resp.StatusCode != http.StatusOK || body != "" || resp.ContentLength != int64(len(page)) {
		t.Errorf("HEAD /: %d, length %d, body %q", resp.StatusCode, resp.ContentLength, body)
	}
	resp, body = request(t, "POST", base+"/", "")
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" || !strings.Contains(body, `"error"`) {
		t.Errorf("POST /: %d Allow=%q %s", resp.StatusCode, resp.Header.Get("Allow"), body)
	}
}

// The page is self-contained: its inline style and script are allowed by
// hash and nothing else is, it loads nothing from elsewhere, and it knows
// when the process started.
func TestDashboardPageIsSelfContained(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := Start(ctx, quiet, "127.0.0.1:0", sample())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); srv.Wait() }()
	resp, page := request(t, "GET", "http://"+srv.Addr().String()+"/", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %d", resp.StatusCode)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, tag := range []string{"style", "script"} {
		m := regexp.MustCompile(`(?s)<`+tag+`>(.*?)</`+tag+`>`).FindAllStringSubmatch(page, -1)
		if len(m) != 1 {
			t.Fatalf("%d <%s> elements, want one", len(m), tag)
		}
		sum := sha256.Sum256([]byte(m[0][1]))
		if want := tag + "-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %s", csp, want)
		}
	}
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	for _, outside := range []string{"http://", "https://", " src=", "@import", "url("} {
		if strings.Contains(page, outside) {
			t.Errorf("the page contains %q: it must load nothing from elsewhere", outside)
		}
	}
	m := regexp.MustCompile(`<meta name="lemonade-started" content="([^"]*)">`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no lemonade-started meta")
	}
	if at, err := time.Parse(time.RFC3339Nano, m[1]); err != nil || !at.Equal(started) {
		t.Errorf("lemonade-started %q (%v), want %v", m[1], err, started)
	}
	for _, h := range []string{"X-Content-Type-Options", "X-Frame-Options", "Cache-Control"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
}
