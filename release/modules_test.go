package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

func TestCheckVersion(t *testing.T) {
	for _, v := range []string{"v0.1.0", "v1.2.3", "v1.0.0-rc.1"} {
		if err := CheckVersion(v); err != nil {
			t.Errorf("CheckVersion(%q) = %v", v, err)
		}
	}
	for v, want := range map[string]string{
		"0.1.0": "semantic version", "v0.1": "semantic version", "v1.0.0+meta": "semantic version",
		"v2.0.0": "/v2 suffix", "": "semantic version",
	} {
		if err := CheckVersion(v); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `"`+v+`"`) {
			t.Errorf("CheckVersion(%q) = %v; want an error quoting it and saying %q", v, err, want)
		}
	}
	if err := CheckNext("v0.2.0", "v0.2.0"); err == nil || !strings.Contains(err.Error(), "not newer") {
		t.Errorf("CheckNext(v0.2.0, v0.2.0) = %v", err)
	}
	if err := CheckNext("v0.2.0", "v0.1.9"); err == nil {
		t.Error("CheckNext(v0.2.0, v0.1.9) = nil")
	}
	if err := CheckNext("v0.2.0", "v0.10.0"); err != nil {
		t.Errorf("CheckNext(v0.2.0, v0.10.0) = %v", err)
	}
}

// The published set is the workspace minus the repository's own tools.
func TestPublished(t *testing.T) {
	mods, err := Published("..")
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{}
	for _, m := range mods {
		dirs[m.Dir] = m.Path
	}
	for _, d := range []string{"configfile", "observability", "loadbalancer", "service", "worker-gin", "lemonade"} {
		if dirs[d] != "github.com/lemonade-lb/lemonade/"+d {
			t.Errorf("module %s: published as %q", d, dirs[d])
		}
	}
	for _, d := range []string{"release", "bench/fairness", "bench/otlpsink"} {
		if _, ok := dirs[d]; ok {
			t.Errorf("%s is a tool of this repository; it must not be published", d)
		}
	}
	if got := (Module{Dir: "worker-gin"}).Tag("v0.2.0"); got != "worker-gin/v0.2.0" {
		t.Errorf("tag %q", got)
	}
}

// theTree is the repository's current version and its published modules.
func theTree(t *testing.T) (string, []Module) {
	t.Helper()
	version, err := CurrentVersion("..")
	if err != nil {
		t.Fatal(err)
	}
	mods, err := Published("..")
	if err != nil {
		t.Fatal(err)
	}
	return version, mods
}

// Every internal requirement of every module names the current version and
// has a replace to its directory: the tree is what `make release` leaves.
func TestTreeIsAtCurrentVersion(t *testing.T) {
	version, mods := theTree(t)
	all, err := workspaceModules("..")
	if err != nil {
		t.Fatal(err)
	}
	internal := map[string]bool{}
	for _, m := range mods {
		internal[m.Path] = true
	}
	for _, m := range all {
		name := filepath.Join("..", m.Dir, "go.mod")
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := modfile.Parse(name, data, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range f.Require {
			if !internal[r.Mod.Path] {
				continue
			}
			if r.Mod.Version != version {
				t.Errorf("%s requires %s %s; VERSION is %s (run: cd release && go run . set-version %s)", name, r.Mod.Path, r.Mod.Version, version, version)
			}
			switch {
			case installable(m.Dir) && hasDirReplace(f, r.Mod.Path):
				t.Errorf("%s: a replace for %s: go install %s@VERSION would refuse the module", name, r.Mod.Path, m.Path)
			case !installable(m.Dir) && !hasDirReplace(f, r.Mod.Path):
				t.Errorf("%s: no replace for %s: GOWORK=off builds would download it", name, r.Mod.Path)
			}
		}
	}
}

func TestSetInternalRequires(t *testing.T) {
	mods := []Module{{"observability", "example.com/r/observability"}, {"loadbalancer", "example.com/r/loadbalancer"}}
	in := []byte(`module example.com/r/loadbalancer

go 1.26.0

require (
	example.com/r/observability v0.0.0-00010101000000-000000000000
	github.com/spf13/viper v1.21.0
)
`)
	out, err := SetInternalRequires(in, "go.mod", mods[1], mods, "v0.3.0", true)
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse("go.mod", out, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range f.Require {
		got[r.Mod.Path] = r.Mod.Version
	}
	if got["example.com/r/observability"] != "v0.3.0" || got["github.com/spf13/viper"] != "v1.21.0" {
		t.Errorf("requires %v", got)
	}
	if len(f.Replace) != 1 || f.Replace[0].Old.Path != "example.com/r/observability" || f.Replace[0].New.Path != "../observability" {
		t.Errorf("replace %+v; want observability => ../observability\n%s", f.Replace, out)
	}
	// Idempotent: a second run changes nothing.
	again, err := SetInternalRequires(out, "go.mod", mods[1], mods, "v0.3.0", true)
	if err != nil || string(again) != string(out) {
		t.Errorf("a second run changed the file (%v):\n%s\nthen\n%s", err, out, again)
	}
	// Without replace (an installable command's go.mod), the internal one goes.
	bare, err := SetInternalRequires(out, "go.mod", mods[1], mods, "v0.3.0", false)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := modfile.Parse("go.mod", bare, nil); err != nil || len(f.Replace) != 0 || len(f.Require) != 2 {
		t.Errorf("without replace: %v\n%s", err, bare)
	}
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"bogus"}, {"set-version"}, {"proxy"}, {"check-next", "a", "b"}} {
		if err := run(args, &strings.Builder{}); err == nil {
			t.Errorf("release %v: no error", args)
		}
	}
	var out strings.Builder
	if err := run([]string{"-root", "..", "modules"}, &out); err != nil || !strings.Contains(out.String(), "loadbalancer github.com/lemonade-lb/lemonade/loadbalancer\n") {
		t.Errorf("release modules = %v:\n%s", err, out.String())
	}
}

