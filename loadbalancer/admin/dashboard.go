package admin

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// The live dashboard: one HTML page with its CSS and JavaScript inline, no
// build step and nothing fetched from elsewhere. It polls GET /api/v1/status
// every second and calls the backend routes of the API (api.go).
//
//go:embed dashboard/index.html
var dashboardPage []byte

// started is when this process started (package initialisation), the
// dashboard's uptime.
var started = time.Now()

// dashboard serves the dashboard at GET / and passes every other request to
// next. The page holds no data, so it is served without the admin token;
// every request it makes for data or to change something carries the token
// the operator types into it, and goes through next's guard.
func dashboard(next http.Handler) http.Handler {
	page := bytes.Replace(dashboardPage, []byte("{{started}}"), []byte(started.UTC().Format(time.RFC3339Nano)), 1)
	csp := dashboardCSP(page)
	length := strconv.Itoa(len(page))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "method %s not allowed on / (allowed: GET, HEAD)", r.Method)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Length", length)
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		w.Write(page) // a HEAD's body is dropped by net/http
	})
}

// dashboardCSP allows the page's own inline style and script (by hash), and
// requests to this origin only: an injected script or a framing site gets
// nothing.
func dashboardCSP(page []byte) string {
	return fmt.Sprintf("default-src 'none'; style-src '%s'; script-src '%s'; connect-src 'self'; img-src data:; "+
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
		inlineHash(page, "style"), inlineHash(page, "script"))
}

// inlineHash is the CSP source of the one <tag>…</tag> of page: its
// content's sha256, base64.
func inlineHash(page []byte, tag string) string {
	_, rest, ok := bytes.Cut(page, []byte("<"+tag+">"))
	body, _, ok2 := bytes.Cut(rest, []byte("</"+tag+">"))
	if !ok || !ok2 {
		panic("admin: the dashboard page has no <" + tag + "> element")
	}
	sum := sha256.Sum256(body)
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}
