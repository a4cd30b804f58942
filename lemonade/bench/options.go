package bench

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"time"
)

// Defaults used for the zero values of Options.
const (
	DefaultURL         = "http://127.0.0.1:50501/work"
	DefaultConcurrency = 10
	DefaultDuration    = 10 * time.Second
	DefaultTimeout     = 10 * time.Second
)

// Options say what load to generate. The zero value is useful: it runs 10
// keep-alive connections against DefaultURL for 10 seconds, as fast as the
// server answers.
type Options struct {
	// URL to GET. If empty, DefaultURL (the balancer's default listener).
	URL string
	// Concurrency is the number of workers, each with its own connection.
	// If zero, DefaultConcurrency. With Requests set, it is capped at Requests.
	Concurrency int
	// Duration bounds the run in time. At most one of Duration and Requests
	// may be set; if neither is, Duration is DefaultDuration.
	Duration time.Duration
	// Requests bounds the run by the number of requests sent.
	Requests int
	// NoKeepAlive opens a new TCP connection for every request and asks the
	// server to close it (Connection: close).
	NoKeepAlive bool
	// Rate caps the total requests per second across all workers. Zero means
	// as fast as possible.
	Rate float64
	// Timeout bounds each request, connect to last body byte. If zero,
	// DefaultTimeout.
	Timeout time.Duration
}

// OptionError reports an option that cannot be used. Option is the name of
// the option in lower case, the same as the CLI's long flag ("concurrency",
// "duration", "requests", "rate", "timeout") or "url".
type OptionError struct {
	Option string
	Err    error
}

// Error reads "bench: OPTION: what is wrong".
func (e *OptionError) Error() string { return "bench: " + e.Option + ": " + e.Err.Error() }

// Unwrap returns Err, so errors.Is sees ErrDurationAndRequests and the like.
func (e *OptionError) Unwrap() error { return e.Err }

// ErrDurationAndRequests is the OptionError.Err when both Duration and
// Requests are set.
var ErrDurationAndRequests = errors.New("duration and requests cannot be used together: choose one bound")

func optionErr(option, format string, args ...any) error {
	return &OptionError{Option: option, Err: fmt.Errorf(format, args...)}
}

// withDefaults validates o and fills in the defaults.
func (o Options) withDefaults() (Options, error) {
	if o.URL == "" {
		o.URL = DefaultURL
	}
	u, err := url.Parse(o.URL)
	if err != nil {
		return o, &OptionError{Option: "url", Err: err}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return o, optionErr("url", "%q: want an http:// or https:// URL", o.URL)
	}
	if u.Host == "" || u.Hostname() == "" {
		return o, optionErr("url", "%q: no host", o.URL)
	}
	switch {
	case o.Concurrency < 0:
		return o, optionErr("concurrency", "must be at least 1, got %d", o.Concurrency)
	case o.Concurrency == 0:
		o.Concurrency = DefaultConcurrency
	}
	if o.Duration < 0 {
		return o, optionErr("duration", "must be positive, got %s", o.Duration)
	}
	if o.Requests < 0 {
		return o, optionErr("requests", "must be positive, got %d", o.Requests)
	}
	switch {
	case o.Duration > 0 && o.Requests > 0:
		return o, &OptionError{Option: "duration", Err: ErrDurationAndRequests}
	case o.Duration == 0 && o.Requests == 0:
		o.Duration = DefaultDuration
	case o.Requests > 0 && o.Concurrency > o.Requests:
		o.Concurrency = o.Requests
	}
	if o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) {
		return o, optionErr("rate", "must be a positive number of requests per second (0 = unlimited), got %v", o.Rate)
	}
	switch {
	case o.Timeout < 0:
		return o, optionErr("timeout", "must be positive, got %s", o.Timeout)
	case o.Timeout == 0:
		o.Timeout = DefaultTimeout
	}
	return o, nil
}
