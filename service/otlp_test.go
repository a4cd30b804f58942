package service

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/observability/metrics"
)

func TestLoadOTLP(t *testing.T) {
	yaml := writeFile(t, "w.yaml", "otlp_endpoint: http://collector:4318/otlp\notlp_protocol: http/protobuf\n")
	toml := writeFile(t, "w.toml", "otlp_endpoint = \"collector:4317\"\n")
	type env struct{ any, anyProto, own, ownProto string }
	for _, tc := range []struct {
		name           string
		file           string
		env            env
		wantEP, wantPr string
	}{
		{"off by default", "", env{}, "", ""},
		{"file, yaml", yaml, env{}, "http://collector:4318/otlp", "http/protobuf"},
		{"file, toml, default protocol", toml, env{}, "collector:4317", ""},
		{"LEMONADE_OTLP_* over the file", yaml, env{any: "a:1", anyProto: "grpc"}, "a:1", "grpc"},
		{"the worker's own over LEMONADE_OTLP_*", yaml, env{any: "a:1", own: "b:2", ownProto: "grpc"}, "b:2", "grpc"},
		{"protocol alone", toml, env{ownProto: "http/protobuf"}, "collector:4317", "http/protobuf"},
		// A path suits the file's protocol; a variable's protocol wins, and
		// then a variable's endpoint without a path.
		{"layers agree in the end", yaml, env{anyProto: "grpc", own: "c:3"}, "c:3", "grpc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv(EnvAnyOTLPEndpoint, tc.env.any)
			t.Setenv(EnvAnyOTLPProtocol, tc.env.anyProto)
			t.Setenv(EnvOTLPEndpoint, tc.env.own)
			t.Setenv(EnvOTLPProtocol, tc.env.ownProto)
			cfg, err := Load(Flags{Config: tc.file})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.OTLPEndpoint != tc.wantEP || cfg.OTLPProtocol != tc.wantPr {
				t.Fatalf("endpoint %q protocol %q; want %q %q", cfg.OTLPEndpoint, cfg.OTLPProtocol, tc.wantEP, tc.wantPr)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Load returned a config that does not validate: %v", err)
			}
		})
	}
}

func TestLoadOTLPErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		env        map[string]string
		want       []string
	}{
		{"no port in the file", "otlp_endpoint: collector\n", nil,
			[]string{`invalid OTLP endpoint "collector"`, "(key otlp_endpoint)", "want HOST:PORT"}},
		{"path with grpc in the file", "otlp_endpoint: http://c:4317/x\n", nil,
			[]string{"(key otlp_endpoint)", "path", "grpc"}},
		{"unknown protocol in the file", "otlp_protocol: http\n", nil,
			[]string{"(key otlp_protocol)", `unknown protocol "http"`}},
		{"empty protocol in the file", "otlp_protocol: \"\"\n", nil,
			[]string{"(key otlp_protocol)", "empty"}},
		{"bad worker variable", "", map[string]string{EnvOTLPEndpoint: "ftp://c:1"},
			[]string{"environment variable " + EnvOTLPEndpoint, `scheme "ftp"`}},
		{"bad shared variable", "", map[string]string{EnvAnyOTLPProtocol: "udp"},
			[]string{"environment variable " + EnvAnyOTLPProtocol, `"udp"`}},
		// Each layer is fine alone; together a path meets gRPC. The error
		// names where the endpoint came from.
		{"layers disagree", "otlp_endpoint: http://c:4318/otlp\notlp_protocol: http/protobuf\n", map[string]string{EnvOTLPProtocol: "grpc"},
			[]string{`invalid OTLP endpoint "http://c:4318/otlp"`, "(key otlp_endpoint)", "path"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var f Flags
			if tc.file != "" {
				f.Config = writeFile(t, "w.yaml", tc.file)
			}
			_, err := Load(f)
			if err == nil {
				t.Fatal("Load accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestValidateOTLP(t *testing.T) {
	base := Config{ListenAddress: "127.0.0.1:0", ServiceName: "x"}
	for _, tc := range []struct {
		endpoint, protocol, want string
	}{
		{"collector", "", "invalid OTLP endpoint"},
		{"c:1", "http", "invalid OTLP protocol"},
		{"http://c:1/p", "grpc", "path"},
	} {
		cfg := base
		cfg.OTLPEndpoint, cfg.OTLPProtocol = tc.endpoint, tc.protocol
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%q, %q) = %v; want %q", tc.endpoint, tc.protocol, err, tc.want)
		}
		if _, err := New(cfg); err == nil {
			t.Errorf("New accepted endpoint %q protocol %q", tc.endpoint, tc.protocol)
		}
	}
	cfg := base
	cfg.OTLPEndpoint, cfg.OTLPProtocol = "https://c/otlp", "http/protobuf"
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
}

// observed is one ObserveRequest call.
type observed struct {
	method, route string
	status        int
	start, end    time.Time
}

type recorder struct {
	mu    sync.Mutex
	calls []observed
}

func (r *recorder) ObserveRequest(method, route string, status int, start, end time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, observed{method, route, status, start, end})
}

func TestEndRequestTellsTheObserver(t *testing.T) {
	rec := &recorder{}
	s, err := New(Config{ServiceName: "x", Observer: rec})
	if err != nil {
		t.Fatal(err)
	}
	method := []byte("GET")
	start := s.StartRequest()
	s.EndRequest(string(method), "/work", 200, start)
	method[0] = 'X' // the service must not have kept the caller's string
	s.EndRequest("HEAD", "/health", 200, s.StartRequest())
	s.EndRequest("BREW", "/work", 405, s.StartRequest())
	s.EndRequest("get", "/nope", 404, s.StartRequest())
	want := []observed{
		{method: "GET", route: "/work", status: 200},
		{method: "HEAD", route: "/health", status: 200},
		{method: "_OTHER", route: "/work", status: 405},
		{method: "_OTHER", route: metrics.OtherRoute, status: 404},
	}
	if len(rec.calls) != len(want) {
		t.Fatalf("%d calls, want %d: %+v", len(rec.calls), len(want), rec.calls)
	}
	for i, w := range want {
		c := rec.calls[i]
		if c.method != w.method || c.route != w.route || c.status != w.status || c.end.Before(c.start) {
			t.Errorf("call %d = %+v; want %s %s %d, start before end", i, c, w.method, w.route, w.status)
		}
	}
	if !rec.calls[0].start.Equal(start) {
		t.Errorf("start %v, want the StartRequest time %v", rec.calls[0].start, start)
	}
}

// Without an observer, EndRequest costs what it did: passing a method
// converted from bytes (fasthttp's) allocates nothing more than a constant.
func TestEndRequestMethodDoesNotEscape(t *testing.T) {
	for _, obs := range []RequestObserver{nil, &recorder{}} {
		s, err := New(Config{ServiceName: "x", Observer: obs})
		if err != nil {
			t.Fatal(err)
		}
		method := []byte("GET")
		constant := testing.AllocsPerRun(100, func() { s.EndRequest("GET", "/work", 200, s.StartRequest()) })
		converted := testing.AllocsPerRun(100, func() { s.EndRequest(string(method), "/work", 200, s.StartRequest()) })
		if converted != constant {
			t.Errorf("observer %T: EndRequest with a converted method: %v allocs, with a constant %v", obs, converted, constant)
		}
		if obs == nil && constant != 0 {
			t.Errorf("EndRequest without an observer: %v allocs, want 0", constant)
		}
	}
}
