package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWorkerEveryFrameworkAnswersTheContract(t *testing.T) {
	for _, fw := range frameworkNames {
		t.Run(fw, func(t *testing.T) {
			addr := freeAddr(t)
			p := worker(t, fw, addr, "w-"+fw, 5)
			if got, want := mustGet(t, "http://"+addr+"/health"), `{"status":"ok","service":"w-`+fw+`"}`; got != want {
				t.Fatalf("/health: %s, want %s", got, want)
			}
			if got, want := mustGet(t, "http://"+addr+"/work"), `{"status":true,"service":"w-`+fw+`","duration_ms":5}`; got != want {
				t.Fatalf("/work: %s, want %s", got, want)
			}
			if code := p.signal(t, syscall.SIGTERM); code != 0 {
				t.Fatalf("exit code %d after SIGTERM, want 0", code)
			}
		})
	}
}

func TestWorkerExampleConfigsStart(t *testing.T) {
	files, _ := filepath.Glob("../config/worker-*")
	if len(files) < 4 {
		t.Fatalf("found %d example worker configs, want 4", len(files))
	}
	for i, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			// The file's own address, name and delay, except the port: a
			// free one, given through the environment (which beats the file).
			addr := freeAddr(t)
			p := start(t, []string{"LEMONADE_WORKER_LISTEN_ADDRESS=" + addr}, "worker", "-f", frameworkNames[i%len(frameworkNames)], "-c", f)
			waitListening(t, p, addr)
			body := mustGet(t, "http://"+addr+"/work")
			if !strings.Contains(body, fmt.Sprintf(`"service":"worker-%d"`, i+1)) || !strings.Contains(body, `"duration_ms":20`) {
				t.Fatalf("%s: /work answered %s", f, body)
			}
			if code := p.signal(t, syscall.SIGINT); code != 0 {
				t.Fatalf("exit code %d after SIGINT", code)
			}
		})
	}
}

func TestWorkerBadInputExitsTwoNamingIt(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("listen_address: 127.0.0.1:1\nbogus_key: 1\n"), 0o600)
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown framework", []string{"worker", "-f", "flask"}, []string{"flask", "nethttp", "gin", "echo", "fasthttp", "fiber"}},
		{"missing file", []string{"worker", "-f", "gin", "-c", "/nonexistent/w.toml"}, []string{"/nonexistent/w.toml"}},
		{"unknown key", []string{"worker", "-f", "gin", "-c", bad}, []string{bad, "bogus_key"}},
		{"bad delay", []string{"worker", "-f", "echo", "-d", "soon"}, []string{"--delay", "soon"}},
		{"bad address", []string{"worker", "-f", "echo", "-a", "nowhere"}, []string{"nowhere"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runLemonade(t, nil, c.args...)
			if code != 2 {
				t.Fatalf("exit code %d, want 2; stderr: %s", code, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not name %q: %s", w, stderr)
				}
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, out, _ := runLemonade(t, nil, "--help")
	if code != 0 || !strings.Contains(out, "load-balancer (lb)") || !strings.Contains(out, "worker (w)") || !strings.Contains(out, "demo") {
		t.Fatalf("--help: exit %d\n%s", code, out)
	}
	code, out, _ = runLemonade(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "lemonade ") || !strings.Contains(out, "commit") {
		t.Fatalf("version: exit %d: %s", code, out)
	}
}
