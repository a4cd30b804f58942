package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOutsideConsumers does what a user's go get does with a release: from
// a module proxy on disk that WriteProxy made of this tree, with no
// workspace, no replace and no network, it builds and runs three programs in
// a directory outside the repository, each needing only the modules it names.
func TestOutsideConsumers(t *testing.T) {
	version, err := CurrentVersion("..")
	if err != nil {
		t.Fatal(err)
	}
	proxy := filepath.Join(t.TempDir(), "proxy")
	if err := WriteProxy("..", proxy, version); err != nil {
		t.Fatal(err)
	}
	machineCache := goEnv(t, "GOMODCACHE")
	const mod = "github.com/lemonade-lb/lemonade/"
	frameworks := []string{"github.com/gin-gonic", "github.com/labstack", "github.com/gofiber", "github.com/valyala",
		"go.etcd.io", mod + "fleet"} // the fleet's etcd and gRPC are the CLI's, not the libraries'

	cases := []struct {
		name     string
		requires []string // modules the program names, got at version
		run      []string // the go command that proves it works
		want     []string // lines its output must have
		notWant  []string // module path prefixes it must not download
	}{
		{"embed", []string{mod + "loadbalancer"}, []string{"run", "."},
			[]string{"before the reload: a", "after the reload: a b", "stopped"},
			append([]string{mod + "service", mod + "worker-"}, frameworks...)},
		{"gin", []string{mod + "service", mod + "worker-gin"}, []string{"run", "."},
			[]string{`200 {"status":"ok"`, "stopped"},
			[]string{mod + "loadbalancer", mod + "worker-echo", "github.com/labstack", "github.com/gofiber", "github.com/valyala", "go.etcd.io"}},
		{"adapter", []string{mod + "service"}, []string{"test", "-count=1", "-v", "."},
			[]string{"--- PASS: TestConformance", "ok"},
			append([]string{mod + "loadbalancer", mod + "worker-"}, frameworks...)},
	}
	// A user's go command: no workspace, the proxy on disk, a module cache of its own.
	userEnv := func(cache string) []string {
		return append(os.Environ(),
			"GOWORK=off",
			"GOPROXY=file://"+proxy+",file://"+filepath.Join(machineCache, "cache", "download"),
			"GOFLAGS=-mod=mod -modcacherw -trimpath", // -trimpath: the next run hits the build cache
			"GOSUMDB=off",
			"GONOSUMDB=", "GONOSUMCHECK=", "GOPRIVATE=", "GONOPROXY=",
			"GOTOOLCHAIN=local",
			"GOMODCACHE="+cache,
		)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), c.name)
			copyDir(t, filepath.Join("testdata", "consumers", c.name), dir)
			cache := filepath.Join(t.TempDir(), "modcache")
			env := userEnv(cache)
			goCmd(t, dir, env, "mod", "init", "example.com/consumer/"+c.name)
			for _, r := range c.requires {
				goCmd(t, dir, env, "get", r+"@"+version)
			}
			out := goCmd(t, dir, env, c.run...)
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("go %s: the output lacks %q:\n%s", strings.Join(c.run, " "), w, out)
				}
			}
			downloaded := downloadedModules(t, cache)
			t.Logf("%s downloaded %d modules: %v", c.name, len(downloaded), downloaded)
			for _, bad := range c.notWant {
				for _, m := range downloaded {
					if strings.HasPrefix(m, bad) {
						t.Errorf("building %s downloaded %s: it needs only %v", c.name, m, c.requires)
					}
				}
			}
			for _, r := range c.requires {
				if !containsPrefix(downloaded, r) {
					t.Errorf("%s did not come from the module proxy (downloaded: %v)", r, downloaded)
				}
			}
		})
	}
}

// The CLI installs the way Go commands do: go install PATH@VERSION, which Go
// refuses for a module with replace lines in its go.mod.
func TestInstallCLI(t *testing.T) {
	version, err := CurrentVersion("..")
	if err != nil {
		t.Fatal(err)
	}
	proxy := filepath.Join(t.TempDir(), "proxy")
	if err := WriteProxy("..", proxy, version); err != nil {
		t.Fatal(err)
	}
	dir, bin := t.TempDir(), t.TempDir()
	env := append(os.Environ(),
		"GOWORK=off",
		"GOPROXY=file://"+proxy+",file://"+filepath.Join(goEnv(t, "GOMODCACHE"), "cache", "download"),
		"GOFLAGS=-modcacherw -trimpath", "GOSUMDB=off", "GOTOOLCHAIN=local",
		"GOMODCACHE="+filepath.Join(t.TempDir(), "modcache"),
		"GOBIN="+bin,
	)
	goCmd(t, dir, env, "install", "github.com/lemonade-lb/lemonade/lemonade@"+version)
	out, err := exec.Command(filepath.Join(bin, "lemonade"), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "lemonade "+version+" ") {
		t.Fatalf("lemonade version: %v: %q; want it to say %s", err, out, version)
	}
}

// goCmd runs the go command in dir with env and returns its output; a
// failure ends the test with that output.
func goCmd(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

func goEnv(t *testing.T, key string) string {
	t.Helper()
	out, err := exec.Command("go", "env", key).Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Fatalf("go env %s: %q, %v", key, out, err)
	}
	return string(bytes.TrimSpace(out))
}

// downloadedModules lists the module paths with anything in the download
// cache under cache: a module whose go.mod or source was fetched.
func downloadedModules(t *testing.T, cache string) []string {
	t.Helper()
	root := filepath.Join(cache, "cache", "download")
	var mods []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "@v" {
			rel, err := filepath.Rel(root, filepath.Dir(p))
			if err != nil {
				return err
			}
			mods = append(mods, filepath.ToSlash(rel))
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return mods
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if s == prefix || strings.HasPrefix(s, prefix+"/") {
			return true
		}
	}
	return false
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}
