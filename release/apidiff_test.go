package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A tiny repository with one published module, released at base, then
// changed: APIChanges must see the change against the tag.
func apiRepo(t *testing.T, base, before, after string) string {
	t.Helper()
	root := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "tag.gpgSign=false", "-c", "commit.gpgSign=false"}, args...)...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	write("go.work", "go 1.26.0\n\nuse ./lib\n")
	write("lib/go.mod", "module example.com/r/lib\n\ngo 1.26.0\n")
	write("lib/lib.go", "// Package lib is a test.\npackage lib\n\n"+before)
	git("init", "-q")
	git("add", ".")
	git("commit", "-q", "-m", "first")
	git("tag", "lib/"+base)
	write("lib/lib.go", "// Package lib is a test.\npackage lib\n\n"+after)
	return root
}

func TestAPIChanges(t *testing.T) {
	cases := []struct {
		name, base, before, after string
		incompatible, compatible  int
		minNext                   string
	}{
		{"none", "v0.1.0", "func F() {}\n", "func F() {}\n", 0, 0, "v0.1.1"},
		{"addition", "v0.1.0", "func F() {}\n", "func F() {}\n\nfunc G() {}\n", 0, 1, "v0.2.0"},
		{"break below v1", "v0.1.0", "func F() {}\n", "func F(int) {}\n", 1, 0, "v0.2.0"},
		{"break at v1", "v1.2.3", "func F() {}\n", "func F(int) {}\n", 1, 0, "v2.0.0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := apiRepo(t, c.base, c.before, c.after)
			changes, err := APIChanges(root)
			if err != nil {
				t.Fatal(err)
			}
			if len(changes) != 1 {
				t.Fatalf("%d modules", len(changes))
			}
			ch := changes[0]
			if ch.Base != c.base || len(ch.Incompatible) != c.incompatible || len(ch.Compatible) != c.compatible || ch.MinNext() != c.minNext {
				t.Fatalf("got base %s, incompatible %q, compatible %q, next %s; want %s, %d, %d, %s",
					ch.Base, ch.Incompatible, ch.Compatible, ch.MinNext(), c.base, c.incompatible, c.compatible, c.minNext)
			}
			var out strings.Builder
			err = ReportAPI(&out, changes, "")
			if broke := c.incompatible > 0 && c.base >= "v1"; (err != nil) != broke {
				t.Errorf("ReportAPI without a next version = %v; want an error: %v\n%s", err, broke, out.String())
			}
			if err := ReportAPI(&out, changes, c.minNext); err != nil && c.base < "v1" {
				t.Errorf("ReportAPI at %s = %v", c.minNext, err)
			}
			if c.minNext != "v0.1.1" {
				if err := ReportAPI(&out, changes, "v0.1.1"); err == nil || !strings.Contains(err.Error(), "release at least "+c.minNext) {
					t.Errorf("ReportAPI at v0.1.1 = %v; want it refused, naming %s", err, c.minNext)
				}
			}
		})
	}
}
