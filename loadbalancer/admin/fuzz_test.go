package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// fuzzAPI is the admin handler of a real balancer whose one backend is never
// dialled (nothing connects, checks are an hour apart).
func fuzzAPI(f *testing.F) http.Handler {
	f.Helper()
	cfg := config.Default()
	cfg.Proxy.ListenAddress = "127.0.0.1:0"
	cfg.Health.Interval = time.Hour
	cfg.Backends = []config.Backend{{ID: 0, Name: "a", Address: "127.0.0.1:1", Weight: 1}}
	retries := 0
	cfg.Proxy.Retries = &retries
	ctx, cancel := context.WithCancel(context.Background())
	lb, err := loadbalancer.Start(ctx, quiet, cfg)
	if err != nil {
		cancel()
		f.Fatal(err)
	}
	f.Cleanup(func() { cancel(); <-lb.Done() })
	return Handler(lb)
}

func serve(h http.Handler, method, path, contentType string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// answerIsJSON checks an answer is JSON, and an error answer has its error.
func answerIsJSON(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("answer %d is not JSON: %q", rec.Code, rec.Body.String())
	}
	if rec.Code != http.StatusOK && doc["error"] == "" {
		t.Fatalf("error answer %d without an error: %q", rec.Code, rec.Body.String())
	}
}

// FuzzWeightBody feeds arbitrary bodies to PUT /api/v1/backends/0/weight: it
// must answer 200 or 400 (413 past the limit) in JSON, never panic, and a 200
// must mean the body was {"weight": N} with N within the config's bounds, now
// the backend's weight.
func FuzzWeightBody(f *testing.F) {
	for _, s := range []string{
		`{"weight": 3}`, `{"weight": 0}`, `{"weight": 256}`, `{"weight": -1}`, `{"weight": 1.5}`,
		`{"weight": "3"}`, `{"weight": null}`, `{"wieght": 3}`, `{}`, ``, `[]`, `null`, `{"weight": 1} x`,
		`{"weight": 99999999999999999999}`, `{"weight": 1e2}`, `{"weight": 2, "weight": 300}`,
	} {
		f.Add([]byte(s))
	}
	h := fuzzAPI(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := serve(h, "PUT", "/api/v1/backends/0/weight", "application/json", body)
		answerIsJSON(t, rec)
		switch rec.Code {
		case http.StatusOK:
			var s backend.Snapshot
			json.Unmarshal(rec.Body.Bytes(), &s)
			var req struct{ Weight int }
			if err := json.Unmarshal(body, &req); err != nil || req.Weight != s.Weight || s.Weight < config.MinWeight || s.Weight > config.MaxWeight {
				t.Fatalf("body %q accepted as weight %d", body, s.Weight)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("body %q: status %d", body, rec.Code)
		}
	})
}

// FuzzConfigBody feeds arbitrary configs to POST /api/v1/config?dry_run=true,
// as YAML and as JSON: it must answer 200, 400 or 413 in JSON, never panic,
// and accept only what config.Parse accepts, listing the problems otherwise.
func FuzzConfigBody(f *testing.F) {
	seed, err := os.ReadFile("../config/testdata/seed.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed, false)
	for _, s := range []string{
		"", "backends:\n  - address: 127.0.0.1:1\n", "strategy: fastest\nbogus: 1\n",
		"backends: [{address: \"[::1]:80\", weight: 255, id: 9}]\nadmin: {listen_address: \"0.0.0.0:1\", token: \"<redacted>\"}\n",
		"- 1\n", "? [a]\n: 1\n",
	} {
		f.Add([]byte(s), false)
	}
	for _, s := range []string{`{"backends":[{"address":"127.0.0.1:2"}],"strategy":"adaptive"}`, `{"backends":5}`, `[`, `{"proxy":{"retries":1e400}}`} {
		f.Add([]byte(s), true)
	}
	h := fuzzAPI(f)
	f.Fuzz(func(t *testing.T, body []byte, asJSON bool) {
		contentType, format := "application/yaml", "yaml"
		if asJSON {
			contentType, format = "application/json", "json"
		}
		rec := serve(h, "POST", "/api/v1/config?dry_run=true", contentType, body)
		answerIsJSON(t, rec)
		parsed, parseErr := config.Parse(body, format, "body")
		switch rec.Code {
		case http.StatusOK:
			if parseErr != nil {
				t.Fatalf("accepted what config.Parse refuses (%v): %q", parseErr, body)
			}
			// What GET /api/v1/config would serve for it reads back the same.
			data, err := json.Marshal(parsed)
			if err != nil {
				t.Fatal(err)
			}
			back, err := config.Parse(data, "json", "round trip")
			if err != nil || !reflect.DeepEqual(back, parsed) {
				t.Fatalf("%q does not read back: %v", data, err)
			}
		case http.StatusBadRequest:
			var e errorBody
			json.Unmarshal(rec.Body.Bytes(), &e)
			if parseErr == nil {
				t.Fatalf("refused with %q what config.Parse accepts", e.Error)
			}
			// The answer is JSON: invalid UTF-8 in the message comes out as U+FFFD.
			var want string
			data, _ := json.Marshal(parseErr.Error())
			json.Unmarshal(data, &want)
			if e.Error != want {
				t.Fatalf("refused with %q what config.Parse says %v", e.Error, parseErr)
			}
		case http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}
