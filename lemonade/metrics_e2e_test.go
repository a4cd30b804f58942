package main

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// The balancer's /metrics reports the build `lemonade version` prints, the
// cap in force and the start as a successful load.
func TestMetricsReportTheBuildAndTheConfig(t *testing.T) {
	code, out, _ := runLemonade(t, nil, "version")
	m := regexp.MustCompile(`^lemonade (\S+) \(commit (\S+),`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("lemonade version: exit %d, %q", code, out)
	}
	backend, _ := tcpServer(t, func(net.Conn) {})
	lbAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	writeLBConfig(t, cfg, lbAddr, "round_robin", 1000, backend)
	lb := start(t, []string{"LEMONADE_LB_ADMIN_ADDRESS=" + adminAddr}, "lb", "-c", cfg)
	waitListening(t, lb, adminAddr)
	metrics := mustGet(t, "http://"+adminAddr+"/metrics")
	for _, want := range []string{
		fmt.Sprintf(`lemonade_build_info{commit=%q,goversion=%q,version=%q} 1`, m[2], runtime.Version(), m[1]),
		"lemonade_max_connections 30000",
		"lemonade_max_connections_waiting 0",
		"lemonade_last_reload_success 1",
		"lemonade_last_reload_timestamp_seconds ",
		`lemonade_backend_draining{address="` + backend + `",backend="b0",id="0"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", metrics)
	}
}
