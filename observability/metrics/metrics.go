// Package metrics holds the Prometheus instruments of a Lemonade worker's HTTP
// server: requests by route and status code, request duration and requests in
// flight.
//
// Every server registers them on its own *prometheus.Registry rather than the
// global default one, because the demo runs several workers in one process and
// each must expose only its own numbers.
package metrics

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
)

// Metric names, exported so tests and dashboards can refer to them.
const (
	RequestsTotal   = "lemonade_worker_http_requests_total"
	RequestDuration = "lemonade_worker_http_request_duration_seconds"
	InFlight        = "lemonade_worker_http_requests_in_flight"
)

// OtherRoute is the route label of every path that is not a known route; it
// keeps the label's cardinality bounded whatever paths clients try.
const OtherRoute = "other"

// TextContentType is the Content-Type of the Prometheus text format WriteText
// produces.
const TextContentType = string(expfmt.FmtText)

// HTTP is the set of instruments of one HTTP server. Its methods are safe for
// concurrent use.
type HTTP struct {
	routes   map[string]string // path -> the label, a string of our own
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

// NewHTTP creates the instruments and registers them on reg. routes are the
// paths that get a label of their own; any other path is counted as
// OtherRoute.
func NewHTTP(reg prometheus.Registerer, routes ...string) (*HTTP, error) {
	m := &HTTP{
		routes: make(map[string]string, len(routes)),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: RequestsTotal,
			Help: "HTTP requests served, by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    RequestDuration,
			Help:    "Time from the start of the handler to its answer, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18), // 0.5 ms … ~65 s: /work may wait up to 60 s
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: InFlight,
			Help: "HTTP requests being handled right now.",
		}),
	}
	for _, r := range routes {
		m.routes[r] = r
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inFlight} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register worker HTTP metrics: %w", err)
		}
	}
	return m, nil
}

// Route returns the route label for a request path. The label is never path
// itself: fasthttp-based servers pass strings that alias buffers reused by
// the next request, and a label is kept for the life of the process.
func (m *HTTP) Route(path string) string {
	if r, ok := m.routes[path]; ok {
		return r
	}
	return OtherRoute
}

// Begin marks a request as in flight and returns its start time, to hand to
// End when the request is answered.
func (m *HTTP) Begin() time.Time {
	m.inFlight.Inc()
	return time.Now()
}

// End records a request to path answered with the status code, which began
// at start.
func (m *HTTP) End(path string, code int, start time.Time) {
	route := m.Route(path)
	m.requests.WithLabelValues(route, codeLabel(code)).Inc()
	m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	m.inFlight.Dec()
}

// codeLabel avoids an allocation for the codes a worker actually sends.
func codeLabel(code int) string {
	switch code {
	case http.StatusOK:
		return "200"
	case http.StatusBadRequest:
		return "400"
	case http.StatusNotFound:
		return "404"
	case http.StatusMethodNotAllowed:
		return "405"
	case 499:
		return "499"
	case http.StatusInternalServerError:
		return "500"
	}
	return strconv.Itoa(code)
}

// WriteText writes everything g gathers to w in the Prometheus text format
// (Content-Type TextContentType). Servers that are not net/http based use it
// to answer /metrics with the same bytes a promhttp handler would send.
func WriteText(w io.Writer, g prometheus.Gatherer) error {
	mfs, err := g.Gather()
	if err != nil {
		return fmt.Errorf("gather metrics: %w", err)
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
			return fmt.Errorf("encode metrics: %w", err)
		}
	}
	return nil
}

// Text is WriteText into a new byte slice.
func Text(g prometheus.Gatherer) ([]byte, error) {
	var buf bytes.Buffer
	err := WriteText(&buf, g)
	return buf.Bytes(), err
}

// Handler serves what g gathers, for net/http servers (the balancer's admin
// endpoint, for one). Errors while gathering are reported with a 500 instead
// of a partial page.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})
}
