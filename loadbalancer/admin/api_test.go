package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
	"github.com/lemonade-lb/lemonade/observability/testnet"
)

var quiet = slog.New(slog.DiscardHandler)

// echoBackend greets each connection with its name and a newline, then
// echoes what it reads, so a client knows which backend it reached and can
// tell that its connection still works.
type echoBackend struct {
	name, addr string
}

func newEchoBackend(t *testing.T, name string) *echoBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				if _, err := io.WriteString(c, name+"\n"); err != nil {
					return
				}
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return &echoBackend{name: name, addr: ln.Addr().String()}
}

// conn is a client connection through the balancer and the backend it reached.
type conn struct {
	net.Conn
	r       *bufio.Reader
	backend string
}

// dial connects through lb and reads the backend's greeting.
func dial(t *testing.T, lb *loadbalancer.Balancer) *conn {
	t.Helper()
	c, err := net.Dial("tcp", lb.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	name, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("no greeting through the balancer: %v", err)
	}
	return &conn{Conn: c, r: r, backend: strings.TrimSpace(name)}
}

// echo checks the connection still carries bytes both ways.
func (c *conn) echo(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatalf("write on the open connection: %v", err)
	}
	if line, err := c.r.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo on the open connection: %q, %v", line, err)
	}
}

// picks dials n connections and counts them by backend.
func picks(t *testing.T, lb *loadbalancer.Balancer, n int) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for range n {
		c := dial(t, lb)
		counts[c.backend]++
		c.Close()
	}
	return counts
}

// freeAddr is a loopback address nothing listens on (testnet.Addr).
func freeAddr(t *testing.T) string { t.Helper(); return testnet.Addr(t) }

func lbConfig(t *testing.T, strategy string, backends ...*echoBackend) *config.Config {
	t.Helper()
	c := config.Default()
	c.Proxy.ListenAddress = "127.0.0.1:0"
	c.Strategy = strategy
	c.Runtime.DrainTimeout = 5 * time.Second
	c.Health.Interval = time.Hour // the backends stay up: these tests are about overrides
	c.Admin.ListenAddress = "127.0.0.1:0"
	for i, b := range backends {
		c.Backends = append(c.Backends, config.Backend{ID: i, Name: b.name, Address: b.addr, Weight: 1})
	}
	retries := 0
	c.Proxy.Retries = &retries
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// adminAPI is a running balancer with its admin server.
type adminAPI struct {
	lb    *loadbalancer.Balancer
	base  string
	token string
}

func startAPI(t *testing.T, cfg *config.Config) *adminAPI {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lb, err := loadbalancer.Start(ctx, quiet, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv, err := Start(ctx, quiet, cfg.Admin.ListenAddress, lb)
	if err != nil {
		cancel()
		<-lb.Done()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		srv.Wait()
		<-lb.Done()
	})
	return &adminAPI{lb: lb, base: "http://" + srv.Addr().String(), token: cfg.Admin.Token}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// errorText is the "error" of a JSON error answer.
func (r reply) errorText(t *testing.T) string {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
		t.Fatalf("answer %d is not a JSON error: %s (%v)", r.status, r.body, err)
	}
	return e.Error
}

var apiClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

// call makes one request; contentType "" sends no body.
func (a *adminAPI) call(t *testing.T, method, path, contentType, body string) reply {
	t.Helper()
	var rd io.Reader
	if contentType != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	return send(t, req)
}

func send(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, body}
}

// change makes a request on a backend that must answer 200 with its state.
func (a *adminAPI) change(t *testing.T, method, path, contentType, body string) backend.Snapshot {
	t.Helper()
	var s backend.Snapshot
	a.ok(t, method, path, contentType, body, &s)
	return s
}

// ok makes a request that must answer 200 and decodes its JSON into v.
func (a *adminAPI) ok(t *testing.T, method, path, contentType, body string, v any) {
	t.Helper()
	r := a.call(t, method, path, contentType, body)
	if r.status != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, r.status, r.body)
	}
	if v != nil {
		if err := json.Unmarshal(r.body, v); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, r.body)
		}
	}
}

func (a *adminAPI) status(t *testing.T) loadbalancer.Snapshot {
	t.Helper()
	var s loadbalancer.Snapshot
	a.ok(t, "GET", "/api/v1/status", "", "", &s)
	return s
}

