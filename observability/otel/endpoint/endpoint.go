// Package endpoint reads the OTLP endpoint and protocol settings of Lemonade's
// binaries. It is apart from package otel, which holds the exporters, so that
// config packages can check the settings without linking the OpenTelemetry
// SDK.
package endpoint

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Protocols, named as in OTEL_EXPORTER_OTLP_PROTOCOL.
const (
	GRPC         = "grpc"
	HTTPProtobuf = "http/protobuf"
)

// Protocols lists every valid protocol; the first is the default.
var Protocols = []string{GRPC, HTTPProtobuf}

// Endpoint is a parsed OTLP endpoint.
type Endpoint struct {
	// Protocol is GRPC or HTTPProtobuf.
	Protocol string
	// HostPort is where to connect: host:port, or just the host of a URL
	// without a port (the scheme's port is then used).
	HostPort string
	// Insecure is true for plain text (host:port or http://), false for TLS
	// (https://).
	Insecure bool
	// Path is the base path of an http/protobuf endpoint, without a
	// trailing slash: each signal is sent to Path + "/v1/metrics" or
	// "/v1/traces". Always empty for gRPC.
	Path string
}

// Parse checks an endpoint for protocol ("" means GRPC). raw is HOST:PORT
// (plain text), http://HOST[:PORT][/PATH] (plain text) or
// https://HOST[:PORT][/PATH] (TLS); a path is only allowed with
// http/protobuf. Errors say what is wrong without repeating raw, so callers
// can name the setting and the value.
func Parse(raw, protocol string) (Endpoint, error) {
	if protocol == "" {
		protocol = GRPC
	}
	if err := CheckProtocol(protocol); err != nil {
		return Endpoint{}, err
	}
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return Endpoint{}, errors.New("empty endpoint")
	}
	ep := Endpoint{Protocol: protocol}
	scheme, rest, hasScheme := strings.Cut(raw, "://")
	if !hasScheme {
		if err := checkHostPort(raw, true); err != nil {
			return Endpoint{}, err
		}
		ep.HostPort, ep.Insecure = raw, true
		return ep, nil
	}
	switch strings.ToLower(scheme) {
	case "http":
		ep.Insecure = true
	case "https":
	default:
		return Endpoint{}, fmt.Errorf("scheme %q is not http or https (or give HOST:PORT)", scheme)
	}
	u, err := url.Parse(strings.ToLower(scheme) + "://" + rest)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Endpoint{}, err
	}
	switch {
	case u.User != nil:
		return Endpoint{}, errors.New("credentials in the URL are not supported; use OTEL_EXPORTER_OTLP_HEADERS")
	case u.RawQuery != "" || u.Fragment != "":
		return Endpoint{}, errors.New("a query or fragment is not allowed")
	}
	if err := checkHostPort(u.Host, false); err != nil {
		return Endpoint{}, err
	}
	ep.HostPort = u.Host
	path := strings.TrimRight(u.Path, "/")
	if path != "" && protocol == GRPC {
		return Endpoint{}, fmt.Errorf("a path (%q) is not allowed with protocol %s", u.Path, GRPC)
	}
	ep.Path = path
	return ep, nil
}

// CheckProtocol reports whether p is one of Protocols.
func CheckProtocol(p string) error {
	for _, ok := range Protocols {
		if p == ok {
			return nil
		}
	}
	return fmt.Errorf("unknown protocol %q, want %s", p, strings.Join(Protocols, " or "))
}

// checkHostPort checks host[:port]; the port is required when needPort.
func checkHostPort(hp string, needPort bool) error {
	host, port, hasPort := hp, "", false
	if h, p, err := net.SplitHostPort(hp); err == nil {
		host, port, hasPort = h, p, true
	} else if needPort {
		return errors.New("want HOST:PORT, or a URL: http://HOST:PORT for plain text, https://HOST[:PORT] for TLS")
	} else if strings.HasPrefix(hp, "[") && strings.HasSuffix(hp, "]") {
		host = hp[1 : len(hp)-1] // an IPv6 literal without a port
	} else if strings.ContainsAny(hp, "[]") || strings.Count(hp, ":") > 0 {
		return fmt.Errorf("bad host %q", hp)
	}
	if host == "" {
		return errors.New("no host")
	}
	if hasPort {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 || port != strconv.FormatUint(n, 10) {
			return fmt.Errorf("port %q is not a number from 1 to 65535", port)
		}
	}
	return nil
}
