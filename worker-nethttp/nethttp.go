// Package workernethttp serves the Lemonade worker HTTP contract (package
// service) with net/http and its ServeMux: the standard library baseline the
// other frameworks are compared against.
package workernethttp

import (
	"context"
	"net"
	"net/http"

	"github.com/lemonade-lb/lemonade/service"
)

// Framework is the name the CLI and the logs use for this adapter.
const Framework = "nethttp"

// Handler returns the worker's routes on a ServeMux, wrapped to record the
// request metrics.
func Handler(cfg service.Config) (http.Handler, error) {
	svc, err := service.New(cfg)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+service.RouteHealth, respond(func(*http.Request) service.Response { return svc.HandleHealth() }))
	mux.Handle("GET "+service.RouteWork, respond(func(r *http.Request) service.Response { return svc.HandleWork(r.Context(), r.URL.RawQuery) }))
	mux.Handle("GET "+service.RouteMetrics, respond(func(*http.Request) service.Response { return svc.HandleMetrics() }))
	for _, route := range service.Routes {
		// A "GET /x" pattern also matches HEAD. The method-less "/x" is less
		// specific, so it only sees the other methods: ServeMux's own 405
		// would have a text body, so this is where ours goes.
		mux.Handle(route, respond(func(r *http.Request) service.Response { return service.MethodNotAllowed(r.Method, route) }))
	}
	// "/" matches every path no other pattern does: ServeMux's not-found hook.
	mux.Handle("/", respond(func(*http.Request) service.Response { return service.NotFound() }))
	return instrument(svc, mux), nil
}

// respond adapts a function returning a service.Response to a handler.
type respond func(*http.Request) service.Response

func (f respond) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	res := f(r)
	h := w.Header()
	h.Set("Content-Type", res.ContentType)
	if res.Allow != "" {
		h.Set("Allow", res.Allow)
	}
	w.WriteHeader(res.Status)
	_, _ = w.Write(res.Body) // a client gone away is no error of ours; HEAD drops the body
}

// statusRecorder remembers the status a handler wrote, for the metrics.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func instrument(svc *service.Service, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := svc.StartRequest()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		svc.EndRequest(r.Method, r.URL.Path, rec.status, start)
	})
}

// Serve serves the worker on ln until ctx ends, then shuts down gracefully:
// requests in flight may finish for up to service.ShutdownTimeout. It returns
// nil after a clean shutdown.
func Serve(ctx context.Context, ln net.Listener, cfg service.Config) error {
	return service.ServeHandler(ctx, ln, cfg, Framework, Handler)
}

// Run listens on cfg.ListenAddress and serves there until ctx ends (see
// Serve).
func Run(ctx context.Context, cfg service.Config) error {
	return service.Run(ctx, cfg, Serve)
}