func (a *adminAPI) backend(t *testing.T, id int) backend.Snapshot {
	t.Helper()
	for _, b := range a.status(t).Backends {
		if b.ID == id {
			return b
		}
	}
	t.Fatalf("no backend %d in the status", id)
	return backend.Snapshot{}
}

func TestStatusIsTheSameDocumentAtBothPaths(t *testing.T) {
	a := startAPI(t, lbConfig(t, "round_robin", newEchoBackend(t, "a")))
	var old, v1 map[string]any
	a.ok(t, "GET", "/status", "", "", &old)
	a.ok(t, "GET", "/api/v1/status", "", "", &v1)
	for _, doc := range []map[string]any{old, v1} {
		if doc["strategy"] != "round_robin" || doc["last_reload_source"] != "start" || len(doc["backends"].([]any)) != 1 {
			t.Fatalf("status %v", doc)
		}
	}
}

func TestDrainStopsNewConnectionsAndLetsOpenOnesFinish(t *testing.T) {
	a := startAPI(t, lbConfig(t, "round_robin", newEchoBackend(t, "a"), newEchoBackend(t, "b")))
	open := dial(t, a.lb)
	if open.backend != "a" {
		t.Fatalf("first connection reached %s", open.backend)
	}
	var s backend.Snapshot
	s = a.change(t, "POST", "/api/v1/backends/0/drain", "", "")
	if !s.Draining || s.Override != "drain" || s.Active != 1 {
		t.Fatalf("drain answered %+v", s)
	}
	if got := picks(t, a.lb, 4); got["b"] != 4 {
		t.Fatalf("after the drain new connections went to %v", got)
	}
	open.echo(t)
	open.Close()
	if b := a.backend(t, 0); b.Override != "drain" || !b.Draining {
		t.Fatalf("status of the drained backend %+v", b)
	}

	// Draining again changes nothing; enable undoes it.
	a.ok(t, "POST", "/api/v1/backends/0/drain", "", "", nil)
	s = a.change(t, "POST", "/api/v1/backends/0/enable", "", "")
	if s.Draining || s.Override != "" {
		t.Fatalf("enable answered %+v", s)
	}
	if got := picks(t, a.lb, 4); got["a"] != 2 || got["b"] != 2 {
		t.Fatalf("after enable: %v", got)
	}
}

func TestDisableClosesOpenConnectionsAfterTheDrainTimeout(t *testing.T) {
	cfg := lbConfig(t, "round_robin", newEchoBackend(t, "a"), newEchoBackend(t, "b"))
	cfg.Runtime.DrainTimeout = 300 * time.Millisecond
	a := startAPI(t, cfg)
	open := dial(t, a.lb)
	if open.backend != "a" {
		t.Fatalf("first connection reached %s", open.backend)
	}
	disabled := time.Now()
	var s backend.Snapshot
	s = a.change(t, "POST", "/api/v1/backends/0/disable", "", "")
	if !s.Draining || s.Override != "disable" {
		t.Fatalf("disable answered %+v", s)
	}
	if got := picks(t, a.lb, 2); got["b"] != 2 {
		t.Fatalf("after disable new connections went to %v", got)
	}
	open.echo(t) // still open before the timeout
	if _, err := open.r.ReadString('\n'); err == nil {
		t.Fatal("the disabled backend's connection got a line instead of being closed")
	}
	if waited := time.Since(disabled); waited < cfg.Runtime.DrainTimeout {
		t.Fatalf("closed after %v, before the drain timeout %v", waited, cfg.Runtime.DrainTimeout)
	}
	// Disabled is not drained: a drain now would cancel the close, so it is a conflict.
	r := a.call(t, "POST", "/api/v1/backends/0/drain", "", "")
	if r.status != http.StatusConflict || !strings.Contains(r.errorText(t), "disabled") {
		t.Fatalf("drain of a disabled backend: %d %s", r.status, r.body)
	}
	s = a.change(t, "DELETE", "/api/v1/backends/0/override", "", "")
	if s.Draining || s.Override != "" {
		t.Fatalf("DELETE override answered %+v", s)
	}
}

