package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/exp/apidiff"
	"golang.org/x/mod/semver"
	"golang.org/x/tools/go/packages"
)

// APIChange is how one module's API moved since its last release.
type APIChange struct {
	Module       Module
	Base         string   // the last release's version; "" when there is none
	Incompatible []string // changes that can break a consumer's build
	Compatible   []string // additions
}

// MinNext is the smallest version that may follow Base with these changes:
// a breaking change needs a new major version (a new minor one below v1),
// an addition a new minor one, anything else a patch.
func (c APIChange) MinNext() string {
	if c.Base == "" {
		return ""
	}
	major, minor, patch := parseVersion(c.Base)
	switch {
	case len(c.Incompatible) > 0 && major > 0:
		return fmt.Sprintf("v%d.0.0", major+1)
	case len(c.Incompatible) > 0 || len(c.Compatible) > 0:
		return fmt.Sprintf("v%d.%d.0", major, minor+1)
	}
	return fmt.Sprintf("v%d.%d.%d", major, minor, patch+1)
}

// parseVersion splits a canonical vX.Y.Z (any pre-release ignored).
func parseVersion(v string) (major, minor, patch int) {
	core, _, _ := strings.Cut(strings.TrimPrefix(semver.Canonical(v), "v"), "-")
	fmt.Sscanf(core, "%d.%d.%d", &major, &minor, &patch)
	return major, minor, patch
}

// lastRelease is the highest version m is tagged at in the repository at
// root, or "" before its first release.
func lastRelease(root string, m Module) (string, error) {
	cmd := exec.Command("git", "tag", "--list", m.Dir+"/v*")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git tag --list: %w", err)
	}
	best := ""
	for _, tag := range strings.Fields(string(out)) {
		v := strings.TrimPrefix(tag, m.Dir+"/")
		if semver.IsValid(v) && (best == "" || semver.Compare(v, best) > 0) {
			best = v
		}
	}
	return best, nil
}

// APIChanges compares the API of every published module in the tree at
// root with its last release (its tag, read from git), as
// golang.org/x/exp/apidiff judges compatibility. Modules never released
// have no Base and no changes.
func APIChanges(root string) ([]APIChange, error) {
	mods, err := Published(root)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "lemonade-apidiff-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var changes []APIChange
	for _, m := range mods {
		base, err := lastRelease(root, m)
		if err != nil {
			return nil, err
		}
		c := APIChange{Module: m, Base: base}
		if base != "" {
			// The whole tree at the tag: the module's replace lines reach its siblings.
			old := filepath.Join(tmp, strings.ReplaceAll(m.Tag(base), "/", "_"))
			if err := extract(root, m.Tag(base), old); err != nil {
				return nil, err
			}
			oldMod, err := loadAPI(old, m, tmp)
			if err != nil {
				return nil, fmt.Errorf("%s at %s: %w", m.Path, base, err)
			}
			newMod, err := loadAPI(root, m, tmp)
			if err != nil {
				return nil, fmt.Errorf("%s in the tree: %w", m.Path, err)
			}
			for _, ch := range apidiff.ModuleChanges(oldMod, newMod).Changes {
				if ch.Compatible {
					c.Compatible = append(c.Compatible, ch.Message)
				} else {
					c.Incompatible = append(c.Incompatible, ch.Message)
				}
			}
		}
		changes = append(changes, c)
	}
	return changes, nil
}

// extract writes the repository's tree at rev into dir.
func extract(root, rev, dir string) error {
	cmd := exec.Command("git", "archive", "--format=tar", rev)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("git archive %s: %w: %s", rev, err, stderr.Bytes())
	}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(name, filepath.Clean(dir)+string(filepath.Separator)) {
			return fmt.Errorf("git archive %s: %q is outside the tree", rev, h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(name, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				return err
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			if err := os.WriteFile(name, data, 0o644); err != nil {
				return err
			}
		}
	}
}

// loadAPI type-checks the importable packages of module m in the tree at
// root (not package main, which no one imports), on its own: no workspace;
// a module without replace lines through the go.mod DevModFile makes, in tmp.
func loadAPI(root string, m Module, tmp string) (*apidiff.Module, error) {
	flags := "-mod=mod"
	devmod, err := os.CreateTemp(tmp, "*.mod")
	if err != nil {
		return nil, err
	}
	devmod.Close()
	if wrote, err := DevModFile(root, m.Dir, devmod.Name()); err != nil {
		return nil, err
	} else if wrote {
		flags += " -modfile=" + devmod.Name()
	}
	cfg := &packages.Config{
		Mode: packages.NeedName | packages.NeedTypes | packages.NeedImports | packages.NeedDeps,
		Dir:  filepath.Join(root, m.Dir),
		Env:  append(os.Environ(), "GOWORK=off", "GOFLAGS="+flags),
	}
	pkgs, err := packages.Load(cfg, "./...")
	if err != nil {
		return nil, err
	}
	mod := &apidiff.Module{Path: m.Path}
	for _, p := range pkgs {
		if len(p.Errors) > 0 {
			return nil, fmt.Errorf("%s: %v", p.PkgPath, p.Errors[0])
		}
		if p.Name == "main" || p.Types == nil {
			continue
		}
		mod.Packages = append(mod.Packages, p.Types)
	}
	return mod, nil
}

// ReportAPI writes changes to w and returns an error if next (a version
// about to be released; "" when none) is too small for them, or if a module
// at v1 or above breaks its API at all, which Go's rules allow only with a
// new module path.
func ReportAPI(w io.Writer, changes []APIChange, next string) error {
	var problems []string
	for _, c := range changes {
		if c.Base == "" {
			fmt.Fprintf(w, "%s: no release yet, nothing to compare with\n", c.Module.Path)
			continue
		}
		fmt.Fprintf(w, "%s: since %s: %d incompatible, %d compatible changes; the next release must be at least %s\n",
			c.Module.Path, c.Base, len(c.Incompatible), len(c.Compatible), c.MinNext())
		for _, msg := range c.Incompatible {
			fmt.Fprintf(w, "\tincompatible: %s\n", msg)
		}
		for _, msg := range c.Compatible {
			fmt.Fprintf(w, "\tcompatible: %s\n", msg)
		}
		if next != "" && semver.Compare(next, c.MinNext()) < 0 {
			problems = append(problems, fmt.Sprintf("%s: %s is too small for its changes since %s; release at least %s", c.Module.Path, next, c.Base, c.MinNext()))
		}
		if len(c.Incompatible) > 0 && semver.Major(c.Base) != "v0" {
			problems = append(problems, fmt.Sprintf("%s: %d incompatible changes since %s: a %s module may not break its API", c.Module.Path, len(c.Incompatible), c.Base, semver.Major(c.Base)))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}
