package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

// WriteProxy writes to out, in the GOPROXY file layout, what a release of
// the tree at root as version would publish: for every published module
// @v/list, @v/VERSION.info, .mod and .zip, with its internal requirements
// set to version. The files are the tree's as it is now, committed or not,
// minus what git ignores; no tag and no network are needed.
func WriteProxy(root, out, version string) error {
	if err := CheckVersion(version); err != nil {
		return err
	}
	mods, err := Published(root)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	for _, m := range mods {
		if err := writeModule(root, out, m, mods, version, now); err != nil {
			return fmt.Errorf("%s: %w", m.Path, err)
		}
	}
	return nil
}

func writeModule(root, out string, m Module, mods []Module, version string, at time.Time) error {
	esc, err := module.EscapePath(m.Path)
	if err != nil {
		return err
	}
	dir := filepath.Join(out, filepath.FromSlash(esc), "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	gomodName := filepath.Join(root, m.Dir, "go.mod")
	data, err := os.ReadFile(gomodName)
	if err != nil {
		return err
	}
	gomod, err := SetInternalRequires(data, gomodName, m, mods, version, !installable(m.Dir))
	if err != nil {
		return err
	}
	files, err := moduleFiles(root, m.Dir, gomod)
	if err != nil {
		return err
	}
	var zip bytes.Buffer
	if err := modzip.Create(&zip, module.Version{Path: m.Path, Version: version}, files); err != nil {
		return err
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, at})
	if err != nil {
		return err
	}
	for name, content := range map[string][]byte{
		version + ".zip":  zip.Bytes(),
		version + ".mod":  gomod,
		version + ".info": info,
		"list":            []byte(version + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// moduleFiles lists the files of the module in dir (relative to root), as
// git sees the working tree: tracked and untracked files, not ignored ones.
// go.mod is served with the content gomod. Files of modules nested inside
// are left out by modzip.Create.
func moduleFiles(root, dir string, gomod []byte) ([]modzip.File, error) {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", dir)
	cmd.Dir = root
	listing, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files %s: %w", dir, err)
	}
	var files []modzip.File
	for _, name := range strings.Split(string(listing), "\x00") {
		if name == "" {
			continue
		}
		rel := strings.TrimPrefix(name, dir+"/")
		full := filepath.Join(root, filepath.FromSlash(name))
		st, err := os.Lstat(full)
		if os.IsNotExist(err) {
			continue // deleted in the working tree, not yet in the index
		}
		if err != nil {
			return nil, err
		}
		if rel == "go.mod" {
			files = append(files, memFile{rel, gomod, st})
			continue
		}
		files = append(files, diskFile{rel, full, st})
	}
	return files, nil
}

// diskFile is a file of the tree, for modzip.Create.
type diskFile struct {
	path, full string
	info       fs.FileInfo
}

func (f diskFile) Path() string                 { return f.path }
func (f diskFile) Lstat() (fs.FileInfo, error)  { return f.info, nil }
func (f diskFile) Open() (io.ReadCloser, error) { return os.Open(f.full) }

// memFile is a file served with other content than the tree's: go.mod, with
// the release's requirements.
type memFile struct {
	path string
	data []byte
	info fs.FileInfo
}

func (f memFile) Path() string                 { return f.path }
func (f memFile) Lstat() (fs.FileInfo, error)  { return sizedInfo{f.info, int64(len(f.data))}, nil }
func (f memFile) Open() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(f.data)), nil }

// sizedInfo is a FileInfo with another size.
type sizedInfo struct {
	fs.FileInfo
	size int64
}

func (i sizedInfo) Size() int64 { return i.size }