func TestWeightChangesThePicks(t *testing.T) {
	a := startAPI(t, lbConfig(t, "weighted_round_robin", newEchoBackend(t, "a"), newEchoBackend(t, "b")))
	if got := picks(t, a.lb, 8); got["a"] != 4 || got["b"] != 4 {
		t.Fatalf("equal weights: %v", got)
	}
	var s backend.Snapshot
	s = a.change(t, "PUT", "/api/v1/backends/0/weight", "application/json", `{"weight": 3}`)
	if s.Weight != 3 || s.Override != "weight" || s.OverrideWeight != 3 {
		t.Fatalf("weight answered %+v", s)
	}
	if got := picks(t, a.lb, 8); got["a"] != 6 || got["b"] != 2 {
		t.Fatalf("weights 3:1 over 8 connections: %v", got)
	}
	// A drain keeps the weight; enable clears both.
	s = a.change(t, "POST", "/api/v1/backends/0/drain", "", "")
	if s.Override != "drain" || s.OverrideWeight != 3 || s.Weight != 3 {
		t.Fatalf("drain of a reweighted backend %+v", s)
	}
	s = a.change(t, "POST", "/api/v1/backends/0/enable", "", "")
	if s.Override != "" || s.Weight != 1 || s.Draining {
		t.Fatalf("enable answered %+v", s)
	}
	if got := picks(t, a.lb, 8); got["a"] != 4 || got["b"] != 4 {
		t.Fatalf("after enable: %v", got)
	}
}

// An operator's override is not undone by a reload that keeps the backend;
// a reload that removes the backend or gives its id a new address drops it.
func TestOverridesSurviveAFileReload(t *testing.T) {
	ba, bb, bc, bd := newEchoBackend(t, "a"), newEchoBackend(t, "b"), newEchoBackend(t, "c"), newEchoBackend(t, "d")
	cfg := lbConfig(t, "round_robin", ba, bb, bc)
	a := startAPI(t, cfg)
	a.ok(t, "POST", "/api/v1/backends/0/drain", "", "", nil)
	a.ok(t, "PUT", "/api/v1/backends/1/weight", "application/json", `{"weight": 7}`, nil)
	a.ok(t, "POST", "/api/v1/backends/2/disable", "", "", nil)

	edited := *cfg
	edited.Backends = []config.Backend{
		{ID: 0, Name: "a-renamed", Address: ba.addr, Weight: 2},
		{ID: 1, Name: "b", Address: bb.addr, Weight: 4},
		{ID: 2, Name: "c", Address: bc.addr, Weight: 1},
	}
	if err := a.lb.Apply(&edited); err != nil {
		t.Fatal(err)
	}
	s := a.status(t)
	if b := s.Backends[0]; b.Name != "a-renamed" || b.Override != "drain" || !b.Draining || b.Weight != 2 {
		t.Fatalf("drained backend after the reload: %+v", b)
	}
	if b := s.Backends[1]; b.Override != "weight" || b.Weight != 7 {
		t.Fatalf("reweighted backend after the reload: %+v", b)
	}
	if b := s.Backends[2]; b.Override != "disable" || !b.Draining {
		t.Fatalf("disabled backend after the reload: %+v", b)
	}
	if s.LastReloadSource != "file" {
		t.Fatalf("last reload source %q", s.LastReloadSource)
	}
	if got := picks(t, a.lb, 3); got["b"] != 3 {
		t.Fatalf("only b takes connections: %v", got)
	}

	// Backend 0 moves to d's address: a new backend, without the old one's drain.
	// Backend 2 is removed: its override goes with it.
	moved := edited
	moved.Backends = []config.Backend{
		{ID: 0, Name: "d", Address: bd.addr, Weight: 1},
		{ID: 1, Name: "b", Address: bb.addr, Weight: 4},
	}
	retries := 0
	moved.Proxy.Retries = &retries
	d, err := a.lb.ApplyFrom(loadbalancer.SourceFile, &moved)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.OverridesDropped) != 2 || d.OverridesDropped[0].ID != 0 || d.OverridesDropped[1].ID != 2 {
		t.Fatalf("overrides dropped %+v", d.OverridesDropped)
	}
	s = a.status(t)
	if b := s.Backends[0]; b.Address != bd.addr || b.Override != "" || b.Draining {
		t.Fatalf("the new backend at id 0 inherited an override: %+v", b)
	}
	if b := s.Backends[1]; b.Override != "weight" || b.Weight != 7 {
		t.Fatalf("backend 1 lost its weight override: %+v", b)
	}
	r := a.call(t, "POST", "/api/v1/backends/2/enable", "", "")
	if r.status != http.StatusNotFound || !strings.Contains(r.errorText(t), "no backend has id 2 (ids: 0, 1)") {
		t.Fatalf("enable of a removed backend: %d %s", r.status, r.body)
	}
	// Clearing the weight override returns to the config's weight.
	b := a.change(t, "DELETE", "/api/v1/backends/1/override", "", "")
	if b.Weight != 4 || b.Override != "" {
		t.Fatalf("after DELETE override: %+v", b)
	}
}

