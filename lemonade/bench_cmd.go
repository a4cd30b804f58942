package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/lemonade-lb/lemonade/lemonade/bench"
)

// BenchCmd generates HTTP load and shows what the balancer did with it.
type BenchCmd struct {
	URL         string         `arg:"" optional:"" default:"http://127.0.0.1:50501/work" help:"URL to GET (default: ${default}, the balancer's /work)."`
	Concurrency int            `short:"c" default:"10" help:"Workers, each with its own connection."`
	Duration    *time.Duration `short:"d" xor:"bound" placeholder:"DURATION" help:"Run this long, e.g. 30s (the default bound is 10s)."`
	Requests    *int           `short:"n" xor:"bound" placeholder:"N" help:"Send this many requests in all, then stop."`
	Rate        float64        `placeholder:"R" help:"Requests per second in all, across workers; 0: as fast as possible."`
	Timeout     time.Duration  `default:"10s" help:"Time limit of each request, connect to last body byte."`
	NoKeepalive bool           `name:"no-keepalive" help:"Open a new TCP connection for every request (Connection: close)."`
	JSON        bool           `name:"json" help:"Print the report as JSON on stdout."`
}

// benchFlags names, for error messages, the flag of each bench option.
var benchFlags = map[string]string{
	"url":         "URL",
	"concurrency": "-c/--concurrency",
	"duration":    "-d/--duration",
	"requests":    "-n/--requests",
	"rate":        "--rate",
	"timeout":     "--timeout",
}

// Run implements the command.
func (c *BenchCmd) Run(g *Globals) error {
	o := bench.Options{
		URL:         c.URL,
		Concurrency: c.Concurrency,
		Rate:        c.Rate,
		Timeout:     c.Timeout,
		NoKeepAlive: c.NoKeepalive,
	}
	// The library reads zero as "the default"; on the command line a zero
	// given on purpose is a mistake worth naming.
	switch {
	case c.Concurrency < 1:
		return usageError{fmt.Errorf("-c/--concurrency: must be at least 1, got %d", c.Concurrency)}
	case c.Timeout <= 0:
		return usageError{fmt.Errorf("--timeout: must be positive, got %s", c.Timeout)}
	case c.Duration != nil && *c.Duration <= 0:
		return usageError{fmt.Errorf("-d/--duration: must be positive, got %s", *c.Duration)}
	case c.Requests != nil && *c.Requests <= 0:
		return usageError{fmt.Errorf("-n/--requests: must be at least 1, got %d", *c.Requests)}
	}
	if c.Duration != nil {
		o.Duration = *c.Duration
	}
	if c.Requests != nil {
		o.Requests = *c.Requests
	}

	log, err := g.Logger()
	if err != nil {
		return err
	}
	ctx, stop := signalContext(log)
	defer stop()

	rep, err := bench.Run(ctx, o, g.stderr)
	var oe *bench.OptionError
	if errors.As(err, &oe) {
		return usageError{fmt.Errorf("%s: %w", benchFlags[oe.Option], oe.Err)}
	}
	if err != nil {
		return err
	}
	if c.JSON {
		err = rep.WriteJSON(g.stdout)
	} else {
		err = rep.WriteText(g.stdout)
	}
	if err != nil {
		return err
	}
	if rep.Responses == 0 && rep.Errors > 0 {
		return fmt.Errorf("no request got a response (%d errors)", rep.Errors)
	}
	return nil
}
