// Package mux adapts the Lemonade worker contract to a framework of its own,
// a plain net/http ServeMux, as a user of the service module would; the
// test runs the contract's conformance suite, servicetest, against it.
package mux

import (
	"context"
	"net"
	"net/http"

	"github.com/lemonade-lb/lemonade/service"
)

// Serve serves the worker contract on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, cfg service.Config) error {
	return service.ServeHandler(ctx, ln, cfg, "consumer-mux", handler)
}

// Run serves on cfg.ListenAddress until ctx ends.
func Run(ctx context.Context, cfg service.Config) error {
	return service.Run(ctx, cfg, Serve)
}

func handler(cfg service.Config) (http.Handler, error) {
	svc, err := service.New(cfg)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := svc.StartRequest()
		var res service.Response
		switch get := r.Method == http.MethodGet || r.Method == http.MethodHead; {
		case get && r.URL.Path == service.RouteHealth:
			res = svc.HandleHealth()
		case get && r.URL.Path == service.RouteWork:
			res = svc.HandleWork(r.Context(), r.URL.RawQuery)
		case get && r.URL.Path == service.RouteMetrics:
			res = svc.HandleMetrics()
		case r.URL.Path == service.RouteHealth || r.URL.Path == service.RouteWork || r.URL.Path == service.RouteMetrics:
			res = service.MethodNotAllowed(r.Method, r.URL.Path)
		default:
			res = service.NotFound()
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