const addBackendYAML = `
proxy: {listen_address: "%s", retries: 0}
runtime: {drain_timeout_millis: 5000}
health: {interval: 1h}
strategy: least_connections
admin: {listen_address: "127.0.0.1:0"}
backends:
  - {id: 0, name: a, address: "%s"}
  - {id: 1, name: b, address: "%s", weight: 3}
`

func TestConfigDryRunChangesNothingAndApplyApplies(t *testing.T) {
	ba, bb := newEchoBackend(t, "a"), newEchoBackend(t, "b")
	a := startAPI(t, lbConfig(t, "round_robin", ba))
	before := a.status(t)
	listen := freeAddr(t)
	doc := fmt.Sprintf(addBackendYAML, listen, ba.addr, bb.addr)

	var res ConfigResult
	a.ok(t, "POST", "/api/v1/config?dry_run=true", "application/yaml", doc, &res)
	if !res.DryRun || len(res.Changes.Added) != 1 || res.Changes.Added[0].Address != bb.addr ||
		res.Changes.Strategy == nil || res.Changes.Strategy.To != "least_connections" || res.Changes.ListenAddress == nil {
		t.Fatalf("dry run answered %+v", res)
	}
	after := a.status(t)
	if len(after.Backends) != 1 || after.Strategy != "round_robin" || after.ReloadsOK != before.ReloadsOK || after.LastReloadSource != "start" {
		t.Fatalf("the dry run changed the balancer: %+v", after)
	}

	a.ok(t, "POST", "/api/v1/config", "application/yaml; charset=utf-8", doc, &res)
	if res.DryRun || len(res.Changes.Added) != 1 || !strings.Contains(strings.Join(res.Summary, "\n"), "backend 1 added at "+bb.addr) {
		t.Fatalf("apply answered %+v", res)
	}
	after = a.status(t)
	if len(after.Backends) != 2 || after.Strategy != "least_connections" || after.ListenAddress != listen || after.ReloadsOK != before.ReloadsOK+1 || after.LastReloadSource != "api" || !after.LastReloadOK {
		t.Fatalf("after the apply: %+v", after)
	}
	if got := picks(t, a.lb, 2); got["a"]+got["b"] != 2 || got["b"] == 0 {
		t.Fatalf("the applied backend takes no connection: %v", got)
	}
}

// GET /api/v1/config is the running config in the file's JSON form: posted
// back, it changes nothing, and the token never shows.
func TestConfigReadsBackAndHidesTheToken(t *testing.T) {
	cfg := lbConfig(t, "round_robin", newEchoBackend(t, "a"))
	cfg.Admin.Token = "s3cret-token"
	a := startAPI(t, cfg)
	r := a.call(t, "GET", "/api/v1/config", "", "")
	if r.status != http.StatusOK || strings.Contains(string(r.body), "s3cret") || !strings.Contains(string(r.body), `"token": "<redacted>"`) {
		t.Fatalf("GET config: %d %s", r.status, r.body)
	}
	back, err := config.Parse(r.body, "json", "GET /api/v1/config")
	if err != nil {
		t.Fatal(err)
	}
	if back.Strategy != cfg.Strategy || back.Backends[0] != cfg.Backends[0] || back.Runtime != cfg.Runtime {
		t.Fatalf("read back %+v", back)
	}
	var res ConfigResult
	a.ok(t, "POST", "/api/v1/config", "application/json", string(r.body), &res)
	if got := strings.Join(res.Summary, "; "); got != "no change" {
		t.Fatalf("posting the running config back changed: %s", got)
	}
	if a.lb.Config().Admin.Token != "s3cret-token" {
		t.Fatal("the redacted placeholder replaced the token")
	}
}

