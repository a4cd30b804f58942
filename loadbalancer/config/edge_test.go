package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lemonade-lb/lemonade/configfile"
)

// writeFile writes body to name in dir and returns its path.
func writeFile(t testing.TB, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBadFiles is issue #10's list of bad input, through Load: every error
// is ErrInvalid, names the file (and the line and key where there are
// some), and still lets a caller tell what went wrong with errors.Is.
func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	dirAsFile := filepath.Join(dir, "conf.yaml")
	if err := os.Mkdir(dirAsFile, 0o700); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	garbage := make([]byte, 10<<20)
	for i := range garbage {
		garbage[i] = byte(i*7919 + i>>8) // not text, and no two lines alike
	}
	if err := os.WriteFile(big, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		path   string
		target error    // errors.Is must hold besides ErrInvalid; nil for none
		want   []string // substrings; one starting with ":" must follow the path
	}{
		{"empty", writeFile(t, dir, "empty.yaml", ""), configfile.ErrEmpty, []string{": the file has no settings: it is empty"}},
		{"a directory", dirAsFile, nil, []string{": is a directory, not a file"}},
		{"missing", filepath.Join(dir, "missing.yaml"), fs.ErrNotExist, []string{": no such file or directory"}},
		{"10 MB", big, configfile.ErrTooLarge, []string{": too large for a config file (10485760 bytes"}},
		{"only comments", writeFile(t, dir, "comments.yaml", "# strategy: round_robin\n# backends: []\n"), configfile.ErrEmpty, []string{": the file has no settings, only comments"}},
		{"tabs", writeFile(t, dir, "tabs.yaml", "backends:\n\t- address: 127.0.0.1:1\n"), nil, []string{":2: ", "YAML indents with spaces only"}},
		{"wrong extension", writeFile(t, dir, "lb.txt", twoBackends), configfile.ErrUnsupportedFormat, []string{": unsupported config file extension (want .json, .toml, .yaml or .yml)"}},
		{"top-level list", writeFile(t, dir, "list.yaml", "- address: 127.0.0.1:1\n"), configfile.ErrNotMap, []string{":1: the top level must be a map of keys, not a list"}},
		{"top-level array", writeFile(t, dir, "list.json", `[{"address": "127.0.0.1:1"}]`), configfile.ErrNotMap, []string{":1:1: the top level must be a map of keys (an object), not an array"}},
		{"non-UTF-8", writeFile(t, dir, "latin1.yaml", "backends:\n  - name: caf\xe9\n    address: 127.0.0.1:1\n"), configfile.ErrNotText, []string{":2:14: backends[0].name: not UTF-8 text: byte 0xe9"}},
		{"binary", writeFile(t, dir, "nul.toml", "strategy = \"round_robin\"\x00\n"), configfile.ErrNotText, []string{":1:25: strategy: not UTF-8 text: control character 0x00"}},

		{"duplicate YAML key", writeFile(t, dir, "dup.yaml", "strategy: round_robin\n"+twoBackends+"strategy: adaptive\n"), configfile.ErrDuplicateKey, []string{":5:1: strategy: set twice (first on line 1)"}},
		{"duplicate JSON key", writeFile(t, dir, "dup.json", "{\"strategy\": \"round_robin\",\n \"backends\": [{\"address\": \"127.0.0.1:1\"}],\n \"strategy\": \"adaptive\"}"), configfile.ErrDuplicateKey, []string{":3: strategy: set twice (first on line 1)"}},
		{"duplicate TOML key", writeFile(t, dir, "dup.toml", "strategy = \"round_robin\"\nstrategy = \"adaptive\"\n[[backends]]\naddress = \"127.0.0.1:1\"\n"), configfile.ErrDuplicateKey, []string{":2: strategy: set twice (first on line 1)"}},
		{"duplicate TOML table", writeFile(t, dir, "table.toml", "[proxy]\nretries = 0\n[[backends]]\naddress = \"127.0.0.1:1\"\n[proxy]\nidle_timeout = 5\n"), configfile.ErrDuplicateKey, []string{":5: proxy: set twice (first on line 1)"}},
		{"duplicate key in a backend", writeFile(t, dir, "dupbackend.yaml", twoBackends+"    address: 127.0.0.1:50530\n"), configfile.ErrDuplicateKey, []string{":4:5: backends[1].address: set twice (first on line 3)"}},
		{"same key in two cases", writeFile(t, dir, "case.yaml", "Strategy: round_robin\nstrategy: adaptive\n"+twoBackends), configfile.ErrDuplicateKey, []string{`:2:1: strategy: set twice (first as "Strategy" on line 1; keys ignore case)`}},
		{"second YAML document", writeFile(t, dir, "twodocs.yaml", twoBackends+"---\nstrategy: adaptive\n"), nil, []string{":4: a second YAML document"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadFile(tc.path, env(nil))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Errorf("got %v, want errors.Is %v", err, tc.target)
			}
			prefix := ErrInvalid.Error() + ": " + tc.path
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			for _, want := range tc.want {
				if strings.HasPrefix(want, ":") {
					want = tc.path + want
				}
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "While parsing") || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is a decoder's raw message", err)
			}
		})
	}
}