// The CLI's GOWORK=off builds get a go.mod with the replace lines its own
// go.mod cannot have; other modules need none.
func TestDevModFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "lemonade.mod")
	wrote, err := DevModFile("..", "lemonade/", out)
	if err != nil || !wrote {
		t.Fatalf("DevModFile(lemonade) = %v, %v", wrote, err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse(out, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !hasDirReplace(f, "github.com/lemonade-lb/lemonade/loadbalancer") {
		t.Errorf("no replace for loadbalancer in\n%s", data)
	}
	if _, err := os.Stat(strings.TrimSuffix(out, ".mod") + ".sum"); err != nil {
		t.Error(err)
	}
	if wrote, err := DevModFile("..", "loadbalancer", filepath.Join(t.TempDir(), "lb.mod")); wrote || err != nil {
		t.Errorf("DevModFile(loadbalancer) = %v, %v; want nothing to do", wrote, err)
	}
	if _, err := DevModFile("..", "nope", out); err == nil {
		t.Error("DevModFile(nope): no error")
	}
}

// Each published module's README opens with how to get it, at VERSION.
func TestReadmesOpenWithInstall(t *testing.T) {
	version, mods := theTree(t)
	for _, m := range mods {
		data, err := os.ReadFile(filepath.Join("..", m.Dir, "README.md"))
		if err != nil {
			t.Error(err)
			continue
		}
		lines := strings.SplitN(string(data), "\n", 12)
		head := strings.Join(lines[:min(len(lines), 11)], "\n")
		want := "go get " + m.Path + "@" + version
		if installable(m.Dir) {
			want = "go install " + m.Path + "@" + version
		}
		if !strings.Contains(head, want) {
			t.Errorf("%s/README.md: its first lines do not say %q", m.Dir, want)
		}
	}
}

// copyTree copies what set-version reads and writes (go.work, VERSION, and
// each module's go.mod, go.sum and README.md) from the repository to a
// temporary root.
func copyTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	all, err := workspaceModules("..")
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"go.work", "VERSION"}
	for _, m := range all {
		for _, f := range []string{"go.mod", "go.sum", "README.md"} {
			names = append(names, filepath.Join(m.Dir, f))
		}
	}
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join("..", name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// set-version moves the whole tree to a version: VERSION, every internal
// require, the go.work replaces and the READMEs' install lines.
func TestSetVersion(t *testing.T) {
	root := copyTree(t)
	var out strings.Builder
	if err := run([]string{"-root", root, "set-version", "v0.5.0"}, &out); err != nil {
		t.Fatal(err)
	}
	if v, err := CurrentVersion(root); err != nil || v != "v0.5.0" {
		t.Fatalf("VERSION %q, %v", v, err)
	}
	work, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(work), "github.com/lemonade-lb/lemonade/loadbalancer v0.5.0 => ./loadbalancer\n") || strings.Count(string(work), "loadbalancer v0") != 1 {
		t.Errorf("go.work:\n%s", work)
	}
	for _, dir := range []string{"loadbalancer", "lemonade", "worker-gin", "bench/fairness"} {
		data, err := os.ReadFile(filepath.Join(root, dir, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "github.com/lemonade-lb/lemonade/observability v0.") && !strings.Contains(string(data), "github.com/lemonade-lb/lemonade/observability v0.5.0") {
			t.Errorf("%s/go.mod still requires another version:\n%s", dir, data)
		}
		if hasReplace := strings.Contains(string(data), "=> ../"); hasReplace == installable(dir) && dir != "bench/fairness" {
			t.Errorf("%s/go.mod: replace lines %v, installable %v", dir, hasReplace, installable(dir))
		}
	}
	if readme, err := os.ReadFile(filepath.Join(root, "worker-gin", "README.md")); err != nil || !strings.Contains(string(readme), "go get github.com/lemonade-lb/lemonade/worker-gin@v0.5.0") {
		t.Errorf("worker-gin/README.md: %v\n%s", err, readme)
	}
	if err := run([]string{"-root", root, "check-next", "v0.5.0"}, &out); err == nil {
		t.Error("check-next v0.5.0 at v0.5.0: no error")
	}
	if err := run([]string{"-root", root, "check-next", "v0.6.0"}, &out); err != nil {
		t.Errorf("check-next v0.6.0: %v", err)
	}
	if err := run([]string{"-root", root, "set-version", "v3.0.0"}, &out); err == nil {
		t.Error("set-version v3.0.0: no error")
	}
	out.Reset()
	mod := filepath.Join(t.TempDir(), "dev.mod")
	if err := run([]string{"-root", root, "devmod", "-module", "lemonade", "-out", mod}, &out); err != nil || out.String() != "-modfile="+mod+"\n" {
		t.Errorf("devmod: %v, %q", err, out.String())
	}
	if err := run([]string{"-root", root, "devmod", "-module", "lemonade", "-out", "x.txt"}, &out); err == nil {
		t.Error("devmod -out x.txt: no error")
	}
}

// The commands that read the real tree, through run as the Makefile calls them.
func TestRunOnTheTree(t *testing.T) {
	var out strings.Builder
	proxy := t.TempDir()
	if err := run([]string{"-root", "..", "proxy", "-out", proxy, "-version", "v0.7.0"}, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(proxy, "github.com/lemonade-lb/lemonade/service/@v/v0.7.0.zip")); err != nil {
		t.Error(err)
	}
	if err := run([]string{"-root", "..", "proxy", "-out", t.TempDir()}, &out); err != nil {
		t.Errorf("proxy at VERSION: %v", err)
	}
	if err := run([]string{"-root", "..", "apidiff"}, &out); err != nil {
		t.Errorf("apidiff: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "github.com/lemonade-lb/lemonade/loadbalancer: ") {
		t.Errorf("apidiff said nothing of loadbalancer:\n%s", out.String())
	}
	for _, args := range [][]string{{"apidiff", "-next", "nope"}, {"apidiff", "x"}, {"proxy", "-out", t.TempDir(), "-version", "v9.0.0"}, {"devmod"}, {"modules", "x"}, {"-bogus"}} {
		if err := run(append([]string{"-root", ".."}, args...), &out); err == nil {
			t.Errorf("release %v: no error", args)
		}
	}
}

// A broken tree is an error that names what is wrong, from every command.
func TestBrokenTrees(t *testing.T) {
	write := func(root, name, body string) {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	trees := map[string]func(root string){
		"no go.work":         func(string) {},
		"go.work syntax":     func(r string) { write(r, "go.work", "use (\n") },
		"use without go.mod": func(r string) { write(r, "go.work", "go 1.26.0\nuse ./a\n") },
		"no module line":     func(r string) { write(r, "go.work", "go 1.26.0\nuse ./a\n"); write(r, "a/go.mod", "go 1.26.0\n") },
		"only tools": func(r string) {
			write(r, "go.work", "go 1.26.0\nuse ./release\n")
			write(r, "release/go.mod", "module example.com/release\n")
		},
	}
	for name, build := range trees {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			build(root)
			write(root, "VERSION", "v0.1.0\n")
			if _, err := Published(root); err == nil {
				t.Error("Published: no error")
			}
			if err := SetVersion(root, "v0.2.0"); err == nil {
				t.Error("SetVersion: no error")
			}
			if err := WriteProxy(root, t.TempDir(), "v0.2.0"); err == nil {
				t.Error("WriteProxy: no error")
			}
			if _, err := APIChanges(root); err == nil {
				t.Error("APIChanges: no error")
			}
			if _, err := DevModFile(root, "lemonade", filepath.Join(t.TempDir(), "x.mod")); err == nil {
				t.Error("DevModFile: no error")
			}
		})
	}
	for body, want := range map[string]string{"": "no such file", "garbage\n": "VERSION", "v3.0.0\n": "/v3 suffix"} {
		root := t.TempDir()
		if body != "" {
			write(root, "VERSION", body)
		}
		if _, err := CurrentVersion(root); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("VERSION %q: %v; want an error saying %q", body, err, want)
		}
		if err := run([]string{"-root", root, "check-next", "v9.9.9"}, &strings.Builder{}); err == nil {
			t.Errorf("check-next with VERSION %q: no error", body)
		}
	}
	self := Module{Dir: "a", Path: "example.com/a"}
	if _, err := SetInternalRequires([]byte("module example.com/a\nrequire example.com/a v0.1.0\n"), "a/go.mod", self, []Module{self}, "v0.2.0", true); err == nil || !strings.Contains(err.Error(), "requires itself") {
		t.Errorf("a go.mod requiring itself: %v", err)
	}
	if _, err := SetInternalRequires([]byte("module (\n"), "a/go.mod", self, nil, "v0.2.0", true); err == nil || !strings.Contains(err.Error(), "a/go.mod") {
		t.Errorf("a broken go.mod: %v", err)
	}
	if next := (APIChange{}).MinNext(); next != "" {
		t.Errorf("MinNext with no release = %q", next)
	}
	if err := setReadmeVersion(filepath.Join(t.TempDir(), "README.md"), "v0.2.0"); err == nil {
		t.Error("setReadmeVersion of a missing README: no error")
	}
}
