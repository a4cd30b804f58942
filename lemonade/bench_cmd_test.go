package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// benchTarget answers like two demo workers behind a round-robin balancer.
func benchTarget(t *testing.T) string {
	t.Helper()
	url, _ := countingBenchTarget(t)
	return url
}

// countingBenchTarget is benchTarget that also counts the requests served.
func countingBenchTarget(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	n := new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"status":true,"service":"w%d","duration_ms":0}`, n.Add(1)%2+1)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/work", n
}

func runBench(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(append([]string{"bench"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestBenchUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want []string // in stderr
	}{
		{[]string{"-d", "1s", "-n", "5"}, []string{"--duration", "--requests"}},
		{[]string{"ftp://127.0.0.1/work", "-n", "1"}, []string{"URL"}},
		{[]string{"127.0.0.1:50501", "-n", "1"}, []string{"URL"}},
		{[]string{"http://[::1", "-n", "1"}, []string{"URL"}},
		{[]string{"-c", "0", "-n", "1"}, []string{"--concurrency"}},
		{[]string{"-n", "0"}, []string{"--requests"}},
		{[]string{"-d", "0s"}, []string{"--duration"}},
		{[]string{"-d", "soon"}, []string{"--duration"}},
		{[]string{"--rate=-1", "-n", "1"}, []string{"--rate"}},
		{[]string{"--timeout=0s", "-n", "1"}, []string{"--timeout"}},
	} {
		code, stdout, stderr := runBench(tt.args...)
		if code != exitUsage {
			t.Errorf("lemonade bench %s: exit %d, want %d\n%s", strings.Join(tt.args, " "), code, exitUsage, stderr)
		}
		for _, w := range tt.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("lemonade bench %s: stderr does not name %s:\n%s", strings.Join(tt.args, " "), w, stderr)
			}
		}
		if stdout != "" && !strings.HasPrefix(stdout, "Usage:") {
			t.Errorf("lemonade bench %s: stdout %q", strings.Join(tt.args, " "), stdout)
		}
	}
}

func TestBenchText(t *testing.T) {
	code, stdout, stderr := runBench(benchTarget(t), "-n", "40", "-c", "4")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"Requests", "40 responses, 0 errors", "Status codes  200: 40", "Backends", "w1", "w2", "50.0%"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
}

func TestBenchJSON(t *testing.T) {
	code, stdout, stderr := runBench(benchTarget(t), "-n", "30", "-c", "3", "--no-keepalive", "--json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var rep struct {
		Requests  int  `json:"requests"`
		KeepAlive bool `json:"keep_alive"`
		Backends  []struct {
			Service string `json:"service"`
			Count   int    `json:"count"`
		} `json:"backends"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("stdout is not one JSON report: %v\n%s", err, stdout)
	}
	if rep.Requests != 30 || rep.KeepAlive || len(rep.Backends) != 2 || rep.Backends[0].Count != 15 {
		t.Errorf("report %+v", rep)
	}
}

func TestBenchNothingAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	code, stdout, stderr := runBench("http://"+addr+"/work", "-n", "5", "-c", "1")
	if code != exitFailure {
		t.Errorf("exit %d, want %d when no request got a response", code, exitFailure)
	}
	if !strings.Contains(stdout, "connect refused: 5") || !strings.Contains(stderr, "no request got a response") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
}

func TestBenchInterruptPrintsReport(t *testing.T) {
	// The test's own registration keeps a stray SIGINT from killing the
	// test binary, should it come before the command's.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT)
	defer signal.Stop(sigs)

	url, served := countingBenchTarget(t)
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result)
	go func() {
		code, stdout, stderr := runBench(url, "-d", "1m", "-c", "2")
		done <- result{code, stdout, stderr}
	}()
	// The bench is running (its signal handler is set before the first
	// request) once the target has answered some requests.
	for deadline := time.Now().Add(10 * time.Second); served.Load() < 10; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the bench sent %d requests in 10s", served.Load())
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.code != exitOK || !strings.Contains(r.stdout, "interrupted") || !strings.Contains(r.stdout, "Backends") {
			t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SIGINT did not stop lemonade bench")
	}
}
