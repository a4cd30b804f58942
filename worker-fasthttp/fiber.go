package workerfasthttp

import (
	"context"
	"errors"
	"net"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/lemonade-lb/lemonade/service"
)

// App returns a fiber app with the worker's routes.
func App(cfg service.Config) (*fiber.App, error) {
	svc, err := service.New(cfg)
	if err != nil {
		return nil, err
	}
	return newApp(svc, context.Background()), nil
}

// newApp builds the fiber app; base is as for newHandler.
func newApp(svc *service.Service, base context.Context) *fiber.App {
	// Fiber reports unknown paths and wrong methods as *fiber.Error; the
	// error handler is the hook that turns them into the service's answers.
	onError := func(c *fiber.Ctx, err error) error {
		var res service.Response
		var fe *fiber.Error
		switch {
		case errors.As(err, &fe) && fe.Code == http.StatusNotFound:
			res = service.NotFound()
		case errors.As(err, &fe) && fe.Code == http.StatusMethodNotAllowed:
			res = service.MethodNotAllowed(c.Method(), c.Path())
		case errors.As(err, &fe):
			res = service.ErrorResponse(fe.Code, fe.Message)
		default:
			res = service.ErrorResponse(http.StatusInternalServerError, http.StatusText(http.StatusInternalServerError))
		}
		return writeFiber(c, res)
	}
	app := fiber.New(fiber.Config{
		DisableStartupMessage: true,
		// Without these, /health/ and /HEALTH would be /health here and 404
		// on the other workers.
		StrictRouting: true,
		CaseSensitive: true,
		ErrorHandler:  onError,
		ReadTimeout:   readTimeout,
		IdleTimeout:   idleTimeout,
	})
	app.Use(func(c *fiber.Ctx) error {
		start := svc.StartRequest()
		if err := c.Next(); err != nil {
			// Answer here, so the status recorded is the one sent.
			if herr := onError(c, err); herr != nil {
				c.Status(http.StatusInternalServerError)
			}
		}
		svc.EndRequest(c.Method(), c.Path(), c.Response().StatusCode(), start)
		return nil
	})
	// Get registers HEAD as well.
	app.Get(service.RouteHealth, func(c *fiber.Ctx) error { return writeFiber(c, svc.HandleHealth()) })
	app.Get(service.RouteWork, func(c *fiber.Ctx) error { return writeFiber(c, work(svc, base, c.Context())) })
	app.Get(service.RouteMetrics, func(c *fiber.Ctx) error { return writeFiber(c, svc.HandleMetrics()) })
	return app
}

func writeFiber(c *fiber.Ctx, res service.Response) error {
	c.Status(res.Status)
	c.Set(fiber.HeaderContentType, res.ContentType)
	if res.Allow != "" {
		c.Set(fiber.HeaderAllow, res.Allow)
	}
	return c.Send(res.Body)
}

// ServeFiber serves the worker with fiber on ln until ctx ends, then shuts
// down gracefully: requests in flight may finish for up to
// service.ShutdownTimeout. It returns nil after a clean shutdown.
func ServeFiber(ctx context.Context, ln net.Listener, cfg service.Config) error {
	return serveFast(ctx, ln, cfg, FrameworkFiber, func(svc *service.Service, base context.Context) fastServer {
		app := newApp(svc, base)
		return fastServer{serve: app.Listener, shutdown: app.ShutdownWithContext}
	})
}

// RunFiber listens on cfg.ListenAddress and serves there with fiber until
// ctx ends (see ServeFiber).
func RunFiber(ctx context.Context, cfg service.Config) error {
	return service.Run(ctx, cfg, ServeFiber)
}
