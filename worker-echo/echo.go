// Package workerecho serves the Lemonade worker HTTP contract (package
// service) with echo v4.
package workerecho

import (
	"context"
	"errors"
	"net"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/lemonade-lb/lemonade/service"
)

// Framework is the name the CLI and the logs use for this adapter.
const Framework = "echo"

// Handler returns an echo instance with the worker's routes. It never logs
// per request (no Logger middleware) and prints no banner.
func Handler(cfg service.Config) (*echo.Echo, error) {
	svc, err := service.New(cfg)
	if err != nil {
		return nil, err
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true

	// Echo's router reports unknown paths and wrong methods as errors; its
	// error handler is the hook that turns them into the service's answers.
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		var res service.Response
		var he *echo.HTTPError
		switch {
		case errors.Is(err, echo.ErrNotFound):
			res = service.NotFound()
		case errors.Is(err, echo.ErrMethodNotAllowed):
			res = service.MethodNotAllowed(c.Request().Method, c.Request().URL.Path)
		case errors.As(err, &he):
			res = service.ErrorResponse(he.Code, http.StatusText(he.Code))
		default:
			res = service.ErrorResponse(http.StatusInternalServerError, http.StatusText(http.StatusInternalServerError))
		}
		_ = write(c, res)
	}
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := svc.StartRequest()
			if err := next(c); err != nil {
				c.Error(err) // answer now, so the status below is the one sent
			}
			svc.EndRequest(c.Request().Method, c.Request().URL.Path, c.Response().Status, start)
			return nil
		}
	})

	routes := map[string]echo.HandlerFunc{
		service.RouteHealth:  func(c echo.Context) error { return write(c, svc.HandleHealth()) },
		service.RouteWork:    func(c echo.Context) error { return write(c, svc.HandleWork(c.Request().Context(), c.QueryString())) },
		service.RouteMetrics: func(c echo.Context) error { return write(c, svc.HandleMetrics()) },
	}
	for _, route := range service.Routes {
		e.GET(route, routes[route])
		e.HEAD(route, routes[route])
		// Echo answers OPTIONS on a known path itself with 204; the contract
		// says 405 for every method but GET and HEAD.
		e.OPTIONS(route, func(c echo.Context) error { return echo.ErrMethodNotAllowed })
	}
	return e, nil
}

func write(c echo.Context, res service.Response) error {
	if res.Allow != "" {
		c.Response().Header().Set(echo.HeaderAllow, res.Allow)
	}
	return c.Blob(res.Status, res.ContentType, res.Body)
}

// Serve serves the worker on ln until ctx ends, then shuts down gracefully:
// requests in flight may finish for up to service.ShutdownTimeout. It returns
// nil after a clean shutdown.
func Serve(ctx context.Context, ln net.Listener, cfg service.Config) error {
	// Echo is an http.Handler; the shared net/http lifecycle serves it, so
	// shutdown behaves exactly as for the other net/http based workers.
	return service.ServeHandler(ctx, ln, cfg, Framework, Handler)
}

// Run listens on cfg.ListenAddress and serves there until ctx ends (see
// Serve).
func Run(ctx context.Context, cfg service.Config) error {
	return service.Run(ctx, cfg, Serve)
}
