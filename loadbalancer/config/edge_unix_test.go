//go:build unix

package config

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// nobody is the user an unreadable file is tried as when the tests run as
// root, who reads any file whatever its mode.
const nobody = 65534

// envUnreadable, when set, makes TestUnreadableFile the child: it loads the
// file named in it and checks the error.
const envUnreadable = "LEMONADE_CONFIG_TEST_UNREADABLE"

// TestUnreadableFile loads a file of mode 000. The check is only truthful
// for a user that mode stops, so as root it runs in a copy of this test
// binary started as nobody: a mode-000 file in a directory anyone may enter
// is unreadable to nobody for real.
func TestUnreadableFile(t *testing.T) {
	if path := os.Getenv(envUnreadable); path != "" {
		checkUnreadable(t, path)
		return
	}
	dir, err := os.MkdirTemp("", "lemonade-unreadable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, dir, "lb.yaml", twoBackends)
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		checkUnreadable(t, path)
		return
	}

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "config.test") // go test's own directory is root's alone
	if err := copyFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestUnreadableFile$", "-test.count=1", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), envUnreadable+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("running as root, and may not start a process as uid %d to try a mode-000 file: %v", nobody, err)
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: TestUnreadableFile") || !strings.Contains(string(out), "as uid 65534") {
		t.Fatalf("the check as uid %d: %v\n%s", nobody, err, out)
	}
	t.Logf("checked as uid %d:\n%s", nobody, out)
}

func checkUnreadable(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() == 0 {
		t.Fatal("root reads a mode-000 file: this check means nothing as root")
	}
	_, err := loadFile(path, env(nil))
	want := ErrInvalid.Error() + ": " + path + ": permission denied"
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, fs.ErrPermission) || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	t.Logf("as uid %d: %v", os.Geteuid(), err)
}

func copyFile(dst, src string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// A named pipe with a config name is refused at once: opening it would
// wait for a writer forever.
func TestNamedPipe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lb.yaml")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	_, err := loadFile(path, env(nil))
	if want := ErrInvalid.Error() + ": " + path + ": is a named pipe, not a regular file"; err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}