func TestBadConfigListsEveryProblem(t *testing.T) {
	a := startAPI(t, lbConfig(t, "round_robin", newEchoBackend(t, "a")))
	r := a.call(t, "POST", "/api/v1/config", "application/yaml", "strategy: fastest\nbogus: 1\nbackends:\n  - {address: nowhere, weight: 300}\n")
	if r.status != http.StatusBadRequest {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var e errorBody
	json.Unmarshal(r.body, &e)
	joined := strings.Join(e.Problems, "\n")
	for _, want := range []string{"body: strategy:", `"fastest"`, "body: bogus: unknown key", "body: backends[0].address:", "body: backends[0].weight:"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems lack %q:\n%s", want, joined)
		}
	}
	if len(e.Problems) != 4 || !strings.Contains(e.Error, "4 problems") {
		t.Errorf("want 4 problems: %+v", e)
	}
	if a.status(t).ReloadsFailed != 0 {
		t.Error("a refused request counted as a failed reload")
	}

	for _, tc := range []struct {
		name, path, contentType, body string
		status                        int
		want                          string
	}{
		{"no content type", "/api/v1/config", "", "", http.StatusUnsupportedMediaType, `Content-Type "": want one of application/json`},
		{"text", "/api/v1/config", "text/plain", "x", http.StatusUnsupportedMediaType, `Content-Type "text/plain"`},
		{"bad json", "/api/v1/config", "application/json", "{", http.StatusBadRequest, "body"},
		{"toml", "/api/v1/config", "application/toml", "strategy = 3\n", http.StatusBadRequest, "strategy"},
		{"mistyped dry run", "/api/v1/config?dryrun=true", "application/yaml", "x: 1", http.StatusBadRequest, `unknown query parameter "dryrun"`},
		{"dry run not a bool", "/api/v1/config?dry_run=maybe", "application/yaml", "x: 1", http.StatusBadRequest, `dry_run="maybe": want true or false`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r reply
			if tc.contentType == "" {
				req, err := http.NewRequest("POST", a.base+tc.path, strings.NewReader("x"))
				if err != nil {
					t.Fatal(err)
				}
				r = send(t, req)
			} else {
				r = a.call(t, "POST", tc.path, tc.contentType, tc.body)
			}
			if r.status != tc.status || !strings.Contains(r.errorText(t), tc.want) {
				t.Fatalf("%d %s, want %d with %q", r.status, r.body, tc.status, tc.want)
			}
		})
	}
}

func TestBadWeightBodies(t *testing.T) {
	a := startAPI(t, lbConfig(t, "round_robin", newEchoBackend(t, "a")))
	for _, tc := range []struct{ body, want string }{
		{``, `empty body: want {"weight": N}`},
		{`{}`, "weight is missing"},
		{`nope`, `body is not {"weight": N}`},
		{`{"weight": 1.5}`, "weight: want a whole number, got a JSON number 1.5"},
		{`{"weight": "3"}`, "weight: want a whole number, got a JSON string"},
		{`{"wieght": 3}`, `unknown key "wieght"`},
		{`{"weight": 1} {"weight": 2}`, "more than one JSON value"},
		{`{"weight": 0}`, "invalid weight 0: must be 1..255"},
		{`{"weight": 256}`, "invalid weight 256: must be 1..255"},
	} {
		r := a.call(t, "PUT", "/api/v1/backends/0/weight", "application/json", tc.body)
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(t), tc.want) {
			t.Errorf("body %s: %d %s, want 400 with %q", tc.body, r.status, r.body, tc.want)
		}
	}
	if b := a.backend(t, 0); b.Weight != 1 || b.Override != "" {
		t.Fatalf("a refused weight changed the backend: %+v", b)
	}
}

