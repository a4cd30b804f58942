package configfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/viper"
)

// TestReadBadInput has one case per kind of bad file. Each error must be an
// *Error that names the file, says where (line, column) and which key when
// there is one, and wraps the sentinel a caller can test for.
func TestReadBadInput(t *testing.T) {
	cases := []struct {
		name   string // the file's name: its extension picks the format
		body   string
		target error    // errors.Is must hold; nil for syntax errors
		want   []string // substrings of the message; one starting with ":" follows the path
	}{
		{"empty.yaml", "", ErrEmpty, []string{": the file has no settings: it is empty"}},
		{"empty.json", "", ErrEmpty, []string{": the file has no settings: it is empty"}},
		{"empty.toml", "", ErrEmpty, []string{": the file has no settings: it is empty"}},
		{"blank.yaml", "\n  \n\t\n", ErrEmpty, []string{"it is empty"}},
		{"comments.yaml", "# backends:\n#   - address: 127.0.0.1:1\n", ErrEmpty, []string{": the file has no settings, only comments"}},
		{"comments.toml", "# strategy = \"round_robin\"\n", ErrEmpty, []string{"only comments"}},
		{"comments.json", "// {\"strategy\": 1}\n", nil, []string{":1:1: invalid character '/'", "(JSON has no comments)"}},
		{"null.yaml", "---\n", ErrEmpty, []string{"the document is empty"}},
		{"emptymap.yaml", "{}\n", ErrEmpty, []string{":1: the file has no settings: an empty map"}},
		{"emptyobject.json", " {}\n", ErrEmpty, []string{":1:2: the file has no settings: an empty object"}},

		{"list.yaml", "- address: 127.0.0.1:1\n- address: 127.0.0.1:2\n", ErrNotMap, []string{":1: the top level must be a map of keys, not a list"}},
		{"list.json", "\n[{\"address\": \"127.0.0.1:1\"}]", ErrNotMap, []string{":2:1: the top level must be a map of keys (an object), not an array"}},
		{"scalar.yaml", "round_robin\n", ErrNotMap, []string{`not a single value ("round_robin")`}},
		{"scalar.json", `"round_robin"`, ErrNotMap, []string{"not a single value"}},

		{"dup.yaml", "strategy: a\nproxy: {}\nstrategy: b\n", ErrDuplicateKey, []string{":3:1: strategy: set twice (first on line 1)"}},
		{"dup.json", "{\"strategy\": \"a\",\n \"strategy\": \"b\"}", ErrDuplicateKey, []string{":2: strategy: set twice (first on line 1)"}},
		{"dup.toml", "strategy = \"a\"\n\nstrategy = \"b\"\n", ErrDuplicateKey, []string{":3: strategy: set twice (first on line 1)"}},
		{"case.yaml", "Strategy: a\nstrategy: b\n", ErrDuplicateKey, []string{`:2:1: strategy: set twice (first as "Strategy" on line 1; keys ignore case)`}},
		{"case.json", `{"STRATEGY": "a", "strategy": "b"}`, ErrDuplicateKey, []string{`:1: strategy: set twice (first as "STRATEGY"`}},
		{"case.toml", "Strategy = \"a\"\nstrategy = \"b\"\n", ErrDuplicateKey, []string{`:2: strategy: set twice (first as "Strategy" on line 1`}},
		{"nested.yaml", "backends:\n  - address: a:1\n  - address: b:1\n    weight: 1\n    address: c:1\n", ErrDuplicateKey, []string{":5:5: backends[1].address: set twice (first on line 3)"}},
		{"nested.json", "{\"backends\": [{\"address\": \"a:1\"},\n {\"address\": \"b:1\", \"address\": \"c:1\"}]}", ErrDuplicateKey, []string{":2: backends[1].address: set twice (first on line 2)"}},
		{"nested.toml", "[[backends]]\naddress = \"a:1\"\n[[backends]]\naddress = \"b:1\"\naddress = \"c:1\"\n", ErrDuplicateKey, []string{":5: backends[1].address: set twice (first on line 4)"}},
		{"table.toml", "[proxy]\nretries = 1\n[health]\n[proxy]\nretries = 2\n", ErrDuplicateKey, []string{":4: proxy: set twice (first on line 1)"}},
		{"tablecase.toml", "[proxy]\nretries = 1\n[Proxy]\nidle_timeout = 2\n", ErrDuplicateKey, []string{`:3: Proxy: set twice (first as "proxy" on line 1`}},
		{"inline.toml", "proxy = {retries = 1}\n[proxy]\nidle_timeout = 2\n", ErrDuplicateKey, []string{":2: proxy: set twice (first on line 1)"}},
		{"inlinedup.toml", "backends = [{address = \"a:1\", Address = \"b:1\"}]\n", ErrDuplicateKey, []string{`:1: backends[0].Address: set twice (first as "address"`}},
		{"dotted.toml", "proxy.retries = 1\nproxy.retries = 2\n", ErrDuplicateKey, []string{":2: proxy.retries: set twice (first on line 1)"}},

		{"latin1.yaml", "strategy: round_robin\nbackends:\n  - name: caf\xe9\n    address: 127.0.0.1:1\n", ErrNotText, []string{":3:14: backends[0].name: not UTF-8 text: byte 0xe9 (save the file as UTF-8)"}},
		{"latin1.json", "{\"backends\": [{\"address\": \"127.0.0.1:1\", \"name\": \"caf\xe9\"}]}", ErrNotText, []string{":1:54: backends[0].name: not UTF-8 text: byte 0xe9"}},
		{"latin1.toml", "[[backends]]\naddress = \"127.0.0.1:1\"\nname = \"caf\xe9\"\n", ErrNotText, []string{":3:12: backends[0].name: not UTF-8 text: byte 0xe9"}},
		{"inkey.yaml", "strat\xffegy: x\n", ErrNotText, []string{":1:6: strat\uFFFDegy: not UTF-8 text: byte 0xff"}},
		{"comment.yaml", "# caf\xe9\nstrategy: x\n", ErrNotText, []string{":1:6: not UTF-8 text: byte 0xe9"}},
		{"nul.yaml", "strategy: x\x00\n", ErrNotText, []string{":1:12: strategy: not UTF-8 text: control character 0x00 (is it a binary file?)"}},
		{"utf16.yaml", "\xff\xfes\x00:\x00", ErrNotText, []string{":1:1: not UTF-8 text: the file is UTF-16 (save it as UTF-8)"}},

		{"tabs.yaml", "backends:\n\t- address: 127.0.0.1:1\n", nil, []string{":2: found character that cannot start any token (a tab in the indentation: YAML indents with spaces only)"}},
		{"tabbed-key.yaml", "backends:\n  - address: 127.0.0.1:1\n\tname: x\n", nil, []string{":3: found a tab character that violates indentation (YAML indents with spaces only)"}},
		{"twodocs.yaml", "strategy: a\n---\nstrategy: b\n", nil, []string{":2: a second YAML document (after ---): a config file is one document"}},
		{"trailing.json", "{\"strategy\": \"a\"}\n{\"strategy\": \"b\"}\n", nil, []string{":2: more JSON after the top-level object"}},
		{"unclosed.json", "{\"backends\": [\n", nil, []string{":2:1: unexpected end of the JSON: an object or array is not closed"}},
		{"deep.json", "{\"a\": " + strings.Repeat("[", 1_000_000) + strings.Repeat("]", 1_000_000) + "}", nil, []string{":1:1006: a[0][0][0][0][0][0][0][0][0][0][0][0][0]...: maps and lists nested more than 1000 deep"}},
		{"deep.toml", "# [[[\nb = \"[[[\\\"[[\"\nc = '''\n[[[\n'''\na = " + strings.Repeat("[", 1_000_000) + strings.Repeat("]", 1_000_000) + "\n", nil, []string{":6:1005: maps and lists nested more than 1000 deep"}},
		{"deep.yaml", "a: " + strings.Repeat("[", 1_000_000) + strings.Repeat("]", 1_000_000) + "\n", nil, []string{"exceeded max depth"}},
		{"syntax.yaml", "backends: [\n", nil, []string{"did not find expected node content"}},
		{"syntax.toml", "[proxy\n", nil, []string{":1:7: "}},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			err := Read(viper.New(), path)
			var fe *Error
			if !errors.As(err, &fe) || fe.File != path {
				t.Fatalf("got %v, want an *Error naming %s", err, path)
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Errorf("got %v, want errors.Is %v", err, tc.target)
			}
			for _, want := range tc.want {
				if strings.HasPrefix(want, ":") {
					want = path + want // where the problem is, right after the file
				}
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "While parsing") || strings.Contains(err.Error(), ": yaml: ") || strings.Contains(err.Error(), ": toml: ") {
				t.Errorf("error %q carries a decoder's raw prefix", err)
			}
		})
	}
}

