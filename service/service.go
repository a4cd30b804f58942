package service

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lemonade-lb/lemonade/configfile"
	"github.com/lemonade-lb/lemonade/observability/metrics"
)

// Routes of the HTTP contract.
const (
	RouteHealth  = "/health"
	RouteWork    = "/work"
	RouteMetrics = "/metrics"
)

// Routes lists every route, in the order adapters register them.
var Routes = []string{RouteHealth, RouteWork, RouteMetrics}

// Header values of the HTTP contract.
const (
	// ContentTypeJSON is the Content-Type of every answer but /metrics.
	ContentTypeJSON = "application/json"
	// AllowedMethods is the Allow header of a 405: every route takes the same.
	AllowedMethods = "GET, HEAD"
)

// MaxRequestDelay caps the ?delay= a single request may ask for.
const MaxRequestDelay = 60 * time.Second

// StatusClientClosedRequest (nginx's 499) is recorded for a /work request
// whose context ended before its delay did: nobody is left to read the
// answer, but the metrics show the request ended early.
const StatusClientClosedRequest = 499

// HealthBody is the JSON body of GET /health.
type HealthBody struct {
	Status  string `json:"status"`
	Service string `json:"service"`
}

// WorkBody is the JSON body of GET /work.
type WorkBody struct {
	Status     bool   `json:"status"`
	Service    string `json:"service"`
	DurationMS int64  `json:"duration_ms"`
}

// ErrorBody is the JSON body of every 4xx and 5xx answer.
type ErrorBody struct {
	Error string `json:"error"`
}

// Response is a complete HTTP answer. Adapters copy it to the wire as is:
// status, Content-Type, Allow (when not empty) and Body. Body may be shared
// between responses and must not be modified.
type Response struct {
	Status      int
	ContentType string
	Allow       string
	Body        []byte
}

// Service is one worker: its configuration and its metrics. Create it with
// New; its methods are safe for concurrent use.
type Service struct {
	cfg        Config
	registry   *prometheus.Registry
	metrics    *metrics.HTTP
	observer   RequestObserver // cfg.Observer; nil: none
	healthBody []byte          // constant for the service's life
	workPrefix []byte          // the work body up to the duration value
}

// New returns a Service for cfg. cfg.ListenAddress is not looked at (the
// caller owns the listener); an empty name or a negative delay is an error.
func New(cfg Config) (*Service, error) {
	if err := cfg.validateForServe(); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	m, err := metrics.NewHTTP(reg, Routes...)
	if err != nil {
		return nil, err
	}
	name, err := json.Marshal(cfg.ServiceName)
	if err != nil {
		return nil, fmt.Errorf("encode service name: %w", err)
	}
	s := &Service{cfg: cfg, registry: reg, metrics: m, observer: cfg.Observer}
	s.healthBody = fmt.Appendf(nil, `{"status":"ok","service":%s}`, name)
	s.workPrefix = fmt.Appendf(nil, `{"status":true,"service":%s,"duration_ms":`, name)
	return s, nil
}

// Config returns the configuration the service was created with.
func (s *Service) Config() Config { return s.cfg }

// Registry is the service's own Prometheus registry; callers may register
// more collectors on it.
func (s *Service) Registry() *prometheus.Registry { return s.registry }

// Health reports the service as up.
func (s *Service) Health() HealthBody {
	return HealthBody{Status: "ok", Service: s.cfg.ServiceName}
}

// Work waits for delay, then reports the work done. If ctx ends first it
// returns at once with ctx's error. A timer does the waiting, so nothing
// blocks past the context.
func (s *Service) Work(ctx context.Context, delay time.Duration) (WorkBody, error) {
	if err := ctx.Err(); err != nil {
		return WorkBody{}, err
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return WorkBody{}, ctx.Err()
		}
	}
	return WorkBody{Status: true, Service: s.cfg.ServiceName, DurationMS: delay.Milliseconds()}, nil
}

// HandleHealth answers GET /health.
func (s *Service) HandleHealth() Response {
	return Response{Status: http.StatusOK, ContentType: ContentTypeJSON, Body: s.healthBody}
}

// HandleWork answers GET /work. rawQuery is the URL's query string without
// the '?': a delay parameter there overrides the configured delay.
func (s *Service) HandleWork(ctx context.Context, rawQuery string) Response {
	delay, err := RequestDelay(rawQuery, s.cfg.WorkDelay)
	if err != nil {
		return ErrorResponse(http.StatusBadRequest, err.Error())
	}
	return s.HandleWorkDelay(ctx, delay)
}