func TestErrorsAreJSONWithTheRightStatus(t *testing.T) {
	a := startAPI(t, lbConfig(t, "round_robin", newEchoBackend(t, "a"), newEchoBackend(t, "b")))
	for _, tc := range []struct {
		method, path string
		status       int
		want, allow  string
	}{
		{"POST", "/api/v1/backends/9/drain", http.StatusNotFound, "unknown backend: no backend has id 9 (ids: 0, 1)", ""},
		{"PUT", "/api/v1/backends/9/weight", http.StatusNotFound, "no backend has id 9", ""},
		{"POST", "/api/v1/backends/x/drain", http.StatusBadRequest, `backend id "x": want an integer`, ""},
		{"GET", "/api/v1/backends/0/drain", http.StatusMethodNotAllowed, "method GET not allowed on /api/v1/backends/0/drain", "POST"},
		{"DELETE", "/api/v1/config", http.StatusMethodNotAllowed, "allowed: GET, HEAD, POST", "GET, HEAD, POST"},
		{"POST", "/status", http.StatusMethodNotAllowed, "method POST not allowed", "GET, HEAD"},
		{"GET", "/api/v1/nothing", http.StatusNotFound, "no such endpoint: GET /api/v1/nothing", ""},
	} {
		body := ""
		ct := ""
		if tc.method == "PUT" {
			ct, body = "application/json", `{"weight": 2}`
		}
		r := a.call(t, tc.method, tc.path, ct, body)
		if r.status != tc.status || !strings.Contains(r.errorText(t), tc.want) || r.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow=%q %s, want %d with %q", tc.method, tc.path, r.status, r.header.Get("Allow"), r.body, tc.status, tc.want)
		}
	}
}

func TestTokenIsRequiredOnEverythingButHealth(t *testing.T) {
	cfg := lbConfig(t, "round_robin", newEchoBackend(t, "a"))
	cfg.Admin.Token = "s3cret-token"
	a := startAPI(t, cfg)
	request := func(method, path, auth string) reply {
		req, err := http.NewRequest(method, a.base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		return send(t, req)
	}
	for _, path := range []string{"/metrics", "/status", "/api/v1/status", "/api/v1/config", "/api/v1/nothing"} {
		for auth, want := range map[string]string{
			"":                             "admin token required",
			"Basic czNjcmV0LXRva2Vu":       "admin token required",
			"Bearer wrong":                 "wrong admin token",
			"Bearer s3cret-token-and-more": "wrong admin token",
			"Bearer s3cret":                "wrong admin token",
		} {
			r := request("GET", path, auth)
			if r.status != http.StatusUnauthorized || !strings.Contains(r.errorText(t), want) || r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("GET %s with %q: %d %s", path, auth, r.status, r.body)
			}
		}
	}
	if r := request("POST", "/api/v1/backends/0/drain", ""); r.status != http.StatusUnauthorized {
		t.Errorf("drain without the token: %d", r.status)
	}
	if b := a.backend(t, 0); b.Draining {
		t.Fatal("an unauthorized drain drained")
	}
	if r := request("GET", "/health", ""); r.status != http.StatusOK {
		t.Errorf("/health without the token: %d %s", r.status, r.body)
	}
	for _, auth := range []string{"Bearer s3cret-token", "bearer s3cret-token"} {
		if r := request("GET", "/api/v1/status", auth); r.status != http.StatusOK {
			t.Errorf("with %q: %d %s", auth, r.status, r.body)
		}
	}
}

// The token must be compared in constant time: authorize compares with
// crypto/subtle, and nothing in the package compares the token otherwise.
func TestTokenIsComparedInConstantTime(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "api.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var usesSubtle bool
	ast.Inspect(f, func(n ast.Node) bool {
		if fn, ok := n.(*ast.FuncDecl); ok && fn.Name.Name == "authorize" {
			ast.Inspect(fn, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.SelectorExpr:
					if x, ok := n.X.(*ast.Ident); ok && x.Name == "subtle" && n.Sel.Name == "ConstantTimeCompare" {
						usesSubtle = true
					}
				case *ast.BinaryExpr:
					if n.Op == token.EQL || n.Op == token.NEQ {
						if id, ok := n.X.(*ast.Ident); ok && (id.Name == "got" || id.Name == "want" || id.Name == "cred") {
							t.Errorf("%s: the token is compared with %s", fset.Position(n.Pos()), n.Op)
						}
					}
				}
				return true
			})
		}
		return true
	})
	if !usesSubtle {
		t.Fatal("authorize does not use subtle.ConstantTimeCompare")
	}
}

