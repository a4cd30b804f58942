package endpoint

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		raw, protocol string
		want          Endpoint
	}{
		{"localhost:4317", "", Endpoint{Protocol: GRPC, HostPort: "localhost:4317", Insecure: true}},
		{" 127.0.0.1:4317 ", GRPC, Endpoint{Protocol: GRPC, HostPort: "127.0.0.1:4317", Insecure: true}},
		{"[::1]:4317", GRPC, Endpoint{Protocol: GRPC, HostPort: "[::1]:4317", Insecure: true}},
		{"http://collector:4317", GRPC, Endpoint{Protocol: GRPC, HostPort: "collector:4317", Insecure: true}},
		{"https://collector:4317/", GRPC, Endpoint{Protocol: GRPC, HostPort: "collector:4317"}},
		{"HTTPS://otlp.example.com", GRPC, Endpoint{Protocol: GRPC, HostPort: "otlp.example.com"}},
		{"localhost:4318", HTTPProtobuf, Endpoint{Protocol: HTTPProtobuf, HostPort: "localhost:4318", Insecure: true}},
		{"http://localhost:4318", HTTPProtobuf, Endpoint{Protocol: HTTPProtobuf, HostPort: "localhost:4318", Insecure: true}},
		{"https://otlp.example.com/otlp/", HTTPProtobuf, Endpoint{Protocol: HTTPProtobuf, HostPort: "otlp.example.com", Path: "/otlp"}},
		{"https://[::1]/a/b", HTTPProtobuf, Endpoint{Protocol: HTTPProtobuf, HostPort: "[::1]", Path: "/a/b"}},
	} {
		got, err := Parse(tc.raw, tc.protocol)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q, %q) = %+v, %v; want %+v", tc.raw, tc.protocol, got, err, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ raw, protocol, want string }{
		{"", GRPC, "empty endpoint"},
		{"localhost", GRPC, "want HOST:PORT"},
		{"localhost:0", GRPC, `port "0"`},
		{"localhost:http", GRPC, `port "http"`},
		{"localhost:70000", GRPC, `port "70000"`},
		{":4317", GRPC, "no host"},
		{"grpc://localhost:4317", GRPC, `scheme "grpc"`},
		{"http://", GRPC, "no host"},
		{"http://localhost:", GRPC, `port ""`},
		{"http://localhost:4317/otlp", GRPC, "path"},
		{"http://user:pw@localhost:4318", HTTPProtobuf, "credentials"},
		{"http://localhost:4318?x=1", HTTPProtobuf, "query"},
		{"localhost:4317", "http", `unknown protocol "http"`},
		{"localhost:4317", "HTTP/protobuf", "unknown protocol"},
	} {
		_, err := Parse(tc.raw, tc.protocol)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q, %q) = %v; want an error containing %q", tc.raw, tc.protocol, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"localhost:4317", "https://a.example/otlp", "http://[::1]:4318", "x://y", ""} {
		f.Add(s, GRPC)
		f.Add(s, HTTPProtobuf)
	}
	f.Fuzz(func(t *testing.T, raw, protocol string) {
		ep, err := Parse(raw, protocol)
		if err != nil {
			return
		}
		if ep.HostPort == "" || (ep.Protocol != GRPC && ep.Protocol != HTTPProtobuf) {
			t.Fatalf("Parse(%q, %q) = %+v without an error", raw, protocol, ep)
		}
		if ep.Protocol == GRPC && ep.Path != "" {
			t.Fatalf("Parse(%q, %q): gRPC with path %q", raw, protocol, ep.Path)
		}
	})
}
