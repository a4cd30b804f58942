package main

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
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

// SetInternalRequires rewrites the go.mod in data so that every requirement
// on a module in mods names version, and every such module has a replace
// line to its directory beside this one (so that GOWORK=off builds use the
// tree, not a download). Other requirements and replaces are left as they are.
func SetInternalRequires(data []byte, file string, self Module, mods []Module, version string) ([]byte, error) {
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
		if !hasDirReplace(f, m.Path) {
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
		out, err := SetInternalRequires(data, name, m, mods, version)
		if err != nil {
			return err
		}
		if err := os.WriteFile(name, out, 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(root, "VERSION"), []byte(version+"\n"), 0o644)
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