func TestNonLoopbackAdminWithoutTokenIsRefused(t *testing.T) {
	cfg := lbConfig(t, "round_robin", newEchoBackend(t, "a"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lb, err := loadbalancer.Start(ctx, quiet, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-lb.Done() }()
	_, err = Start(ctx, quiet, "0.0.0.0:0", lb)
	if err == nil || !strings.Contains(err.Error(), "0.0.0.0:0 is not a loopback address") || !strings.Contains(err.Error(), "admin.token") {
		t.Fatalf("got %v", err)
	}
}

func TestBodiesAreLimited(t *testing.T) {
	a := startAPI(t, lbConfig(t, "round_robin", newEchoBackend(t, "a")))
	big := "# " + strings.Repeat("x", MaxBodyBytes) + "\n"
	// A client sending a large body asks first (Expect: 100-continue), so an
	// early 413 reaches it instead of a reset of the upload it is writing.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, ExpectContinueTimeout: 10 * time.Second}}
	defer client.CloseIdleConnections()
	for _, tc := range []struct {
		name, method, path string
		body               io.Reader
	}{
		{"declared", "POST", "/api/v1/config", strings.NewReader(big)},
		{"streamed", "PUT", "/api/v1/backends/0/weight", io.MultiReader(strings.NewReader(big))}, // no Content-Length
	} {
		req, err := http.NewRequest(tc.method, a.base+tc.path, tc.body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/yaml")
		req.Header.Set("Expect", "100-continue")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r := reply{resp.StatusCode, resp.Header, body}
		if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(r.errorText(t), "request body larger than 1048576 bytes") {
			t.Fatalf("%s: %d %s", tc.name, r.status, r.body)
		}
	}
}

// Each Content-Type the API takes, with a document in its format; the
// LEMONADE_LB_* variables, which apply to the file, do not apply to it.
func TestConfigFormatsAndNoEnvironment(t *testing.T) {
	t.Setenv("LEMONADE_LB_STRATEGY", "adaptive")
	ba := newEchoBackend(t, "a")
	a := startAPI(t, lbConfig(t, "round_robin", ba))
	yaml := fmt.Sprintf("strategy: least_connections\nbackends:\n  - {id: 0, name: a, address: %q}\n", ba.addr)
	docs := map[string]string{
		"json": fmt.Sprintf(`{"strategy": "least_connections", "backends": [{"id": 0, "name": "a", "address": %q}]}`, ba.addr),
		"yaml": yaml,
		"toml": fmt.Sprintf("strategy = \"least_connections\"\n[[backends]]\nid = 0\nname = \"a\"\naddress = %q\n", ba.addr),
	}
	for contentType, format := range configFormats {
		var res ConfigResult
		a.ok(t, "POST", "/api/v1/config?dry_run=true", contentType, docs[format], &res)
		if res.Changes.Strategy == nil || res.Changes.Strategy.To != "least_connections" {
			t.Errorf("%s: %+v", contentType, res.Changes)
		}
	}
}

// A valid config the running system cannot take (its listen address is in
// use) is a 409, and nothing changes.
func TestConfigThatCannotBeAppliedIsAConflict(t *testing.T) {
	ba := newEchoBackend(t, "a")
	a := startAPI(t, lbConfig(t, "round_robin", ba))
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	doc := fmt.Sprintf("proxy: {listen_address: %q}\nstrategy: adaptive\nbackends:\n  - {address: %q}\n", taken.Addr(), ba.addr)
	r := a.call(t, "POST", "/api/v1/config", "application/yaml", doc)
	if r.status != http.StatusConflict || !strings.Contains(r.errorText(t), "reload rejected, still listening on 127.0.0.1:0") {
		t.Fatalf("%d %s", r.status, r.body)
	}
	s := a.status(t)
	if s.Strategy != "round_robin" || s.LastReloadSource != "api" || s.LastReloadOK || s.ReloadsFailed != 1 {
		t.Fatalf("after the refused apply: %+v", s)
	}
}

// admin.token is read at start: a config that changes it changes nothing
// until a restart, and says so.
func TestTokenIsReadAtStart(t *testing.T) {
	cfg := lbConfig(t, "round_robin", newEchoBackend(t, "a"))
	cfg.Admin.Token = "first-token"
	a := startAPI(t, cfg)
	next := *cfg
	next.Admin.Token = "second-token"
	body, err := json.Marshal(next)
	if err != nil {
		t.Fatal(err)
	}
	var res ConfigResult
	a.ok(t, "POST", "/api/v1/config", "application/json", string(body), &res)
	if !strings.Contains(strings.Join(res.Summary, "\n"), "admin settings (read at start: restart to apply)") {
		t.Fatalf("summary %q", res.Summary)
	}
	a.ok(t, "GET", "/api/v1/status", "", "", nil) // still the first token
	a.token = "second-token"
	if r := a.call(t, "GET", "/api/v1/status", "", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("the new token works before a restart: %d", r.status)
	}
}
