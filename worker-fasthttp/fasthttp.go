package workerfasthttp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lemonade-lb/lemonade/service"
)

// Framework names, as the CLI and the logs use them.
const (
	Framework      = "fasthttp"
	FrameworkFiber = "fiber"
)

// Handler returns a fasthttp handler with the worker's routes.
func Handler(cfg service.Config) (fasthttp.RequestHandler, error) {
	svc, err := service.New(cfg)
	if err != nil {
		return nil, err
	}
	return newHandler(svc, context.Background()), nil
}

// route is one entry of the hand router: fasthttp has no router of its own.
type route struct {
	path   string // the route, also used as its metrics label
	handle func(*fasthttp.RequestCtx) service.Response
}

// newHandler builds the router. base is the parent of every /work context:
// cancelling it cuts off waiting requests when a shutdown runs out of time.
func newHandler(svc *service.Service, base context.Context) fasthttp.RequestHandler {
	routes := map[string]route{
		service.RouteHealth: {service.RouteHealth, func(*fasthttp.RequestCtx) service.Response { return svc.HandleHealth() }},
		service.RouteWork: {service.RouteWork, func(rc *fasthttp.RequestCtx) service.Response {
			return work(svc, base, rc)
		}},
		service.RouteMetrics: {service.RouteMetrics, func(*fasthttp.RequestCtx) service.Response { return svc.HandleMetrics() }},
	}
	return func(rc *fasthttp.RequestCtx) {
		start := svc.StartRequest()
		var res service.Response
		r, ok := routes[string(rc.Path())] // the conversion does not allocate in a map index
		switch {
		case !ok:
			res = service.NotFound()
		case !rc.IsGet() && !rc.IsHead():
			res = service.MethodNotAllowed(string(rc.Method()), r.path)
		default:
			res = r.handle(rc)
		}
		writeFast(rc, res)
		svc.EndRequest(string(rc.Method()), r.path, res.Status, start) // "" for no route counts as other
	}
}

// work answers /work, watching the client only when there is a wait.
func work(svc *service.Service, base context.Context, rc *fasthttp.RequestCtx) service.Response {
	delay, err := service.RequestDelay(string(rc.URI().QueryString()), svc.Config().WorkDelay)
	if err != nil {
		return service.ErrorResponse(http.StatusBadRequest, err.Error())
	}
	if delay == 0 {
		return svc.HandleWorkDelay(base, 0)
	}
	ctx, stop := watchClient(base, rc)
	defer stop()
	return svc.HandleWorkDelay(ctx, delay)
}

func writeFast(rc *fasthttp.RequestCtx, res service.Response) {
	rc.SetStatusCode(res.Status)
	rc.SetContentType(res.ContentType)
	if res.Allow != "" {
		rc.Response.Header.Set("Allow", res.Allow)
	}
	rc.SetBody(res.Body) // fasthttp leaves the body out of HEAD answers itself
}

// Timeouts of both fasthttp based servers, like the net/http ones'.
const (
	readTimeout = service.ReadTimeout // header and body (fasthttp reads both before the handler)
	idleTimeout = 2 * time.Minute
)

// Serve serves the worker with fasthttp on ln until ctx ends, then shuts
// down gracefully: requests in flight may finish for up to
// service.ShutdownTimeout. It returns nil after a clean shutdown.
func Serve(ctx context.Context, ln net.Listener, cfg service.Config) error {
	return serveFast(ctx, ln, cfg, Framework, func(svc *service.Service, base context.Context) fastServer {
		srv := &fasthttp.Server{
			Handler:               newHandler(svc, base),
			NoDefaultServerHeader: true, // the net/http based workers send none either
			ReadTimeout:           readTimeout,
			IdleTimeout:           idleTimeout,
			CloseOnShutdown:       true,
			Logger:                debugLogger{},
		}
		return fastServer{serve: srv.Serve, shutdown: srv.ShutdownWithContext}
	})
}

// Run listens on cfg.ListenAddress and serves there with fasthttp until ctx
// ends (see Serve).
func Run(ctx context.Context, cfg service.Config) error {
	return service.Run(ctx, cfg, Serve)
}

// fastServer is the lifecycle of a fasthttp based server (fasthttp's own or
// fiber's): serve blocks on a listener, shutdown stops it gracefully.
type fastServer struct {
	serve    func(net.Listener) error
	shutdown func(context.Context) error
}

// serveFast is the Serve of both fasthttp based servers. It builds the
// server with newServer (closing ln if cfg is refused) and serves on ln until
// ctx ends; base, the parent of every /work context, is cancelled when the
// graceful shutdown fails, because fasthttp cannot close busy connections.
func serveFast(ctx context.Context, ln net.Listener, cfg service.Config, framework string,
	newServer func(svc *service.Service, base context.Context) fastServer) error {
	svc, err := service.New(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	base, abort := context.WithCancel(context.Background())
	defer abort()
	srv := newServer(svc, base)
	return service.ServeLogged(framework, ln, cfg, func() error {
		return service.ServeUntilDone(ctx, service.ShutdownTimeout,
			func() error { return srv.serve(ln) },
			func(ctx context.Context) error {
				err := srv.shutdown(ctx)
				if err != nil {
					abort() // end the waits of the connections still busy
				}
				return err
			})
	})
}

// debugLogger sends fasthttp's messages (mostly connections a client broke)
// to slog at debug level: at info they would be one line per bad connection.
type debugLogger struct{}

func (debugLogger) Printf(format string, args ...any) {
	log := slog.Default()
	if log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug(fmt.Sprintf(format, args...), "framework", Framework)
	}
}