// thousandBackends is a config of n backends in format, each written by
// entry(i); entry(i) is a YAML, JSON or TOML backend for index i.
func thousandBackends(format string, n int, entry func(i int) string) string {
	var sb strings.Builder
	switch format {
	case "yaml":
		sb.WriteString("strategy: weighted_round_robin\nbackends:\n")
	case "json":
		sb.WriteString("{\"strategy\": \"weighted_round_robin\", \"backends\": [\n")
	case "toml":
		sb.WriteString("strategy = \"weighted_round_robin\"\n")
	}
	for i := range n {
		if format == "json" && i > 0 {
			sb.WriteString(",\n")
		}
		sb.WriteString(entry(i))
	}
	if format == "json" {
		sb.WriteString("\n]}\n")
	}
	return sb.String()
}

// backendEntry writes backend i in format, with its fields as given
// (values already quoted where they must be).
func backendEntry(format string, fields [][2]string) string {
	var sb strings.Builder
	for j, f := range fields {
		switch format {
		case "yaml":
			lead := "    "
			if j == 0 {
				lead = "  - "
			}
			fmt.Fprintf(&sb, "%s%s: %s\n", lead, f[0], f[1])
		case "json":
			if j > 0 {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, "%q: %s", f[0], f[1])
		case "toml":
			if j == 0 {
				sb.WriteString("[[backends]]\n")
			}
			fmt.Fprintf(&sb, "%s = %s\n", f[0], f[1])
		}
	}
	if format == "json" {
		return "{" + sb.String() + "}"
	}
	return sb.String()
}

// goodBackend is backend i: a unique id, name and address, and a weight.
func goodBackend(i int) [][2]string {
	return [][2]string{
		{"id", fmt.Sprint(i)},
		{"name", fmt.Sprintf("%q", fmt.Sprintf("b-%d", i))},
		{"address", fmt.Sprintf("%q", fmt.Sprintf("10.0.%d.%d:80", i/256, i%256))},
		{"weight", fmt.Sprint(1 + i%255)},
	}
}

