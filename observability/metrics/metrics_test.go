package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newHTTP(t *testing.T) (*HTTP, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewHTTP(reg, "/health", "/work")
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func TestRouteIsBounded(t *testing.T) {
	m, _ := newHTTP(t)
	for path, want := range map[string]string{
		"/health": "/health", "/work": "/work", "/metrics": OtherRoute,
		"/health/": OtherRoute, "/": OtherRoute, "": OtherRoute, "/x?y": OtherRoute,
	} {
		if got := m.Route(path); got != want {
			t.Errorf("Route(%q) = %q; want %q", path, got, want)
		}
	}
}

func TestBeginEndCounts(t *testing.T) {
	m, reg := newHTTP(t)
	start := m.Begin()
	if got := testutil.ToFloat64(m.inFlight); got != 1 {
		t.Fatalf("in flight after Begin = %v; want 1", got)
	}
	m.End("/work", 200, start)
	m.End("/nope", 404, m.Begin())
	m.End("/elsewhere", 404, m.Begin())
	m.End("/work", 418, m.Begin())

	checks := []struct {
		route, code string
		want        float64
	}{{"/work", "200", 1}, {OtherRoute, "404", 2}, {"/work", "418", 1}}
	for _, c := range checks {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(c.route, c.code)); got != c.want {
			t.Errorf("requests{%s,%s} = %v; want %v", c.route, c.code, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.inFlight); got != 0 {
		t.Errorf("in flight at rest = %v; want 0", got)
	}
	if n := testutil.CollectAndCount(reg, RequestDuration); n != 2 {
		t.Errorf("duration series = %d; want 2 (/work and other)", n)
	}
}

func TestNewHTTPTwiceOnOneRegistryFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewHTTP(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := NewHTTP(reg); err == nil {
		t.Fatal("want an error registering the same metrics twice")
	}
}

func TestTextParsesBack(t *testing.T) {
	m, reg := newHTTP(t)
	m.End("/health", 200, m.Begin())
	body, err := Text(reg)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, body)
	}
	for _, name := range []string{RequestsTotal, RequestDuration, InFlight} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("%s missing from\n%s", name, body)
		}
	}
	if !strings.Contains(string(body), RequestsTotal+`{code="200",route="/health"} 1`) {
		t.Errorf("counter line missing:\n%s", body)
	}
}

type failingGatherer struct{}

func (failingGatherer) Gather() ([]*dto.MetricFamily, error) { return nil, io.ErrUnexpectedEOF }

func TestTextReportsGatherErrors(t *testing.T) {
	if _, err := Text(failingGatherer{}); err == nil {
		t.Fatal("want the gather error")
	}
}

func TestHandler(t *testing.T) {
	m, reg := newHTTP(t)
	m.End("/work", 200, m.Begin())
	srv := httptest.NewServer(Handler(reg))
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("status %d, content type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if !strings.Contains(string(body), RequestsTotal+`{code="200",route="/work"} 1`) {
		t.Errorf("body lacks the counter:\n%s", body)
	}

	bad := httptest.NewServer(Handler(failingGatherer{}))
	defer bad.Close()
	res, err = http.Get(bad.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusInternalServerError {
		t.Errorf("failing gatherer: status %d; want 500", res.StatusCode)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestConcurrentUse(t *testing.T) {
	m, _ := newHTTP(t)
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 1000 {
				m.End("/work", 200, m.Begin())
			}
		}()
	}
	for range 4 {
		<-done
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("/work", "200")); got != 4000 {
		t.Errorf("count = %v; want 4000", got)
	}
	if got := testutil.ToFloat64(m.inFlight); got != 0 {
		t.Errorf("in flight = %v; want 0", got)
	}
}

func BenchmarkBeginEnd(b *testing.B) {
	m, err := NewHTTP(prometheus.NewRegistry(), "/health", "/work", "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		m.End("/work", 200, m.Begin())
	}
}

func ExampleHTTP() {
	reg := prometheus.NewRegistry()
	m, err := NewHTTP(reg, "/health")
	if err != nil {
		panic(err)
	}
	m.End("/health", 200, m.Begin())
	m.End("/missing", 404, m.Begin())
	fmt.Println(m.Route("/health"), m.Route("/missing"))
	// Output: /health other
}

// TestRouteLabelIsNotTheCallersString guards against keeping a caller's
// string as a label: fasthttp hands out strings over reused buffers.
func TestRouteLabelIsNotTheCallersString(t *testing.T) {
	m, _ := newHTTP(t)
	buf := []byte("/work")
	path := unsafe.String(&buf[0], len(buf))
	label := m.Route(path)
	copy(buf, "/xxxx")
	if label != "/work" {
		t.Fatalf("label changed with the caller's buffer: %q", label)
	}
}
