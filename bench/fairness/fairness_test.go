package main

import (
	"bytes"
	"net"
	"regexp"
	"strconv"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("percentile(1..100 ms, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 0.99); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
}

// TestClientAgainstBackend runs a short measurement straight against an
// in-process backend, in every bulk direction.
func TestClientAgainstBackend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveListener(ln)

	if err := runProbe([]string{"-target", ln.Addr().String()}); err != nil {
		t.Fatalf("probe: %v", err)
	}
	kv := regexp.MustCompile(`(?m)^result .*\bpings=(\d+) .*\bup_MBps=([0-9.]+) down_MBps=([0-9.]+) .*\bbulk_errors=0$`)
	for _, dir := range []string{"both", "up", "down"} {
		var out bytes.Buffer
		err := runClient([]string{"-target", ln.Addr().String(), "-bulk", "2", "-duration", "200ms",
			"-warmup", "50ms", "-pings", "0", "-dir", dir}, &out)
		if err != nil {
			t.Fatalf("-dir %s: %v\n%s", dir, err, out.String())
		}
		m := kv.FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("-dir %s: no result line:\n%s", dir, out.String())
		}
		pings, _ := strconv.Atoi(m[1])
		up, _ := strconv.ParseFloat(m[2], 64)
		down, _ := strconv.ParseFloat(m[3], 64)
		if pings == 0 {
			t.Errorf("-dir %s: no round trips", dir)
		}
		if (up > 0) != (dir != "down") || (down > 0) != (dir != "up") {
			t.Errorf("-dir %s: up %v MB/s, down %v MB/s", dir, up, down)
		}
	}
}
