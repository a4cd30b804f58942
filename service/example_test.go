package service_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"

	"github.com/lemonade-lb/lemonade/service"
)

// handler is a worker adapter for a "framework" of its own: a plain
// http.HandlerFunc. It routes each request to the service, copies the
// Response to the wire, and records the request around it.
func handler(cfg service.Config) (http.Handler, error) {
	svc, err := service.New(cfg)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := svc.StartRequest()
		var res service.Response
		switch path := r.URL.Path; {
		case !slices.Contains(service.Routes, path):
			res = service.NotFound()
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			res = service.MethodNotAllowed(r.Method, path)
		case path == service.RouteHealth:
			res = svc.HandleHealth()
		case path == service.RouteWork:
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

// serve is the adapter's Serve: ServeHandler builds the handler and serves
// it until ctx ends, then shuts down gracefully. Its Run would be
// service.Run(ctx, cfg, serve).
func serve(ctx context.Context, ln net.Listener, cfg service.Config) error {
	return service.ServeHandler(ctx, ln, cfg, "plain", handler)
}

// An adapter serves the worker contract on a web framework: it routes
// requests to a Service and writes the Response it returns. Here the
// framework is net/http with a hand-written dispatch (see handler and serve
// in this file); servicetest checks an adapter against the whole contract.
func Example_adapter() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, ln, service.Config{ServiceName: "worker-1"}) }()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for _, req := range []struct{ method, path string }{
		{"GET", "/health"}, {"GET", "/work?delay=5ms"}, {"GET", "/nope"}, {"POST", "/work"},
	} {
		r, err := http.NewRequest(req.method, "http://"+ln.Addr().String()+req.path, nil)
		if err != nil {
			panic(err)
		}
		res, err := client.Do(r)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		fmt.Println(req.method, req.path, res.StatusCode, string(body))
	}

	cancel() // stops serve gracefully: it returns nil
	fmt.Println("serve returned", <-served)
	// Output:
	// GET /health 200 {"status":"ok","service":"worker-1"}
	// GET /work?delay=5ms 200 {"status":true,"service":"worker-1","duration_ms":5}
	// GET /nope 404 {"error":"not found"}
	// POST /work 405 {"error":"method POST is not allowed on /work; use GET, HEAD"}
	// serve returned <nil>
}