// HandleWorkDelay answers GET /work once the delay is known (see
// RequestDelay): adapters that need the delay first, to decide whether to
// watch the client connection, call it instead of HandleWork.
func (s *Service) HandleWorkDelay(ctx context.Context, delay time.Duration) Response {
	w, err := s.Work(ctx, delay)
	if err != nil {
		return ErrorResponse(StatusClientClosedRequest, "work abandoned: "+err.Error())
	}
	body := make([]byte, 0, len(s.workPrefix)+21)
	body = append(body, s.workPrefix...)
	body = strconv.AppendInt(body, w.DurationMS, 10)
	body = append(body, '}')
	return Response{Status: http.StatusOK, ContentType: ContentTypeJSON, Body: body}
}

// HandleMetrics answers GET /metrics with the service's registry in the
// Prometheus text format.
func (s *Service) HandleMetrics() Response {
	body, err := metrics.Text(s.registry)
	if err != nil {
		return ErrorResponse(http.StatusInternalServerError, err.Error())
	}
	return Response{Status: http.StatusOK, ContentType: metrics.TextContentType, Body: body}
}

// StartRequest counts a request as in flight; hand its result to EndRequest.
// Adapters call the pair around every request, matched or not.
func (s *Service) StartRequest() time.Time { return s.metrics.Begin() }

// EndRequest records a request with method to path, answered with status:
// in the Prometheus metrics, and for the Observer, if there is one. method
// is not kept, so it may alias a buffer the server reuses.
func (s *Service) EndRequest(method, path string, status int, start time.Time) {
	s.metrics.End(path, status, start)
	if s.observer != nil {
		s.observer.ObserveRequest(CanonicalMethod(method), s.metrics.Route(path), status, start, time.Now())
	}
}

// CanonicalMethod returns method as OpenTelemetry's HTTP conventions record
// it: one of the methods HTTP defines, as a constant string, or "_OTHER".
// Methods are case-sensitive, so "get" is "_OTHER".
func CanonicalMethod(method string) string {
	switch method {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodHead:
		return http.MethodHead
	case http.MethodPost:
		return http.MethodPost
	case http.MethodPut:
		return http.MethodPut
	case http.MethodPatch:
		return http.MethodPatch
	case http.MethodDelete:
		return http.MethodDelete
	case http.MethodConnect:
		return http.MethodConnect
	case http.MethodOptions:
		return http.MethodOptions
	case http.MethodTrace:
		return http.MethodTrace
	}
	return "_OTHER"
}

// notFoundBody is shared: it never changes.
var notFoundBody = errorJSON("not found")

// NotFound answers a request for a path that is not a route.
func NotFound() Response {
	return Response{Status: http.StatusNotFound, ContentType: ContentTypeJSON, Body: notFoundBody}
}

// MethodNotAllowed answers a request for a route with a method other than
// GET or HEAD.
func MethodNotAllowed(method, route string) Response {
	r := ErrorResponse(http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s; use %s", method, route, AllowedMethods))
	r.Allow = AllowedMethods
	return r
}

// ErrorResponse is an answer with the given status and {"error": msg}.
func ErrorResponse(status int, msg string) Response {
	return Response{Status: status, ContentType: ContentTypeJSON, Body: errorJSON(msg)}
}

func errorJSON(msg string) []byte {
	b, _ := json.Marshal(ErrorBody{Error: msg}) // a struct of one string always encodes
	return b
}

// RequestDelay returns the delay a /work request asks for in its query
// string: the delay parameter (integer milliseconds or a duration string,
// from 0 to MaxRequestDelay), or def when there is none.
func RequestDelay(rawQuery string, def time.Duration) (time.Duration, error) {
	if rawQuery == "" {
		return def, nil // the common case: skip parsing
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return 0, fmt.Errorf("invalid query string: %v", err)
	}
	vals, ok := q["delay"]
	switch {
	case !ok:
		return def, nil
	case len(vals) > 1:
		return 0, fmt.Errorf("delay given %d times; give it once", len(vals))
	}
	raw := vals[0]
	d, err := configfile.ParseDuration(raw)
	if err != nil || d < 0 || d > MaxRequestDelay {
		return 0, fmt.Errorf("invalid delay %q: want integer milliseconds or a duration from 0 to %s, like \"5ms\"", raw, MaxRequestDelay)
	}
	return d, nil
}
