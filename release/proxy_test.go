package main

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

// WriteProxy lays out every published module the way a GOPROXY serves it,
// at the version asked for, not the tree's. Each module's zip carries the
// repository's license: a module's zip holds only its own directory.
func TestWriteProxyLayout(t *testing.T) {
	const version = "v0.99.0"
	out := t.TempDir()
	if err := WriteProxy("..", out, version); err != nil {
		t.Fatal(err)
	}
	license, err := os.ReadFile("../LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	mods, err := Published("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		dir := filepath.Join(out, filepath.FromSlash(m.Path), "@v")
		if list, err := os.ReadFile(filepath.Join(dir, "list")); err != nil || string(list) != version+"\n" {
			t.Errorf("%s: list %q, %v", m.Path, list, err)
		}
		var info struct{ Version string }
		if data, err := os.ReadFile(filepath.Join(dir, version+".info")); err != nil || json.Unmarshal(data, &info) != nil || info.Version != version {
			t.Errorf("%s: info %+v, %v", m.Path, info, err)
		}
		data, err := os.ReadFile(filepath.Join(dir, version+".mod"))
		if err != nil {
			t.Fatal(err)
		}
		f, err := modfile.Parse("go.mod", data, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range f.Require {
			if strings.HasPrefix(r.Mod.Path, "github.com/lemonade-lb/lemonade/") && r.Mod.Version != version {
				t.Errorf("%s.mod requires %s %s; want %s", m.Path, r.Mod.Path, r.Mod.Version, version)
			}
		}
		cf, err := modzip.CheckZip(module.Version{Path: m.Path, Version: version}, filepath.Join(dir, version+".zip"))
		if err != nil {
			t.Fatalf("%s: %v", m.Path, err)
		}
		hasGoMod := false
		for _, name := range cf.Valid {
			name = strings.TrimPrefix(name, m.Path+"@"+version+"/")
			hasGoMod = hasGoMod || name == "go.mod"
			if strings.HasPrefix(name, "bin/") || strings.HasSuffix(name, ".test") {
				t.Errorf("%s: the zip holds %s, which git ignores", m.Path, name)
			}
		}
		if !hasGoMod || len(cf.Omitted) != 0 || len(cf.Invalid) != 0 {
			t.Errorf("%s: go.mod in the zip %v; omitted %v; invalid %v", m.Path, hasGoMod, cf.Omitted, cf.Invalid)
		}
		if got := zipFile(t, filepath.Join(dir, version+".zip"), m.Path+"@"+version+"/LICENSE"); !bytes.Equal(got, license) {
			t.Errorf("%s: the zip's LICENSE is not the repository's (%d bytes)", m.Path, len(got))
		}
	}
	if err := WriteProxy("..", out, "v2.0.0"); err == nil {
		t.Error("WriteProxy at v2.0.0: no error")
	}
}

// zipFile is the content of the file name in the zip archive at path, or nil.
func zipFile(t *testing.T, path, name string) []byte {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	f, err := zr.Open(name)
	if err != nil {
		return nil
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
