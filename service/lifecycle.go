package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ShutdownTimeout bounds a graceful shutdown: requests still running after
// it are cut off.
const ShutdownTimeout = 10 * time.Second

// ReadTimeout bounds how long a worker waits for a request's header, and
// then for its body: a client that sends either a byte at a time, or stops
// halfway, is cut off (slowloris) instead of holding its connection forever.
const ReadTimeout = 10 * time.Second

// ErrShutdownTimeout is returned (wrapped) by ServeUntilDone when requests
// were still running at the end of the shutdown timeout.
var ErrShutdownTimeout = errors.New("graceful shutdown timed out; open connections were closed")

// ServeUntilDone runs serve until ctx ends, then stops it gracefully. It is
// the lifecycle every adapter's Serve shares:
//
//   - serve blocks serving requests; after shutdown has been called it must
//     return nil (adapters map their framework's "server closed" error);
//   - shutdown stops accepting, waits for in-flight requests until its
//     context ends, and then closes whatever is left before returning.
//
// It returns serve's error if serving fails on its own, nil after a clean
// shutdown, and an error wrapping ErrShutdownTimeout when requests were still
// running after timeout.
func ServeUntilDone(ctx context.Context, timeout time.Duration, serve func() error, shutdown func(context.Context) error) error {
	served := make(chan error, 1)
	go func() { served <- serve() }()

	select {
	case err := <-served:
		if err == nil {
			return errors.New("server stopped before it was asked to")
		}
		return err
	case <-ctx.Done():
	}

	// The parent ctx has ended, so the shutdown gets a fresh one.
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	shutdownErr := shutdown(sctx)
	serveErr := <-served
	switch {
	case errors.Is(shutdownErr, context.DeadlineExceeded):
		return fmt.Errorf("after %s: %w", timeout, ErrShutdownTimeout)
	case shutdownErr != nil:
		return fmt.Errorf("shutdown: %w", shutdownErr)
	}
	return serveErr
}

// Listen opens a TCP listener on addr. Its error names the address and says
// why, without net's repetition of it.
func Listen(addr string) (net.Listener, error) {
	if err := checkAddress(addr); err != nil {
		return nil, fmt.Errorf("invalid listen address %q: %w", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err
		}
		return nil, fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	return ln, nil
}

// ServeHTTP serves h on ln with a net/http server until ctx ends, then shuts
// down gracefully (see ServeUntilDone). The adapters built on net/http
// handlers (net/http itself, gin, echo) share it.
func ServeHTTP(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           bodyDeadline(h),
		ReadHeaderTimeout: ReadTimeout,
		IdleTimeout:       2 * time.Minute,
		// net/http logs only trouble (accept errors, panics), never a request.
		ErrorLog: slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
	return ServeUntilDone(ctx, ShutdownTimeout,
		func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
		func(ctx context.Context) error {
			err := srv.Shutdown(ctx)
			if err != nil {
				srv.Close() // cut off what did not finish in time
			}
			return err
		})
}

// bodyDeadline gives a request with a body ReadTimeout to send it. No route
// reads a body, but net/http reads what is left of one (up to 256 KiB)
// before it answers, to reuse the connection: with no deadline, a client
// that promises a body and stalls gets no answer and holds its connection,
// and the graceful shutdown, forever. (Server.ReadTimeout would bound that
// too, but it also cancels every request running longer than it, such as a
// long /work.) The deadline only ever covers the body: net/http watches the
// client with a read of its own only once a body has been read to the end.
func bodyDeadline(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 { // -1: chunked, of unknown length
			// Fails only for a writer without deadlines: never net/http's own.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(ReadTimeout))
		}
		h.ServeHTTP(w, r)
	})
}

// Run validates cfg, listens on cfg.ListenAddress and calls serve with that
// listener: it is every adapter's Run, given the adapter's Serve. Its errors
// name the setting or the address; serve is not called when either is bad.
func Run(ctx context.Context, cfg Config, serve func(context.Context, net.Listener, Config) error) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	ln, err := Listen(cfg.ListenAddress)
	if err != nil {
		return err
	}
	return serve(ctx, ln, cfg)
}

// ServeLogged runs serve, logging at debug level that the worker of
// framework serves cfg on ln, and then that it stopped and why. It returns
// serve's error.
func ServeLogged(framework string, ln net.Listener, cfg Config, serve func() error) error {
	log := slog.Default().With("framework", framework, "address", ln.Addr().String(), "service", cfg.ServiceName)
	log.Debug("worker serving")
	err := serve()
	log.Debug("worker stopped", "error", err)
	return err
}

// ServeHandler is the Serve of an adapter whose handler is an http.Handler:
// it builds the handler with newHandler (closing ln if cfg is refused) and
// serves it on ln with ServeHTTP until ctx ends, logged by ServeLogged.
func ServeHandler[H http.Handler](ctx context.Context, ln net.Listener, cfg Config, framework string, newHandler func(Config) (H, error)) error {
	h, err := newHandler(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	return ServeLogged(framework, ln, cfg, func() error { return ServeHTTP(ctx, ln, h) })
}