// TestReadFileKinds covers what is not a config file at all.
func TestReadFileKinds(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(10 << 20); err != nil { // 10 MiB, sparse
		t.Fatal(err)
	}
	f.Close()
	sub := filepath.Join(dir, "conf.d.yaml")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path   string
		target error
		want   string
	}{
		{big, ErrTooLarge, big + ": too large for a config file (10485760 bytes; the limit is 4194304, 4 MiB)"},
		{sub, nil, sub + ": is a directory, not a file"},
		{filepath.Join(dir, "missing.yaml"), fs.ErrNotExist, filepath.Join(dir, "missing.yaml") + ": no such file or directory"},
		{filepath.Join(big, "under-a-file.yaml"), nil, filepath.Join(big, "under-a-file.yaml") + ": not a directory"},
		{filepath.Join(dir, "lb.txt"), ErrUnsupportedFormat, filepath.Join(dir, "lb.txt") + ": unsupported config file extension"},
		{filepath.Join(dir, "lb"), ErrUnsupportedFormat, filepath.Join(dir, "lb") + ": unsupported config file extension"},
	}
	for _, tc := range cases {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			err := Read(viper.New(), tc.path)
			var fe *Error
			if !errors.As(err, &fe) || fe.File != tc.path || err.Error() != tc.want && !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got  %v\nwant %s", err, tc.want)
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Errorf("got %v, want errors.Is %v", err, tc.target)
			}
		})
	}
}

