package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// fencedBlocks returns the bodies of the ```lang blocks of a Markdown file.
func fencedBlocks(t *testing.T, path, lang string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)```" + lang + "\n(.*?)```")
	var blocks []string
	for _, m := range re.FindAllStringSubmatch(string(data), -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// Examples that rot are bugs: every YAML config in the README loads.
func TestReadmeConfigExamplesLoad(t *testing.T) {
	blocks := fencedBlocks(t, "../README.md", "yaml")
	if len(blocks) == 0 {
		t.Fatal("no yaml example in README.md")
	}
	for i, b := range blocks {
		if _, err := config.Parse([]byte(b), "yaml", "README.md yaml block"); err != nil {
			t.Errorf("README.md yaml block %d: %v", i+1, err)
		}
	}
}

// Every command of the README's usage block exists with the flags it shows.
func TestReadmeUsageMatchesTheCLI(t *testing.T) {
	var usage string
	for _, b := range fencedBlocks(t, "../README.md", "text") {
		if strings.Contains(b, "lemonade worker") {
			usage = b
		}
	}
	if usage == "" {
		t.Fatal("no usage block in README.md")
	}
	flag := regexp.MustCompile(`--[a-z-]+`)
	subcommand := regexp.MustCompile(`^[a-z]+$`)
	for _, line := range strings.Split(strings.TrimSpace(usage), "\n") {
		fields := strings.Fields(line)
		cmd := []string{strings.Split(fields[1], "|")[0]}
		if len(fields) > 2 && subcommand.MatchString(fields[2]) {
			cmd = append(cmd, fields[2]) // "lemonade ctl fleet --etcd …"
		}
		code, out, _ := runLemonade(t, nil, append(cmd, "--help")...)
		if code != 0 {
			t.Errorf("lemonade %s --help: exit %d", strings.Join(cmd, " "), code)
			continue
		}
		for _, f := range flag.FindAllString(line, -1) {
			if !strings.Contains(out, f) {
				t.Errorf("README shows %s for %q, the CLI has no such flag", f, cmd)
			}
		}
	}
}

// Every test docs/reliability.md names as the evidence for a row exists, in
// the module it names: a row whose test was renamed or removed is a claim
// with nothing behind it.
func TestReliabilityRowsNameRealTests(t *testing.T) {
	data, err := os.ReadFile("../docs/reliability.md")
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile("`(Test[A-Za-z0-9_]+)`").FindAllStringSubmatch(string(data), -1)
	if len(named) < 20 {
		t.Fatalf("docs/reliability.md names %d tests; its table has more rows than that", len(named))
	}
	defined := map[string]bool{}
	re := regexp.MustCompile(`(?m)^func (Test[A-Za-z0-9_]+)\(`)
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, "_test.go") {
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range re.FindAllStringSubmatch(string(src), -1) {
				defined[m[1]] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range named {
		if !defined[m[1]] {
			t.Errorf("docs/reliability.md names %s, which no test file defines", m[1])
		}
	}
}
