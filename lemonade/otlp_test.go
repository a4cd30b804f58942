package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
	"github.com/lemonade-lb/lemonade/observability/otel"
	"github.com/lemonade-lb/lemonade/observability/otel/oteltest"
)

// logTo returns a logger whose lines show with t's failure. It never calls
// t itself: OpenTelemetry's error handler, which it becomes, is process-wide
// and may outlive t.
func logTo(t *testing.T) *slog.Logger {
	var buf syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// echoBackend is a TCP backend that echoes what it reads until EOF.
func echoBackend(t *testing.T) string {
	addr, _ := tcpServer(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
	})
	return addr
}

// echoThrough sends msg through the balancer on a new connection, half-closes
// and reads the echo to the end.
func echoThrough(t *testing.T, addr, msg string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != msg {
		t.Fatalf("echo through the balancer: %q, %v; want %q", got, err, msg)
	}
}

// The balancer's figures reach a real OTLP receiver, over both protocols, and
// match the traffic: N connections round-robin over two backends.
func TestBalancerMetricsOverOTLP(t *testing.T) {
	for _, rcv := range []*oteltest.Receiver{oteltest.GRPC(t), oteltest.HTTP(t, "")} {
		t.Run(rcv.Protocol, func(t *testing.T) {
			backends := []string{echoBackend(t), echoBackend(t)}
			cfg := config.Default()
			cfg.Proxy.ListenAddress = "127.0.0.1:0"
			cfg.Health.Interval = time.Hour // no health check dials to count
			for i, a := range backends {
				cfg.Backends = append(cfg.Backends, config.Backend{ID: i, Name: "b" + strconv.Itoa(i), Address: a, Weight: 1})
			}
			retries := 1
			cfg.Proxy.Retries = &retries
			cfg.OTLPEndpoint, cfg.OTLPProtocol = rcv.Endpoint, rcv.Protocol
			cfg.Metrics.Interval = 20 * time.Millisecond
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}

			tel, err := otel.Setup(context.Background(), otel.Settings{
				Endpoint: cfg.OTLPEndpoint, Protocol: cfg.OTLPProtocol, ServiceName: "lemonade-lb",
				Interval: cfg.Metrics.Interval, Timeout: cfg.Metrics.Timeout, Logger: logTo(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			b, err := loadbalancer.Start(ctx, slog.New(slog.DiscardHandler), cfg)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			stopped := false
			stop := func() {
				if !stopped {
					stopped = true
					cancel()
					<-b.Done()
					if err := tel.Shutdown(context.Background()); err != nil {
						t.Error(err)
					}
				}
			}
			t.Cleanup(stop)
			if err := balancerInstruments(tel.Meter(), b); err != nil {
				t.Fatal(err)
			}

			const n, msg = 10, "hello, lemonade"
			for range n {
				echoThrough(t, b.Addr().String(), msg)
			}
			per := strconv.Itoa(n / 2)
			size := float64(n / 2 * len(msg))
			d := rcv.Wait(t, "the traffic's connections and bytes", func(d oteltest.Data) bool {
				for _, id := range []string{"0", "1"} {
					if d.Value(otlpBackendConnections, "id", id) != n/2 ||
						d.Value(otlpBackendBytes, "id", id, "direction", "out") != size ||
						d.Value(otlpBackendActive, "id", id) != 0 {
						return false
					}
				}
				return d.Value(otlpConnAccepted) == n && d.Value(otlpConnActive) == 0
			})
			for i, addr := range backends {
				id := strconv.Itoa(i)
				p, _ := d.Last(otlpBackendConnections, "id", id)
				if p.Attributes["backend"] != "b"+id || p.Attributes["address"] != addr || !p.Monotonic || p.Resource["service.name"] != "lemonade-lb" {
					t.Errorf("backend %s: point %+v; want a counter for b%s at %s from lemonade-lb", id, p, id, addr)
				}
				for _, c := range []struct {
					metric string
					match  []string
					want   float64
				}{
					{otlpBackendBytes, []string{"direction", "in"}, size},
					{otlpBackendBytes, []string{"direction", "out"}, size},
					{otlpBackendFailures, nil, 0},
					{otlpBackendUp, nil, 1},
					{otlpBackendDraining, nil, 0},
					{otlpBackendWeight, nil, 1},
				} {
					if got := d.Value(c.metric, append([]string{"id", id}, c.match...)...); got != c.want {
						t.Errorf("%s%v of backend %s = %v, want %v (%s connections)", c.metric, c.match, id, got, c.want, per)
					}
				}
				if ewma := d.Value(otlpBackendEWMA, "id", id); ewma <= 0 || ewma > 5 {
					t.Errorf("%s of backend %s = %vs; want a measured time", otlpBackendEWMA, id, ewma)
				}
			}
			for _, c := range []struct {
				metric string
				match  []string
				want   float64
			}{
				{otlpConnRejected, nil, 0},
				{otlpConnAborted, nil, 0},
				{otlpRetries, nil, 0},
				{otlpReloads, []string{"result", "error"}, 0},
			} {
				if got := d.Value(c.metric, c.match...); got != c.want {
					t.Errorf("%s%v = %v, want %v", c.metric, c.match, got, c.want)
				}
			}
			// The same figures as the snapshot /metrics reads.
			s := b.Snapshot()
			if got := d.Value(otlpReloads, "result", "ok"); got != float64(s.ReloadsOK) {
				t.Errorf("%s{result=ok} = %v; the snapshot says %d", otlpReloads, got, s.ReloadsOK)
			}

			// A backend that refuses: its failed dials are counted, the
			// client is served by the other one.
			dead, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			deadAddr := dead.Addr().String()
			dead.Close()
			cfg2 := *cfg
			cfg2.Backends = []config.Backend{cfg.Backends[0], {ID: 5, Name: "dead", Address: deadAddr, Weight: 1}}
			if err := b.Apply(&cfg2); err != nil {
				t.Fatal(err)
			}
			for range 2 { // round robin: one of the two picks the dead backend
				echoThrough(t, b.Addr().String(), msg)
			}
			rcv.Wait(t, "a failed dial and the reload", func(d oteltest.Data) bool {
				return d.Value(otlpBackendFailures, "backend", "dead") >= 1 &&
					d.Value(otlpRetries) >= 1 &&
					d.Value(otlpConnAccepted) == n+2 &&
					d.Value(otlpBackendConnections, "backend", "dead") == 0 &&
					d.Value(otlpReloads, "result", "ok") == float64(s.ReloadsOK+1)
			})

			// Shutdown sends the last figures: after the balancer has
			// stopped, the receiver has the final count.
			exports := rcv.Snapshot().Exports
			stop()
			if d := rcv.Snapshot(); d.Exports <= exports || d.Value(otlpConnAccepted) != n+2 {
				t.Errorf("after Shutdown: %d exports (before: %d), accepted %v", d.Exports, exports, d.Value(otlpConnAccepted))
			}
		})
	}
}