// A file of exactly MaxSize bytes is read; one byte more is not, whether it
// comes from a file or from memory.
func TestMaxSize(t *testing.T) {
	body := "name: x\n"
	pad := MaxSize - len(body)
	data := []byte(body + "#" + strings.Repeat("-", pad-2) + "\n")
	if len(data) != MaxSize {
		t.Fatalf("built %d bytes", len(data))
	}
	path := filepath.Join(t.TempDir(), "max.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	v := viper.New()
	if err := Read(v, path); err != nil || v.GetString("name") != "x" {
		t.Fatalf("a file of MaxSize bytes: %v (name %q)", err, v.GetString("name"))
	}
	if err := ReadBytes(viper.New(), "mem.yaml", "yaml", append(data, '\n')); !errors.Is(err, ErrTooLarge) || !strings.HasPrefix(err.Error(), "mem.yaml: ") {
		t.Errorf("MaxSize+1 bytes: got %v, want ErrTooLarge naming mem.yaml", err)
	}
}

// What is valid must read exactly as viper alone reads it: TOML tables
// defined in any order, arrays of tables with sub-tables, dotted keys, YAML
// merge keys, a byte order mark, a trailing empty YAML document.
func TestValidInputReadsAsViperDoes(t *testing.T) {
	for name, body := range map[string]string{
		"super-table-after.toml":   "[proxy.tls]\nx = 1\n[proxy]\ny = 2\n",
		"array-tables.toml":        "[[backends]]\naddress = \"a\"\n[backends.tls]\nx = 1\n[[backends]]\naddress = \"b\"\n[backends.tls]\nx = 2\n",
		"dotted.toml":              "proxy.retries = 1\nproxy.idle_timeout = 2\n[health]\npassive.max_fails = 1\npassive.fail_duration = 2\n",
		"inline-array.toml":        "backends = [{address = \"a\", tls = {x = 1}}, {address = \"b\", tls = {x = 1}}]\n",
		"same-key-two-tables.toml": "[proxy]\nretries = 1\n[health]\nretries = 1\n",
		"merge.yaml":               "base: &b {weight: 2, name: x}\nbackends:\n  - <<: *b\n    name: y\n",
		"bom.yaml":                 "\xef\xbb\xbfname: x\n",
		"bom.json":                 "\xef\xbb\xbf{\"name\": \"x\"}",
		"trailing-doc.yaml":        "name: x\n---\n# nothing\n",
		"ended-doc.yaml":           "name: x\n...\n",
		"crlf.yaml":                "name: x\r\nitems:\r\n  - id: 1\r\n",
		"same-key-two-maps.json":   `{"a": {"id": 1}, "b": {"id": 1}, "items": [{"id": 1}, {"id": 2}]}`,
		"unicode.yaml":             "name: caf\u00e9 \u2615\n",
	} {
		t.Run(name, func(t *testing.T) {
			format, err := Format(name)
			if err != nil {
				t.Fatal(err)
			}
			want := viper.New()
			want.SetConfigType(format)
			if err := want.ReadConfig(strings.NewReader(strings.TrimPrefix(body, "\xef\xbb\xbf"))); err != nil {
				t.Fatalf("viper alone: %v", err)
			}
			got := viper.New()
			if err := ReadBytes(got, name, format, []byte(body)); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.AllSettings(), want.AllSettings()) {
				t.Errorf("got  %v\nwant %v", got.AllSettings(), want.AllSettings())
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		err  Error
		want string
	}{
		{Error{File: "lb.yaml", Err: ErrEmpty}, "lb.yaml: the file has no settings"},
		{Error{File: "lb.yaml", Line: 3, Err: errors.New("x")}, "lb.yaml:3: x"},
		{Error{File: "lb.yaml", Line: 3, Column: 7, Key: "a.b", Err: errors.New("x")}, "lb.yaml:3:7: a.b: x"},
		{Error{File: "lb.yaml", Column: 7, Key: "a", Err: errors.New("x")}, "lb.yaml: a: x"}, // a column needs a line
		{Error{Line: 3, Key: "a", Err: errors.New("x")}, "line 3: a: x"},
		{Error{Err: errors.New("x")}, "x"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

// FuzzReadBytes checks ReadBytes against viper alone on arbitrary input in
// every format: it never panics, every error is an *Error naming the file,
// and whatever it accepts viper reads the same way.
func FuzzReadBytes(f *testing.F) {
	for _, s := range []string{
		"name: x\n", "a: 1\na: 2\n", "- 1\n", "a:\n\t- b\n", "a: 1\n---\nb: 2\n", "A: 1\na: 2\n", "base: &b {x: 1}\nc:\n  <<: *b\n  x: 2\n",
		`{"a": 1}`, `{"a": 1, "A": 2}`, `[1]`, `{"a": [{"b": 1, "b": 2}]}`, `{} {}`,
		"a = 1\n", "[t]\na = 1\n[t]\n", "[[t]]\n[t.s]\n[[t]]\n[t.s]\n", "[a.b]\n[a]\n", "a.b = 1\n[a]\n", "a = {b = 1}\na.c = 2\n",
		"", "# c\n", "x\xff", "\xff\xfe", "a: \x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, format := range []string{"yaml", "json", "toml"} {
			name := "fuzz." + format
			got := viper.New()
			err := ReadBytes(got, name, format, []byte(body))
			want := viper.New()
			want.SetConfigType(format)
			werr := want.ReadConfig(strings.NewReader(strings.TrimPrefix(body, "\xef\xbb\xbf")))
			if err != nil {
				var fe *Error
				if !errors.As(err, &fe) || fe.File != name || !strings.HasPrefix(err.Error(), name) {
					t.Fatalf("%s: error %q is not an *Error naming the file", format, err)
				}
				// YAML and TOML refuse a key set twice themselves (JSON keeps
				// the last): only one set twice in another case may be news.
				if errors.Is(err, ErrDuplicateKey) && format != "json" && werr == nil && !strings.Contains(err.Error(), "keys ignore case") {
					t.Fatalf("%s: %q: %v, yet viper reads it as %v", format, body, err, want.AllSettings())
				}
				continue
			}
			if werr != nil {
				t.Fatalf("%s: ReadBytes accepted %q, which viper rejects: %v", format, body, werr)
			}
			if g, w := fmt.Sprint(got.AllSettings()), fmt.Sprint(want.AllSettings()); g != w {
				t.Fatalf("%s: %q reads as %s, viper alone reads %s", format, body, g, w)
			}
		}
	})
}

// A map of more than maxKeys keys is garbage (no Lemonade config has more
// than a dozen), refused before the decoders, which compare every key of a
// map with every other; maxKeys keys still read.
func TestKeysPerMap(t *testing.T) {
	docs := func(n int) map[string]string {
		var y, j, tm strings.Builder
		y.WriteString("items:\n  - id: 1\n    m:\n")
		j.WriteString(`{"m": {`)
		tm.WriteString("[m]\n")
		for i := range n {
			fmt.Fprintf(&y, "      k%d: 1\n", i)
			if i > 0 {
				j.WriteString(",\n")
			}
			fmt.Fprintf(&j, `"k%d": 1`, i)
			fmt.Fprintf(&tm, "k%d = 1\n", i)
		}
		j.WriteString("}}")
		return map[string]string{"yaml": y.String(), "json": j.String(), "toml": tm.String()}
	}
	for format, body := range docs(maxKeys) {
		if err := ReadBytes(viper.New(), "ok."+format, format, []byte(body)); err != nil {
			t.Errorf("%s, %d keys: %v", format, maxKeys, err)
		}
	}
	want := map[string]string{
		"yaml": "many.yaml:1004:7: items[0].m.k1000: more than 1000 keys in one map",
		"json": "many.json:1001: m.k1000: more than 1000 keys in one map",
		"toml": "many.toml:1002: m.k1000: more than 1000 keys in one map",
	}
	for format, body := range docs(maxKeys + 1) {
		if err := ReadBytes(viper.New(), "many."+format, format, []byte(body)); err == nil || err.Error() != want[format] {
			t.Errorf("%s, %d keys: got %v, want %s", format, maxKeys+1, err, want[format])
		}
	}
}