// A thousand backends load in every format, and one bad entry among them is
// the only problem reported, named by its index.
func TestThousandBackends(t *testing.T) {
	const n, bad = 1000, 617
	dir := t.TempDir()
	for _, format := range []string{"yaml", "json", "toml"} {
		t.Run(format, func(t *testing.T) {
			doc := thousandBackends(format, n, func(i int) string { return backendEntry(format, goodBackend(i)) })
			c := mustLoad(t, writeFile(t, dir, "lb."+format, doc), nil)
			if len(c.Backends) != n || c.Backends[n-1] != (Backend{ID: n - 1, Name: "b-999", Address: "10.0.3.231:80", Weight: 1 + (n-1)%255}) {
				t.Fatalf("got %d backends, the last %+v", len(c.Backends), c.Backends[len(c.Backends)-1])
			}
		})
	}

	with := func(field, value string) func(i int) [][2]string {
		return func(i int) [][2]string {
			fields := goodBackend(i)
			for j := range fields {
				if fields[j][0] == field {
					fields[j][1] = value
					return fields
				}
			}
			return append(fields, [2]string{field, value})
		}
	}
	cases := []struct {
		name, format string
		entry        func(i int) [][2]string
		want         string // in the one problem, after "FILE: " or "FILE:LINE[:COL]: "
	}{
		{"address without port", "yaml", with("address", `"10.0.2.105"`), `backends[617].address: "10.0.2.105" is not HOST:PORT`},
		{"address of another", "json", with("address", `"10.0.0.3:80"`), `backends[617].address: "10.0.0.3:80" is also the address of backends[3]`},
		{"id of another", "toml", with("id", "12"), `backends[617].id: 12 is also the id of backends[12]`},
		{"weight zero", "yaml", with("weight", "0"), `backends[617].weight: must be 1..255, got 0`},
		{"unknown key", "json", with("wieght", "2"), `backends[617].wieght: unknown key`},
		{"address not a string", "toml", with("address", "80"), `backends[617].address: expected type 'string'`},
		{"address set twice", "yaml", func(i int) [][2]string { return append(goodBackend(i), [2]string{"address", `"10.9.9.9:80"`}) }, `backends[617].address: set twice (first on line `},
		{"address set twice", "json", func(i int) [][2]string { return append(goodBackend(i), [2]string{"Address", `"10.9.9.9:80"`}) }, `backends[617].Address: set twice (first as "address" on line `},
		{"address set twice", "toml", func(i int) [][2]string { return append(goodBackend(i), [2]string{"address", `"10.9.9.9:80"`}) }, `backends[617].address: set twice (first on line `},
	}
	for _, tc := range cases {
		t.Run(tc.format+"/"+tc.name, func(t *testing.T) {
			doc := thousandBackends(tc.format, n, func(i int) string {
				if i == bad {
					return backendEntry(tc.format, tc.entry(i))
				}
				return backendEntry(tc.format, goodBackend(i))
			})
			path := writeFile(t, dir, "bad."+tc.format, doc)
			_, err := loadFile(path, env(nil))
			if !errors.Is(err, ErrInvalid) || strings.Count(err.Error(), "backends[") != strings.Count(tc.want, "backends[") {
				t.Fatalf("want one problem, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not contain %s and %q", err, path, tc.want)
			}
		})
	}
}

// BenchmarkLoadThousandBackends is Load of a file of a thousand backends:
// what a start or a reload of a large pool costs.
func BenchmarkLoadThousandBackends(b *testing.B) {
	dir := b.TempDir()
	for _, format := range []string{"yaml", "json", "toml"} {
		doc := thousandBackends(format, 1000, func(i int) string { return backendEntry(format, goodBackend(i)) })
		path := writeFile(b, dir, "lb."+format, doc)
		b.Run(format, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				if _, err := loadFile(path, noEnv); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A file with a problem in every one of a thousand backends reports each
// once, quickly (a set, not a scan per problem), and the message lists the
// first hundred: a screenful, not megabytes.
func TestManyProblems(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, entry string
		problems    int
		first       string
	}{
		// A misspelled key is unknown, and leaves the address missing: an
		// empty one, which is also every other backend's.
		{"misspelled", "  - adress: 127.0.0.1:%d\n", 1000 + 1000 + 999, `many.yaml: backends[0].adress: unknown key`},
		// An address that does not decode is not reported again as empty.
		{"not a string", "  - address: %d\n", 1000, `many.yaml: backends[0].address: expected type 'string'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sb strings.Builder
			sb.WriteString("backends:\n")
			for i := range 1000 {
				fmt.Fprintf(&sb, tc.entry, 1+i)
			}
			_, err := loadFile(writeFile(t, dir, "many.yaml", sb.String()), env(nil))
			var verr *ValidationError
			if !errors.As(err, &verr) || len(verr.Problems) != tc.problems {
				t.Fatalf("want %d problems, got %v", tc.problems, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, fmt.Sprintf("%v: %d problems:\n\t", ErrInvalid, tc.problems)) || !strings.Contains(msg, tc.first) ||
				strings.Count(msg, "\n\t") != maxListed+1 || !strings.HasSuffix(msg, fmt.Sprintf("\n\t... and %d more", tc.problems-maxListed)) {
				t.Errorf("message:\n%s", msg)
			}
		})
	}
}

func TestReportedUnder(t *testing.T) {
	reported := map[string]bool{"backends[1]": true, "proxy.retries": true, "": true}
	for key, want := range map[string]bool{
		"backends[1]":          true,
		"backends[1].address":  true,
		"backends[10].address": false,
		"backends":             false,
		"proxy.retries":        true,
		"proxy.retries_max":    false,
		"proxy":                false,
		"":                     false, // nothing is under ""
		"strategy":             false,
	} {
		if got := reportedUnder(key, reported); got != want {
			t.Errorf("reportedUnder(%q) = %v, want %v", key, got, want)
		}
	}
}
