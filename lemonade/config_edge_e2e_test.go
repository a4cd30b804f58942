package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// badFile is one of issue #10's bad config files: its name (whose extension
// picks the format), its body, and what the error must say right after
// "FILE" (so ":3:1: ..." is a line and column, ": ..." the file as a whole).
type badFile struct {
	name, body, want string
}

// writeBadFiles writes each file in dir; a body of "<dir>" makes a directory.
func writeBadFiles(t *testing.T, dir string, files []badFile) {
	t.Helper()
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		var err error
		if f.body == "<dir>" {
			err = os.Mkdir(path, 0o700)
		} else {
			err = os.WriteFile(path, []byte(f.body), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// checkExitTwo runs lemonade with args and wants exit code 2, nothing on
// the standard output, and one error line that says want.
func checkExitTwo(t *testing.T, want string, args ...string) {
	t.Helper()
	code, stdout, stderr := runLemonade(t, nil, args...)
	if code != 2 || stdout != "" || !strings.Contains(stderr, want) {
		t.Errorf("lemonade %s: exit %d, stdout %q, stderr %q; want exit 2 and %q",
			strings.Join(args, " "), code, stdout, stderr, want)
	}
	if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("lemonade %s: stderr is not one error line:\n%s", strings.Join(args, " "), stderr)
	}
}

// garbage is n bytes that are no config file: binary, no line repeated.
func garbage(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7919 + i>>9)
	}
	return b
}

// Every bad file makes `lemonade lb --check -c FILE` exit 2 with an error
// naming the file, and where there is one the line and key; started
// without --check, the balancer does not start either.
func TestBadConfigFilesExitTwo(t *testing.T) {
	backend := "backends:\n  - address: 127.0.0.1:50510\n"
	files := []badFile{
		{"empty.yaml", "", ": the file has no settings: it is empty"},
		{"conf.yaml", "<dir>", ": is a directory, not a file"},
		{"big.yaml", string(garbage(10 << 20)), ": too large for a config file (10485760 bytes; the limit is 4194304, 4 MiB)"},
		{"dup.yaml", "strategy: round_robin\n" + backend + "strategy: adaptive\n", ":4:1: strategy: set twice (first on line 1)"},
		{"dup.json", "{\"strategy\": \"round_robin\",\n \"strategy\": \"adaptive\",\n \"backends\": [{\"address\": \"127.0.0.1:50510\"}]}", ":2: strategy: set twice (first on line 1)"},
		{"dup.toml", "[[backends]]\naddress = \"127.0.0.1:50510\"\nAddress = \"127.0.0.1:50520\"\n", `:3: backends[0].Address: set twice (first as "address" on line 2; keys ignore case)`},
		{"latin1.yaml", backend + "    name: caf\xe9\n", ":3:14: backends[0].name: not UTF-8 text: byte 0xe9 (save the file as UTF-8)"},
		{"comments.yaml", "# strategy: round_robin\n# backends:\n#   - address: 127.0.0.1:50510\n", ": the file has no settings, only comments"},
		{"tabs.yaml", "backends:\n\t- address: 127.0.0.1:50510\n", ":2: found character that cannot start any token (a tab in the indentation: YAML indents with spaces only)"},
		{"lb.txt", backend, ": unsupported config file extension (want .json, .toml, .yaml or .yml)"},
		{"list.yaml", "- address: 127.0.0.1:50510\n", ":1: the top level must be a map of keys, not a list"},
		{"list.json", `[{"address": "127.0.0.1:50510"}]`, ":1:1: the top level must be a map of keys (an object), not an array"},
		// Once a crash of the TOML decoder: a stack overflow, no recover.
		{"deep.toml", "a = " + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + "\n", ":1:1005: maps and lists nested more than 1000 deep"},
	}
	dir := t.TempDir()
	writeBadFiles(t, dir, files)
	for _, f := range files {
		t.Run(f.name, func(t *testing.T) {
			path := filepath.Join(dir, f.name)
			want := "lemonade: error: invalid load balancer configuration: " + path + f.want
			checkExitTwo(t, want, "lb", "--check", "-c", path)
			checkExitTwo(t, want, "lb", "-c", path)
		})
	}
}

