package main

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// Module is one module this repository publishes.
type Module struct {
	Dir  string // relative to the repository root, slash-separated: "loadbalancer"
	Path string // its module path: "github.com/lemonade-lb/lemonade/loadbalancer"
}

// Tag is the git tag that publishes m at version: Go's convention for a
// module in a subdirectory, "loadbalancer/v0.2.0".
func (m Module) Tag(version string) string { return m.Dir + "/" + version }

// unpublished are the workspace modules that are tools of this repository,
// not libraries: nobody outside depends on them, so they are never tagged.
func unpublished(dir string) bool {
	return dir == "release" || strings.HasPrefix(dir, "bench/")
}

// installable reports whether the module in dir holds a command users
// install with `go install PATH@VERSION`. Go refuses that for a module whose
// go.mod has replace lines, so such a module has none; builds without the
// workspace use a go.mod made for them instead (DevModFile).
func installable(dir string) bool { return dir == "lemonade" }

// Published lists the modules of the workspace at root (its go.work) that a
// release tags, in go.work's order.
func Published(root string) ([]Module, error) {
	all, err := workspaceModules(root)
	if err != nil {
		return nil, err
	}
	var mods []Module
	for _, m := range all {
		if !unpublished(m.Dir) {
			mods = append(mods, m)
		}
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("%s: no published module in go.work", root)
	}
	return mods, nil
}

// CheckVersion reports whether version can name a release: a canonical
// semantic version ("v0.2.0", "v1.0.0-rc.1"; no "+build" suffix), below v2,
// since a v2 would need a /v2 suffix on every module path.
func CheckVersion(version string) error {
	switch {
	case !semver.IsValid(version) || semver.Canonical(version) != version:
		return fmt.Errorf("version %q: want a semantic version such as v0.2.0", version)
	case semver.Major(version) != "v0" && semver.Major(version) != "v1":
		return fmt.Errorf("version %q: a major version above v1 needs a /%s suffix on every module path first", version, semver.Major(version))
	}
	return nil
}

// SetInternalRequires rewrites the go.mod in data (self's) so that every
// requirement on a module in mods names version. With replace, every such
// module also gets a replace line to its directory beside self's, so that
// GOWORK=off builds use the tree, not a download; without, the internal
// replace lines are dropped. Other requirements and replaces stay as they are.
func SetInternalRequires(data []byte, file string, self Module, mods []Module, version string, replace bool) ([]byte, error) {
	f, err := modfile.Parse(file, data, nil)
	if err != nil {
		return nil, err
	}
	byPath := map[string]Module{}
	for _, m := range mods {
		byPath[m.Path] = m
	}
	for _, r := range f.Require {
		m, ok := byPath[r.Mod.Path]
		if !ok {
			continue
		}
		if m.Path == self.Path {
			return nil, fmt.Errorf("%s: requires itself", file)
		}
		if err := f.AddRequire(m.Path, version); err != nil {
			return nil, err
		}
		switch {
		case !replace:
			if err := f.DropReplace(m.Path, ""); err != nil {
				return nil, err
			}
		case !hasDirReplace(f, m.Path):
			rel, err := filepath.Rel(self.Dir, m.Dir)
			if err != nil {
				return nil, err
			}
			if err := f.AddReplace(m.Path, "", filepath.ToSlash(rel), ""); err != nil {
				return nil, err
			}
		}
	}
	f.Cleanup()
	return f.Format()
}

// hasDirReplace reports whether f replaces every version of path with a directory.
func hasDirReplace(f *modfile.File, path string) bool {
	for _, r := range f.Replace {
		if r.Old.Path == path && r.Old.Version == "" && r.New.Version == "" {
			return true
		}
	}
	return false
}

// SetVersion makes version the current one in the tree at root: the VERSION
// file, and every internal requirement of every published module (the
// repository's own tools included, so that they build the same tree).
func SetVersion(root, version string) error {
	if err := CheckVersion(version); err != nil {
		return err
	}
	mods, err := Published(root)
	if err != nil {
		return err
	}
	all, err := workspaceModules(root)
	if err != nil {
		return err
	}
	for _, m := range all {
		name := filepath.Join(root, m.Dir, "go.mod")
		data, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		out, err := SetInternalRequires(data, name, m, mods, version, !installable(m.Dir))
		if err != nil {
			return err
		}
		if err := os.WriteFile(name, out, 0o644); err != nil {
			return err
		}
	}
	if err := setWorkReplaces(root, mods, version); err != nil {
		return err
	}
	for _, m := range mods {
		if err := setReadmeVersion(filepath.Join(root, m.Dir, "README.md"), version); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(root, "VERSION"), []byte(version+"\n"), 0o644)
}

