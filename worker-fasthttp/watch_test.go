package workerfasthttp

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/service/servicetest"
)

// TestPipelinedRequestIsNotACancel sends a second request while the first
// /work waits: the watcher sees bytes, not a close, so the first request must
// still be answered in full, and the second one after it.
func TestPipelinedRequestIsNotACancel(t *testing.T) {
	for name, serve := range map[string]servicetest.ServeFunc{"fasthttp": Serve, "fiber": ServeFiber} {
		t.Run(name, func(t *testing.T) {
			target := servicetest.Start(t, servicetest.Config("pipe"), serve)
			conn, err := net.Dial("tcp", target.URL[len("http://"):])
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(conn, "GET /work?delay=1s HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			waitInFlight(t, target.URL) // the handler is waiting now
			if _, err := io.WriteString(conn, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			for _, want := range []string{
				`{"status":true,"service":"pipe","duration_ms":1000}`,
				`{"status":"ok","service":"pipe"}`,
			} {
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if res.StatusCode != 200 || string(body) != want {
					t.Fatalf("got %d %s; want 200 %s", res.StatusCode, body, want)
				}
			}
		})
	}
}

// waitInFlight polls the worker's metrics (on another connection) until a
// request shows as in flight, for at most 5s.
func waitInFlight(t *testing.T, base string) {
	t.Helper()
	const gauge = "\nlemonade_worker_http_requests_in_flight 1\n"
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(body), gauge) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request in flight within 5s; metrics:\n%s", body)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
