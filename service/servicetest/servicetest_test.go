package servicetest_test

import (
	"context"
	"net"
	"net/http"
	"testing"

	"go.uber.org/goleak"

	"github.com/lemonade-lb/lemonade/service"
	"github.com/lemonade-lb/lemonade/service/servicetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