// setWorkReplaces makes go.work replace every published module at version
// with its directory. The workspace needs it for the requirements of an
// installable module, which has no replace lines of its own: without it, Go
// would fetch the go.mod of, say, loadbalancer@VERSION to walk the module
// graph, and before the release no proxy has it.
func setWorkReplaces(root string, mods []Module, version string) error {
	name := filepath.Join(root, "go.work")
	data, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	work, err := modfile.ParseWork(name, data, nil)
	if err != nil {
		return err
	}
	internal := map[string]bool{}
	for _, m := range mods {
		internal[m.Path] = true
	}
	for _, r := range work.Replace {
		if internal[r.Old.Path] {
			if err := work.DropReplace(r.Old.Path, r.Old.Version); err != nil {
				return err
			}
		}
	}
	work.Cleanup()
	var b strings.Builder
	b.Write(bytes.TrimRight(modfile.Format(work.Syntax), "\n"))
	b.WriteString("\n\n// The published modules at VERSION are the tree (set by release set-version).\nreplace (\n")
	for _, m := range mods {
		fmt.Fprintf(&b, "\t%s %s => ./%s\n", m.Path, version, m.Dir)
	}
	b.WriteString(")\n")
	return os.WriteFile(name, []byte(b.String()), 0o644)
}

// workspaceModules is every module of the go.work at root, published or not.
func workspaceModules(root string) ([]Module, error) {
	name := filepath.Join(root, "go.work")
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	work, err := modfile.ParseWork(name, data, nil)
	if err != nil {
		return nil, err
	}
	var mods []Module
	for _, u := range work.Use {
		dir := path.Clean(strings.TrimPrefix(filepath.ToSlash(u.Path), "./"))
		gomod := filepath.Join(root, dir, "go.mod")
		data, err := os.ReadFile(gomod)
		if err != nil {
			return nil, err
		}
		mp := modfile.ModulePath(data)
		if mp == "" {
			return nil, fmt.Errorf("%s: no module line", gomod)
		}
		mods = append(mods, Module{Dir: dir, Path: mp})
	}
	return mods, nil
}

// CurrentVersion reads the VERSION file at root.
func CurrentVersion(root string) (string, error) {
	data, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(data))
	if err := CheckVersion(v); err != nil {
		return "", fmt.Errorf("VERSION: %w", err)
	}
	return v, nil
}

// CheckNext reports whether next may follow current: a release only moves forward.
func CheckNext(current, next string) error {
	if err := CheckVersion(next); err != nil {
		return err
	}
	if semver.Compare(next, current) <= 0 {
		return fmt.Errorf("version %s: not newer than the current %s (VERSION)", next, current)
	}
	return nil
}

// DevModFile writes to out (a path ending in .mod) the go.mod of the module
// in dir with a replace line for every internal requirement, and beside it
// the module's go.sum (out with .sum), for `go -modfile=out` builds without
// the workspace. It reports false, and writes nothing, when the module's own
// go.mod has its replace lines already.
func DevModFile(root, dir, out string) (bool, error) {
	dir = path.Clean(filepath.ToSlash(dir))
	all, err := workspaceModules(root)
	if err != nil {
		return false, err
	}
	i := slices.IndexFunc(all, func(m Module) bool { return m.Dir == dir })
	if i < 0 {
		return false, fmt.Errorf("%s: not a module of go.work", dir)
	}
	if !installable(dir) {
		return false, nil
	}
	mods, err := Published(root)
	if err != nil {
		return false, err
	}
	if !strings.HasSuffix(out, ".mod") {
		return false, fmt.Errorf("%s: a go.mod for -modfile must end in .mod", out)
	}
	name := filepath.Join(root, dir, "go.mod")
	data, err := os.ReadFile(name)
	if err != nil {
		return false, err
	}
	f, err := modfile.Parse(name, data, nil)
	if err != nil {
		return false, err
	}
	version := ""
	for _, r := range f.Require {
		if slices.ContainsFunc(mods, func(m Module) bool { return m.Path == r.Mod.Path }) {
			version = r.Mod.Version
		}
	}
	dev, err := SetInternalRequires(data, name, all[i], mods, version, true)
	if err != nil {
		return false, err
	}
	sum, err := os.ReadFile(filepath.Join(root, dir, "go.sum"))
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return false, err
	}
	if err := os.WriteFile(out, dev, 0o644); err != nil {
		return false, err
	}
	return true, os.WriteFile(strings.TrimSuffix(out, ".mod")+".sum", sum, 0o644)
}

// installLine matches a module of this repository at a version in a README:
// "github.com/lemonade-lb/lemonade/loadbalancer@v0.2.0".
var installLine = regexp.MustCompile(`(github\.com/lemonade-lb/lemonade/[a-z0-9/-]+)@v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?`)

// setReadmeVersion rewrites the versions in the go get and go install lines
// of the README at name, so that they name version.
func setReadmeVersion(name, version string) error {
	data, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	out := installLine.ReplaceAll(data, []byte("${1}@"+version))
	if bytes.Equal(out, data) {
		return nil
	}
	return os.WriteFile(name, out, 0o644)
}
