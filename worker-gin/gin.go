// Package workergin serves the Lemonade worker HTTP contract (package
// service) with gin, in release mode: no debug banner, no route dump, no
// per-request log lines.
package workergin

import (
	"context"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/lemonade-lb/lemonade/service"
)

// Framework is the name the CLI and the logs use for this adapter.
const Framework = "gin"

// Handler returns a gin engine with the worker's routes. It puts gin in
// release mode, which is process-wide: gin's debug output is per route and
// per request, and a worker must stay quiet.
func Handler(cfg service.Config) (*gin.Engine, error) {
	svc, err := service.New(cfg)
	if err != nil {
		return nil, err
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New() // no Logger middleware; net/http recovers panics itself
	e.HandleMethodNotAllowed = true
	// Redirects would make /health/ a 301 here and a 404 elsewhere.
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false

	e.Use(func(c *gin.Context) {
		start := svc.StartRequest()
		c.Next()
		svc.EndRequest(c.Request.Method, c.Request.URL.Path, c.Writer.Status(), start)
	})
	handle := func(route string, h gin.HandlerFunc) {
		e.GET(route, h)
		e.HEAD(route, h)
	}
	handle(service.RouteHealth, func(c *gin.Context) { write(c, svc.HandleHealth()) })
	handle(service.RouteWork, func(c *gin.Context) { write(c, svc.HandleWork(c.Request.Context(), c.Request.URL.RawQuery)) })
	handle(service.RouteMetrics, func(c *gin.Context) { write(c, svc.HandleMetrics()) })
	e.NoRoute(func(c *gin.Context) { write(c, service.NotFound()) })
	e.NoMethod(func(c *gin.Context) { write(c, service.MethodNotAllowed(c.Request.Method, c.Request.URL.Path)) })
	return e, nil
}

func write(c *gin.Context, res service.Response) {
	if res.Allow != "" {
		c.Header("Allow", res.Allow) // replaces the one gin sets, to match every framework
	}
	c.Data(res.Status, res.ContentType, res.Body)
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

var _ http.Handler = (*gin.Engine)(nil)
