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

// Every internal requirement of every module names the current version and
// has a replace to its directory: the tree is what `make release` leaves.
func TestTreeIsAtCurrentVersion(t *testing.T) {
	version, err := CurrentVersion("..")
	if err != nil {
		t.Fatal(err)
	}
	mods, err := Published("..")
	if err != nil {
		t.Fatal(err)
	}
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
	version, err := CurrentVersion("..")
	if err != nil {
		t.Fatal(err)
	}
	mods, err := Published("..")
	if err != nil {
		t.Fatal(err)
	}
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
