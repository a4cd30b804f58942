package servicetest_test

import (
	"context"
	"flag"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lemonade-lb/lemonade/service"
	"github.com/lemonade-lb/lemonade/service/servicetest"
)

// brokenEnv names, in a child process of TestSuiteFailsBrokenAdapters, the
// way the adapter the suite runs against breaks the contract.
const brokenEnv = "SERVICETEST_BROKEN"

func TestMain(m *testing.M) {
	if how := os.Getenv(brokenEnv); how != "" {
		// A child: the suite against the broken adapter, as its only test.
		testing.Main(func(string, string) (bool, error) { return true, nil }, []testing.InternalTest{{
			Name: "TestBroken_" + how,
			F: func(t *testing.T) {
				servicetest.Run(t, servicetest.Start(t, servicetest.Config("broken"), brokenServe(how)))
			},
		}}, nil, nil)
	}
	goleak.VerifyTestMain(m)
}

// referenceHandler is the smallest correct adapter, on net/http with a hand
// dispatch: it checks the suite itself, with no framework in the way.
func referenceHandler(cfg service.Config) (http.Handler, error) {
	svc, err := service.New(cfg)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := svc.StartRequest()
		var res service.Response
		switch route := r.URL.Path; {
		case route != service.RouteHealth && route != service.RouteWork && route != service.RouteMetrics:
			res = service.NotFound()
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			res = service.MethodNotAllowed(r.Method, route)
		case route == service.RouteHealth:
			res = svc.HandleHealth()
		case route == service.RouteWork:
			res = svc.HandleWork(r.Context(), r.URL.RawQuery)
		default:
			res = svc.HandleMetrics()
		}
		w.Header().Set("Content-Type", res.ContentType)
		if res.Allow != "" {
			w.Header().Set("Allow", res.Allow)
		}
		w.WriteHeader(res.Status)
		_, _ = w.Write(res.Body)
		svc.EndRequest(r.Method, r.URL.Path, res.Status, start)
	}), nil
}

// brokenServe serves the reference adapter broken in the way how names.
func brokenServe(how string) servicetest.ServeFunc {
	newHandler := func(cfg service.Config) (http.Handler, error) {
		ref, err := referenceHandler(cfg)
		if err != nil {
			return nil, err
		}
		idle, err := service.New(cfg) // a service no request reaches
		if err != nil {
			return nil, err
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch how {
			case "health-500":
				if r.URL.Path == service.RouteHealth {
					w.WriteHeader(http.StatusInternalServerError)
					return
				}
			case "text-plain":
				w = contentTypeWriter{w, "text/plain"}
			case "no-metrics":
				if r.URL.Path == service.RouteMetrics && r.Method == http.MethodGet {
					w.Header().Set("Content-Type", "text/plain; version=0.0.4")
					return
				}
			case "uncounted":
				if r.URL.Path == service.RouteMetrics && r.Method == http.MethodGet {
					res := idle.HandleMetrics()
					w.Header().Set("Content-Type", res.ContentType)
					_, _ = w.Write(res.Body)
					return
				}
			case "ignores-delay":
				r.URL.RawQuery = ""
			case "405-as-404":
				if r.Method != http.MethodGet && r.Method != http.MethodHead {
					r.URL.Path = "/nowhere"
				}
			}
			ref.ServeHTTP(w, r)
		}), nil
	}
	return func(ctx context.Context, ln net.Listener, cfg service.Config) error {
		return service.ServeHandler(ctx, ln, cfg, "broken", newHandler)
	}
}

// contentTypeWriter sets its own Content-Type over the one the handler set.
type contentTypeWriter struct {
	http.ResponseWriter
	contentType string
}

func (w contentTypeWriter) WriteHeader(status int) {
	w.Header().Set("Content-Type", w.contentType)
	w.ResponseWriter.WriteHeader(status)
}

// The suite fails an adapter that breaks the contract, saying what broke:
// each broken adapter runs through it in a child process (its failure must
// not fail this test), which must exit non-zero naming the fault.
func TestSuiteFailsBrokenAdapters(t *testing.T) {
	args := []string{"-test.v"}
	if dir := flag.Lookup("test.gocoverdir"); dir != nil && dir.Value.String() != "" {
		args = append(args, "-test.gocoverdir="+dir.Value.String())
	}
	for how, want := range map[string]string{
		"health-500":    "GET /health: status 500; want 200",
		"text-plain":    `GET /work: Content-Type "text/plain"; want "application/json"`,
		"ignores-delay": "GET /work?delay=50: body",
		"405-as-404":    "POST /health: status 404; want 405",
		"no-metrics":    "GET /metrics: lemonade_worker_http_requests_in_flight missing",
		"uncounted":     `lemonade_worker_http_requests_total{route="/health",code="200"} grew by 0; want 3`,
	} {
		t.Run(how, func(t *testing.T) {
			ctx := t.Context()
			if deadline, ok := t.Deadline(); ok { // a hung child must not outlive the test
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, deadline.Add(-5*time.Second))
				defer cancel()
			}
			cmd := exec.CommandContext(ctx, os.Args[0], args...)
			cmd.Env = append(os.Environ(), brokenEnv+"="+how)
			out, err := cmd.CombinedOutput()
			if _, failed := err.(*exec.ExitError); !failed || !strings.Contains(string(out), "--- FAIL: TestBroken_"+how) {
				t.Fatalf("the suite did not fail the adapter broken by %s (%v):\n%s", how, err, out)
			}
			for _, wrong := range []string{"FailNow on a parent test", "DATA RACE", "panic:"} {
				if strings.Contains(string(out), wrong) {
					t.Errorf("the suite's run against the adapter broken by %s says %q:\n%s", how, wrong, out)
				}
			}
			if !strings.Contains(string(out), want) {
				t.Errorf("the suite failed the adapter broken by %s without naming %q:\n%s", how, want, out)
			}
		})
	}
}

// reference and referenceRun are the reference adapter's Serve and Run.
func reference(ctx context.Context, ln net.Listener, cfg service.Config) error {
	return service.ServeHandler(ctx, ln, cfg, "reference", referenceHandler)
}

func referenceRun(ctx context.Context, cfg service.Config) error {
	return service.Run(ctx, cfg, reference)
}

func TestReferenceAdapter(t *testing.T) {
	servicetest.Adapter(t, "reference", reference, referenceRun)
}

func TestReferenceHandler(t *testing.T) { servicetest.Handler(t, referenceHandler) }

func BenchmarkReferenceHandler(b *testing.B) { servicetest.BenchmarkHandler(b, referenceHandler) }

func TestNamesNeedingEscapes(t *testing.T) {
	servicetest.Run(t, servicetest.Start(t, servicetest.Config(`odd "name" <&>`), reference))
}
