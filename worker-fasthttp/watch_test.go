package workerfasthttp

import (
	"bufio"
	"io"
	"net"
	"net/http"
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
			if _, err := io.WriteString(conn, "GET /work?delay=200ms HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // the handler is waiting now
			if _, err := io.WriteString(conn, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			for _, want := range []string{
				`{"status":true,"service":"pipe","duration_ms":200}`,
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
