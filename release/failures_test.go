package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTree writes files (slash-separated name → body) under a new
// temporary directory and returns it.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// A two-module workspace (a library and the installable CLI requiring it),
// which is not a git repository.
func cliTree(t *testing.T, extra map[string]string) string {
	t.Helper()
	files := map[string]string{
		"VERSION":          "v0.1.0\n",
		"go.work":          "go 1.26.0\n\nuse (\n\t./lib\n\t./lemonade\n)\n",
		"lib/go.mod":       "module example.com/r/lib\n\ngo 1.26.0\n",
		"lib/README.md":    "go get example.com/r/lib\n",
		"lemonade/go.mod":  "module example.com/r/lemonade\n\ngo 1.26.0\n\nrequire example.com/r/lib v0.1.0\n",
		"lemonade/go.sum":  "",
		"lemonade/main.go": "package main\n\nfunc main() {}\n",
	}
	for name, body := range extra {
		files[name] = body
	}
	return writeTree(t, files)
}

// Outside a git repository the commands that read git say so.
func TestCommandsNeedGit(t *testing.T) {
	root := cliTree(t, nil)
	if _, err := APIChanges(root); err == nil || !strings.Contains(err.Error(), "git tag") {
		t.Errorf("APIChanges outside git: %v; want an error naming git tag", err)
	}
	if err := run([]string{"-root", root, "apidiff"}, &strings.Builder{}); err == nil {
		t.Error("release apidiff outside git: no error")
	}
	if err := WriteProxy(root, t.TempDir(), "v0.2.0"); err == nil || !strings.Contains(err.Error(), "git ls-files") {
		t.Errorf("WriteProxy outside git: %v; want an error naming git ls-files", err)
	}
	if err := extract(root, "lib/v0.1.0", t.TempDir()); err == nil || !strings.Contains(err.Error(), "git archive lib/v0.1.0") {
		t.Errorf("extract outside git: %v; want an error naming the revision", err)
	}
}

// A release's tag whose code does not compile, or a tree that does not,
// is an error naming the module and where.
func TestAPIChangesOfBrokenCode(t *testing.T) {
	root := apiRepo(t, "v0.1.0", "func F() {}\n", "func F() { undefined() }\n")
	if _, err := APIChanges(root); err == nil || !strings.Contains(err.Error(), "in the tree") {
		t.Errorf("a tree that does not compile: %v; want an error saying it is in the tree", err)
	}
	root = apiRepo(t, "v0.1.0", "func F() { undefined() }\n", "func F() {}\n")
	if _, err := APIChanges(root); err == nil || !strings.Contains(err.Error(), "at v0.1.0") {
		t.Errorf("a release that does not compile: %v; want an error naming the release", err)
	}
}

// Bad versions, bad flags and unwritable outputs are errors, never a
// half-written release.
func TestBadInputs(t *testing.T) {
	root := cliTree(t, nil)
	if err := SetVersion(root, "0.2"); err == nil || !strings.Contains(err.Error(), "0.2") {
		t.Errorf("SetVersion(0.2): %v", err)
	}
	if err := CheckNext("v0.1.0", "latest"); err == nil || !strings.Contains(err.Error(), "latest") {
		t.Errorf("CheckNext(latest): %v", err)
	}
	if err := CheckNext("v0.2.0", "v0.1.9"); err == nil || !strings.Contains(err.Error(), "not newer") {
		t.Errorf("CheckNext(v0.1.9 after v0.2.0): %v", err)
	}
	if err := WriteProxy(root, t.TempDir(), "two"); err == nil {
		t.Error("WriteProxy(two): no error")
	}
	for _, args := range [][]string{
		{"proxy", "-bogus"}, {"devmod", "-bogus"}, {"apidiff", "-bogus"},
		{"set-version", "v0.0.1-"},
	} {
		if err := run(append([]string{"-root", root}, args...), &strings.Builder{}); err == nil {
			t.Errorf("release %v: no error", args)
		}
	}

	// The proxy's output is a file, not a directory.
	file := filepath.Join(t.TempDir(), "out")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteProxy(root, file, "v0.2.0"); err == nil || !strings.Contains(err.Error(), "example.com/r/lib") {
		t.Errorf("WriteProxy into a file: %v; want an error naming the module", err)
	}
	if _, err := DevModFile(root, "lemonade", filepath.Join(file, "x.mod")); err == nil {
		t.Error("DevModFile under a file: no error")
	}
}

// A module listed in go.work with files missing fails the command that needs
// them, naming the file.
func TestMissingModuleFiles(t *testing.T) {
	root := cliTree(t, nil)
	if err := os.Remove(filepath.Join(root, "lemonade", "go.sum")); err != nil {
		t.Fatal(err)
	}
	if _, err := DevModFile(root, "lemonade", filepath.Join(t.TempDir(), "x.mod")); err == nil || !strings.Contains(err.Error(), "go.sum") {
		t.Errorf("DevModFile without go.sum: %v", err)
	}

	// The CLI requiring itself: its go.mod cannot be made.
	root = cliTree(t, map[string]string{
		"lemonade/go.mod": "module example.com/r/lemonade\n\ngo 1.26.0\n\nrequire example.com/r/lemonade v0.1.0\n",
	})
	if _, err := DevModFile(root, "lemonade", filepath.Join(t.TempDir(), "x.mod")); err == nil || !strings.Contains(err.Error(), "requires itself") {
		t.Errorf("DevModFile of a module requiring itself: %v", err)
	}
	if err := SetVersion(root, "v0.2.0"); err == nil || !strings.Contains(err.Error(), "requires itself") {
		t.Errorf("SetVersion of a module requiring itself: %v", err)
	}

	// A published module without a README: SetVersion says which.
	root = cliTree(t, nil)
	if err := os.Remove(filepath.Join(root, "lib", "README.md")); err != nil {
		t.Fatal(err)
	}
	if err := SetVersion(root, "v0.2.0"); err == nil || !strings.Contains(err.Error(), "README.md") {
		t.Errorf("SetVersion without a README: %v", err)
	}

	// A go.work that parses as a list of modules but not as a workspace file
	// for setWorkReplaces cannot happen; a go.work removed between the two
	// reads can: setWorkReplaces reports it.
	if err := setWorkReplaces(t.TempDir(), nil, "v0.2.0"); err == nil || !strings.Contains(err.Error(), "go.work") {
		t.Errorf("setWorkReplaces without go.work: %v", err)
	}
}
