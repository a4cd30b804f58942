package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitLine waits (10s at most) for a line of path that contains every one
// of want, and returns it.
func waitLine(t *testing.T, path string, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(path)
		for line := range strings.Lines(string(data)) {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			if ok {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s, no line with %q in %s:\n%s", want, path, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// The access log from the CLI: a line per connection, SIGUSR1 after a
// rotation opens a new file, and a reload switches the format.
func TestAccessLogRotationAndReload(t *testing.T) {
	w, lbAddr := freeAddr(t), freeAddr(t)
	worker(t, "echo", w, "one", 0)
	dir := t.TempDir()
	cfg, logPath := filepath.Join(dir, "lb.yaml"), filepath.Join(dir, "access.log")
	writeLBConfig(t, cfg, lbAddr, "round_robin", 1000, w)
	base, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeWith := func(extra string) {
		if err := os.WriteFile(cfg, append(append([]byte{}, base...), extra...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeWith("access_log:\n  path: " + logPath + "\n")
	lb := start(t, nil, "lb", "-c", cfg)
	waitListening(t, lb, lbAddr)

	mustGet(t, "http://"+lbAddr+"/work")
	line := waitLine(t, logPath, "backend=b0", "backend_address="+w, "end=")
	for _, want := range []string{"listener=" + lbAddr, "client=127.0.0.1:", "bytes_out=", "ttfb_ms=", "retries=0"} {
		if !strings.Contains(line, want) {
			t.Errorf("line has no %q: %s", want, line)
		}
	}

	// Rotation: rename, SIGUSR1, and the next line goes to a new file.
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	lb.cmd.Process.Signal(syscall.SIGUSR1)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(lb.stderr.String(), "access log reopened") {
		if time.Now().After(deadline) {
			t.Fatalf("no reopen logged after SIGUSR1:\n%s", lb.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustGet(t, "http://"+lbAddr+"/work")
	waitLine(t, logPath, "backend=b0", "end=")

	// A reload to JSON: the lines after it are JSON objects.
	writeWith("access_log:\n  path: " + logPath + "\n  format: json\n")
	lb.cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(10 * time.Second)
	for strings.Count(lb.stderr.String(), "config applied") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("reload not applied:\n%s", lb.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustGet(t, "http://"+lbAddr+"/work")
	js := waitLine(t, logPath, `"backend":"b0"`)
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil || m["bytes_out"].(float64) <= 0 {
		t.Errorf("JSON line %q: %v", js, err)
	}

	// A reload whose access log cannot be opened is refused whole.
	writeWith("access_log:\n  path: " + filepath.Join(dir, "missing", "x.log") + "\n")
	lb.cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(lb.stderr.String(), "access_log.path") {
		if time.Now().After(deadline) {
			t.Fatalf("bad access_log.path not reported:\n%s", lb.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// ... and the old file, and its JSON format, stay in use.
	before := strings.Count(readFile(t, logPath), "\n")
	mustGet(t, "http://"+lbAddr+"/work")
	deadline = time.Now().Add(10 * time.Second)
	for strings.Count(readFile(t, logPath), "\n") == before {
		if time.Now().After(deadline) {
			t.Fatalf("no line in the old file after a rejected reload:\n%s", readFile(t, logPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if last := lastLine(readFile(t, logPath)); !strings.HasPrefix(last, "{") {
		t.Errorf("after a rejected reload the format changed: %s", last)
	}
	if code := lb.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// A bad access log at start: exit 2, naming the key.
func TestAccessLogBadPathAtStart(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	writeLBConfig(t, cfg, freeAddr(t), "round_robin", 1000, freeAddr(t))
	data, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(data, "access_log: {path: /nonexistent-dir/a.log, format: yaml}\n"...), 0o600)
	code, _, stderr := runLemonade(t, nil, "lb", "-c", cfg)
	if code != 2 || !strings.Contains(stderr, "access_log.path") || !strings.Contains(stderr, "access_log.format") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
}