// The worker reads its file with the same loader: the same bad files give
// the same messages, after "flag --config: ".
func TestBadWorkerConfigFilesExitTwo(t *testing.T) {
	files := []badFile{
		{"empty.toml", "", ": the file has no settings: it is empty"},
		{"conf.yaml", "<dir>", ": is a directory, not a file"},
		{"big.json", string(garbage(10 << 20)), ": too large for a config file"},
		{"dup.yaml", "service_name: a\nwork_delay: 5\nservice_name: b\n", ":3:1: service_name: set twice (first on line 1)"},
		{"dup.json", "{\"service_name\": \"a\", \"Service_Name\": \"b\"}", `:1: Service_Name: set twice (first as "service_name" on line 1; keys ignore case)`},
		{"dup.toml", "service_name = \"a\"\nservice_name = \"b\"\n", ":2: service_name: set twice (first on line 1)"},
		{"latin1.json", "{\"service_name\": \"caf\xe9\"}", ":1:22: service_name: not UTF-8 text: byte 0xe9"},
		{"comments.yaml", "# service_name: a\n", ": the file has no settings, only comments"},
		{"tabs.yaml", "service_name:\n\tx\n", ":2: "},
		{"worker.txt", "service_name: a\n", ": unsupported config file extension"},
		{"list.yaml", "- service_name: a\n", ":1: the top level must be a map of keys, not a list"},
	}
	dir := t.TempDir()
	writeBadFiles(t, dir, files)
	for _, f := range files {
		t.Run(f.name, func(t *testing.T) {
			path := filepath.Join(dir, f.name)
			checkExitTwo(t, "lemonade: error: flag --config: "+path+f.want, "worker", "-f", "nethttp", "-a", "127.0.0.1:0", "-c", path)
		})
	}
}

// A thousand backends pass --check; one bad entry among them is the one
// problem reported, by its index.
func TestThousandBackendsCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, bad int) string {
		var sb strings.Builder
		sb.WriteString("strategy: least_connections\nbackends:\n")
		for i := range 1000 {
			addr := fmt.Sprintf("10.1.%d.%d:8080", i/256, i%256)
			if i == bad {
				addr = "10.1.2.105" // no port
			}
			fmt.Fprintf(&sb, "  - name: b%d\n    address: %s\n", i, addr)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good.yaml", -1)
	code, stdout, stderr := runLemonade(t, nil, "lb", "--check", "-c", good)
	if code != 0 || stdout != good+": OK (1000 backends, strategy least_connections, listen 127.0.0.1:50501)\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	bad := write("bad.yaml", 617)
	checkExitTwo(t, "lemonade: error: invalid load balancer configuration: "+bad+`: backends[617].address: "10.1.2.105" is not HOST:PORT`+"\n",
		"lb", "--check", "-c", bad)
}

// A file the process may not read: exit 2, "permission denied". Root reads
// any file whatever its mode, so as root the binary runs as nobody, from a
// directory anyone may enter, against a mode-000 file there.
func TestUnreadableConfigFileExitTwo(t *testing.T) {
	dir, err := os.MkdirTemp("", "lemonade-unreadable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "lb.yaml")
	if err := os.WriteFile(path, []byte("backends:\n  - address: 127.0.0.1:50510\n"), 0); err != nil {
		t.Fatal(err)
	}
	bin := lemonadeBin
	var attr *syscall.SysProcAttr
	if os.Geteuid() == 0 {
		const nobody = 65534
		data, err := os.ReadFile(lemonadeBin) // its directory is root's alone
		if err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(dir, "lemonade")
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
		attr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	}
	var env []string
	if attr != nil && os.Getenv("GOCOVERDIR") != "" {
		// nobody may not write into the tests' GOCOVERDIR: one of its own.
		cov := filepath.Join(dir, "cover")
		if err := os.Mkdir(cov, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(cov, 0o777); err != nil { // whatever the umask
			t.Fatal(err)
		}
		env = append(os.Environ(), "GOCOVERDIR="+cov)
		defer collectCoverage(t, cov)
	}
	for _, args := range [][]string{{"lb", "--check", "-c", path}, {"worker", "-f", "gin", "-c", path}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.SysProcAttr, cmd.Env = dir, attr, env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if attr != nil && errors.Is(err, syscall.EPERM) {
			t.Skipf("running as root, and may not start a process as nobody to try a mode-000 file: %v", err)
		}
		if cmd.ProcessState == nil {
			t.Fatalf("lemonade %s: %v", strings.Join(args, " "), err)
		}
		want := "invalid load balancer configuration: " + path + ": permission denied\n"
		if args[0] == "worker" {
			want = "flag --config: " + path + ": permission denied\n"
		}
		if code := cmd.ProcessState.ExitCode(); code != 2 || stdout.Len() != 0 || stderr.String() != "lemonade: error: "+want {
			t.Errorf("lemonade %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", strings.Join(args, " "), code, stdout.String(), stderr.String(), want)
		}
	}
}
