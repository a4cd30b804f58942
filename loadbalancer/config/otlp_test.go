package config

import (
	"errors"
	"strings"
	"testing"
)

// otlp_endpoint and otlp_protocol from the file and from LEMONADE_OTLP_*,
// which win over the file.
func TestOTLPSettings(t *testing.T) {
	c := mustLoad(t, "testdata/seed.yaml", nil)
	if c.OTLPEndpoint != "" || c.OTLPProtocol != OTLPGRPC {
		t.Errorf("defaults: endpoint %q protocol %q; want off and grpc", c.OTLPEndpoint, c.OTLPProtocol)
	}
	c = mustLoad(t, "testdata/seed.yaml", map[string]string{
		"LEMONADE_OTLP_ENDPOINT": "https://otlp.example.com/base",
		"LEMONADE_OTLP_PROTOCOL": "http/protobuf",
	})
	if c.OTLPEndpoint != "https://otlp.example.com/base" || c.OTLPProtocol != OTLPHTTPProtobuf {
		t.Errorf("from the environment: endpoint %q protocol %q", c.OTLPEndpoint, c.OTLPProtocol)
	}
	c, err := Parse([]byte("otlp_endpoint: \"[::1]:4317\"\n"+twoBackends), "yaml", "lb.yaml")
	if err != nil || c.OTLPEndpoint != "[::1]:4317" {
		t.Errorf("from the file: %v, %v", c, err)
	}
}

func TestOTLPEndpointErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		load func() (*Config, error)
		want []string
	}{
		{"no port in the file", func() (*Config, error) {
			return Parse([]byte("otlp_endpoint: collector\n"+twoBackends), "yaml", "lb.yaml")
		}, []string{`lb.yaml: otlp_endpoint: "collector": want HOST:PORT`}},
		{"path with grpc", func() (*Config, error) {
			return Parse([]byte("otlp_endpoint: http://c:4317/v1\n"+twoBackends), "yaml", "lb.yaml")
		}, []string{"lb.yaml: otlp_endpoint:", "path", "grpc"}},
		{"scheme from the environment", func() (*Config, error) {
			return loadFile("testdata/seed.yaml", env(map[string]string{"LEMONADE_OTLP_ENDPOINT": "udp://c:4317"}))
		}, []string{`LEMONADE_OTLP_ENDPOINT="udp://c:4317": otlp_endpoint:`, `scheme "udp"`}},
		{"protocol from the environment", func() (*Config, error) {
			return loadFile("testdata/seed.yaml", env(map[string]string{"LEMONADE_OTLP_PROTOCOL": "http"}))
		}, []string{`LEMONADE_OTLP_PROTOCOL="http": otlp_protocol:`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.load()
			var verr *ValidationError
			if !errors.As(err, &verr) || len(verr.Problems) != 1 {
				t.Fatalf("want one problem, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(verr.Problems[0], w) {
					t.Errorf("problem %q does not contain %q", verr.Problems[0], w)
				}
			}
		})
	}
}
