package oteltest

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"slices"
	"strings"
	"testing"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"
)

// post sends body to the receiver's metrics path and returns the status.
func post(t *testing.T, r *Receiver, contentType, encoding string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest("POST", r.Endpoint+"/v1/metrics", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The HTTP receiver takes gzip-compressed protobuf, decodes every number
// and attribute kind, and refuses what an OTLP exporter would not send.
func TestHTTPReceiverDecodes(t *testing.T) {
	r := HTTP(t, "")
	kv := func(k string, v *commonpb.AnyValue) *commonpb.KeyValue { return &commonpb.KeyValue{Key: k, Value: v} }
	req := &colmetricpb.ExportMetricsServiceRequest{ResourceMetrics: []*metricpb.ResourceMetrics{{
		ScopeMetrics: []*metricpb.ScopeMetrics{{Metrics: []*metricpb.Metric{
			{Name: "g", Data: &metricpb.Metric_Gauge{Gauge: &metricpb.Gauge{DataPoints: []*metricpb.NumberDataPoint{{
				Value: &metricpb.NumberDataPoint_AsDouble{AsDouble: 1.5},
				Attributes: []*commonpb.KeyValue{
					kv("s", &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "x"}}),
					kv("i", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 7}}),
					kv("b", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}),
					kv("d", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.25}}),
				},
			}}}}},
			{Name: "c", Data: &metricpb.Metric_Sum{Sum: &metricpb.Sum{IsMonotonic: true, DataPoints: []*metricpb.NumberDataPoint{{
				Value: &metricpb.NumberDataPoint_AsInt{AsInt: 3},
			}}}}},
		}}},
	}}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(b)
	zw.Close()
	if code := post(t, r, "application/x-protobuf", "gzip", gz.Bytes()); code != 200 {
		t.Fatalf("a gzip export: %d", code)
	}
	d := r.Snapshot()
	if names := d.Names(); !slices.Equal(names, []string{"c", "g"}) {
		t.Errorf("names %v", names)
	}
	if p, ok := d.Last("g", "s", "x", "i", "7", "b", "true", "d", "0.25"); !ok || p.Value != 1.5 || p.Kind != "gauge" {
		t.Errorf("the gauge: %+v, %v", p, ok)
	}
	if v := d.Value("c"); v != 3 {
		t.Errorf("the counter: %v", v)
	}
	if s := d.String(); !strings.Contains(s, "1 exports") || !strings.Contains(s, "g") {
		t.Errorf("String: %q", s)
	}

	for _, c := range []struct {
		contentType, encoding string
		body                  []byte
		want                  int
	}{
		{"application/json", "", b, http.StatusUnsupportedMediaType},
		{"application/x-protobuf", "gzip", b, http.StatusBadRequest}, // not gzip
		{"application/x-protobuf", "", []byte{0xff, 0xff}, http.StatusBadRequest},
	} {
		if code := post(t, r, c.contentType, c.encoding, c.body); code != c.want {
			t.Errorf("%s %s: %d, want %d", c.contentType, c.encoding, code, c.want)
		}
	}
}
