package service

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/viper"

	"github.com/lemonade-lb/lemonade/configfile"
)

// clearEnv hides any LEMONADE_WORKER_* or LEMONADE_OTLP_* the machine running the tests has
// set: viper treats an empty variable as unset.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, name := range []string{EnvListenAddress, EnvServiceName, EnvWorkDelay, EnvOTLPEndpoint, EnvOTLPProtocol, EnvAnyOTLPEndpoint, EnvAnyOTLPProtocol} {
		t.Setenv(name, "")
	}
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaults(t *testing.T) {
	clearEnv(t)
	cfg, err := Load(Flags{})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{ListenAddress: "127.0.0.1:50200", ServiceName: "lemonade-worker", WorkDelay: 20 * time.Millisecond}
	if cfg != want || DefaultConfig() != want {
		t.Fatalf("Load() = %+v; DefaultConfig() = %+v; want %+v", cfg, DefaultConfig(), want)
	}
}

func TestLoadEveryFormat(t *testing.T) {
	clearEnv(t)
	files := map[string]string{
		"w.toml": "listen_address = \"127.0.0.1:7001\"\nservice_name = \"w\"\nwork_delay_ms = 5\n",
		"w.json": `{"listen_address":"127.0.0.1:7001","service_name":"w","work_delay":"5ms"}`,
		"w.yaml": "listen_address: 127.0.0.1:7001\nservice_name: w\nwork_delay: 5\n",
		"w.yml":  "listen_address: 127.0.0.1:7001\nservice_name: w\nwork_delay_ms: 0.005s\n",
		"W.JSON": `{"listen_address":"127.0.0.1:7001","service_name":"w","work_delay_ms":5}`,
	}
	for name, body := range files {
		t.Run(name, func(t *testing.T) {
			cfg, err := Load(Flags{Config: writeFile(t, name, body)})
			if err != nil {
				t.Fatal(err)
			}
			want := Config{ListenAddress: "127.0.0.1:7001", ServiceName: "w", WorkDelay: 5 * time.Millisecond}
			if cfg != want {
				t.Fatalf("got %+v; want %+v", cfg, want)
			}
		})
	}
}

func TestLoadPartialFileKeepsDefaults(t *testing.T) {
	clearEnv(t)
	cfg, err := Load(Flags{Config: writeFile(t, "p.yaml", "service_name: only-name\n")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServiceName != "only-name" || cfg.ListenAddress != DefaultListenAddress || cfg.WorkDelay != DefaultWorkDelay {
		t.Fatalf("got %+v", cfg)
	}
}

func TestLoadPrecedence(t *testing.T) {
	file := writeFile(t, "p.toml", "listen_address = \"127.0.0.1:1001\"\nservice_name = \"file\"\nwork_delay_ms = 1\n")
	type env struct{ addr, name, delay string }
	cases := []struct {
		name  string
		env   env
		flags Flags
		want  Config
	}{
		{"file over defaults", env{}, Flags{Config: file},
			Config{ListenAddress: "127.0.0.1:1001", ServiceName: "file", WorkDelay: 1 * time.Millisecond}},
		{"env over file", env{"127.0.0.1:2002", "env", "2"}, Flags{Config: file},
			Config{ListenAddress: "127.0.0.1:2002", ServiceName: "env", WorkDelay: 2 * time.Millisecond}},
		{"env over defaults", env{"", "env", "2s"}, Flags{},
			Config{ListenAddress: DefaultListenAddress, ServiceName: "env", WorkDelay: 2 * time.Second}},
		{"flags over env and file", env{"127.0.0.1:2002", "env", "2"},
			Flags{Config: file, Address: "127.0.0.1:3003", Name: "flag", Delay: "3"},
			Config{ListenAddress: "127.0.0.1:3003", ServiceName: "flag", WorkDelay: 3 * time.Millisecond}},
		{"each setting from its own layer", env{"", "env", ""},
			Flags{Config: file, Delay: "0"},
			Config{ListenAddress: "127.0.0.1:1001", ServiceName: "env", WorkDelay: 0}},
		{"delay 0 is valid", env{"", "", "0"}, Flags{},
			Config{ListenAddress: DefaultListenAddress, ServiceName: DefaultServiceName, WorkDelay: 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvListenAddress, tc.env.addr)
			t.Setenv(EnvServiceName, tc.env.name)
			t.Setenv(EnvWorkDelay, tc.env.delay)
			cfg, err := Load(tc.flags)
			if err != nil {
				t.Fatal(err)
			}
			if cfg != tc.want {
				t.Fatalf("got %+v; want %+v", cfg, tc.want)
			}
		})
	}
}

// TestLoadErrors checks that each bad input is an error naming the setting,
// the value as given and where it came from.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	missing := filepath.Join(dir, "missing.toml")
	cases := []struct {
		name  string
		env   map[string]string
		flags Flags
		want  []string // every one must appear in the error
	}{
		{"missing file", nil, Flags{Config: missing},
			[]string{"--config", missing, "no such file"}},
		{"unsupported extension", nil, Flags{Config: file("w.ini", "x=1")},
			[]string{"--config", "w.ini", "unsupported config file extension"}},
		{"unknown key", nil, Flags{Config: file("u.yaml", "service_name: a\nlisten_adress: x\n")},
			[]string{"u.yaml", "listen_adress: unknown key"}},
		{"syntax error", nil, Flags{Config: file("s.json", `{"service_name": `)},
			[]string{"s.json"}},
		{"both delay keys", nil, Flags{Config: file("b.toml", "work_delay = 1\nwork_delay_ms = 2\n")},
			[]string{"b.toml", "work_delay_ms", "work_delay"}},
		{"empty name in file", nil, Flags{Config: file("n.json", `{"service_name": "  "}`)},
			[]string{"service name", `"  "`, "n.json", "service_name", "empty"}},
		{"bad address in file", nil, Flags{Config: file("a.yaml", "listen_address: localhost\n")},
			[]string{"listen address", `"localhost"`, "a.yaml", "listen_address", "missing port"}},
		{"bad port in file", nil, Flags{Config: file("p.yaml", "listen_address: 127.0.0.1:http\n")},
			[]string{"listen address", `"127.0.0.1:http"`, "p.yaml", "port"}},
		{"port out of range in file", nil, Flags{Config: file("r.yaml", "listen_address: 127.0.0.1:65536\n")},
			[]string{`"127.0.0.1:65536"`, "r.yaml", "0 to 65535"}},
		{"negative delay in file", nil, Flags{Config: file("d.toml", "work_delay_ms = -5\n")},
			[]string{"work delay", "-5ms", "d.toml", "work_delay_ms", "negative"}},
		{"unparsable delay in file", nil, Flags{Config: file("e.yaml", "work_delay: soon\n")},
			[]string{`"soon"`, "e.yaml", "work_delay: invalid duration"}},
		{"fractional ms in file", nil, Flags{Config: file("f.json", `{"work_delay_ms": 2.5}`)},
			[]string{"f.json", "work_delay_ms: invalid duration 2.5", "whole number"}},
		{"overflowing delay in file", nil, Flags{Config: file("o.toml", "work_delay_ms = 9223372036854775\n")},
			[]string{"o.toml", "work_delay_ms: invalid duration 9223372036854775", "more milliseconds than a duration holds"}},
		{"delay past int64 in file", nil, Flags{Config: file("o.yaml", "work_delay_ms: 18446744073709551615\n")},
			[]string{"o.yaml", "work_delay_ms: invalid duration 18446744073709551615", "more milliseconds than a duration holds"}},
		{"delay of the wrong type in file", nil, Flags{Config: file("t.yaml", "work_delay: true\n")},
			[]string{"t.yaml", "work_delay:", "bool"}},
		{"name of the wrong type in file", nil, Flags{Config: file("l.yaml", "service_name: [a, b]\n")},
			[]string{"l.yaml", "service_name"}},
		{"bad address in env", map[string]string{EnvListenAddress: "nope"}, Flags{},
			[]string{"listen address", `"nope"`, EnvListenAddress}},
		{"blank name in env", map[string]string{EnvServiceName: " "}, Flags{},
			[]string{"service name", `" "`, EnvServiceName, "empty"}},
		{"bad delay in env", map[string]string{EnvWorkDelay: "20 ms"}, Flags{},
			[]string{"work delay", `"20 ms"`, EnvWorkDelay}},
		{"negative delay in env", map[string]string{EnvWorkDelay: "-1s"}, Flags{},
			[]string{"work delay", `"-1s"`, EnvWorkDelay, "negative"}},
		{"bad address flag", nil, Flags{Address: "127.0.0.1"},
			[]string{"listen address", `"127.0.0.1"`, "--address", "missing port"}},
		{"bad port flag", nil, Flags{Address: "127.0.0.1:-1"},
			[]string{`"127.0.0.1:-1"`, "--address", "port"}},
		{"blank name flag", nil, Flags{Name: "\t"},
			[]string{"service name", "--name", "empty"}},
		{"negative delay flag", nil, Flags{Delay: "-5"},
			[]string{"work delay", `"-5"`, "--delay", "negative"}},
		{"unparsable delay flag", nil, Flags{Delay: "fast"},
			[]string{"work delay", `"fast"`, "--delay"}},
		{"overflowing delay flag", nil, Flags{Delay: "9223372036854775807"},
			[]string{"work delay", "--delay", "more milliseconds than a duration holds"}},
		// A bad value is reported even where a higher layer overrides it:
		// it is still a mistake in the file.
		{"bad file value under a good flag", nil,
			Flags{Config: file("g.yaml", "work_delay: -1\n"), Delay: "5"},
			[]string{"g.yaml", "negative"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg, err := Load(tc.flags)
			if err == nil {
				t.Fatalf("Load(%+v) = %+v, nil; want an error", tc.flags, cfg)
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestExampleConfigs loads every config/worker-* file of the repository.
func TestExampleConfigs(t *testing.T) {
	clearEnv(t)
	paths, err := filepath.Glob("../config/worker-*")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 4 {
		t.Fatalf("found %d config/worker-* files (%v); want at least 4", len(paths), paths)
	}
	numbered := regexp.MustCompile(`^worker-(\d+)\.`)
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			cfg, err := Load(Flags{Config: p})
			if err != nil {
				t.Fatal(err)
			}
			m := numbered.FindStringSubmatch(filepath.Base(p))
			if m == nil {
				return // other example files only have to load
			}
			want := Config{ListenAddress: "127.0.0.1:505" + m[1] + "0", ServiceName: "worker-" + m[1], WorkDelay: 20 * time.Millisecond}
			if cfg != want {
				t.Errorf("got %+v; want %+v", cfg, want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	bad := []Config{
		{ListenAddress: "x", ServiceName: "a"},
		{ListenAddress: "127.0.0.1:1", ServiceName: ""},
		{ListenAddress: "127.0.0.1:1", ServiceName: "a", WorkDelay: -1},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil; want an error", c)
		}
	}
}

// FuzzLoadFlags feeds arbitrary flag values to Load: it must never panic,
// and whatever it accepts must be a usable Config.
func FuzzLoadFlags(f *testing.F) {
	f.Add("127.0.0.1:80", "w", "20")
	f.Add("", "", "")
	f.Add("[::1]:0", "name with spaces", "1s")
	f.Add(":99999", "\x00", "-0")
	f.Fuzz(func(t *testing.T, addr, name, delay string) {
		clearEnv(t)
		cfg, err := Load(Flags{Address: addr, Name: name, Delay: delay})
		if err != nil {
			return
		}
		if verr := cfg.Validate(); verr != nil {
			t.Fatalf("Load accepted %+v, which does not validate: %v", cfg, verr)
		}
		if _, err := New(cfg); err != nil {
			t.Fatalf("Load accepted %+v, which New rejects: %v", cfg, err)
		}
	})
}

// FuzzDecodeFile feeds arbitrary YAML to the file decoder.
func FuzzDecodeFile(f *testing.F) {
	f.Add("listen_address: 127.0.0.1:1\nservice_name: a\nwork_delay: 5\n")
	f.Add("work_delay_ms: 5ms\n")
	f.Add("work_delay: 1\nwork_delay_ms: 1\n")
	f.Add("work_delay: 1e300\n")
	f.Add("service_name: {a: 1}\n")
	f.Add("other: 1\n")
	f.Add("otlp_endpoint: http://c:4318/otlp\notlp_protocol: http/protobuf\n")
	f.Add("otlp_endpoint: localhost:4317\n")
	f.Fuzz(func(t *testing.T, body string) {
		v := viper.New()
		if err := configfile.ReadBytes(v, "fuzz.yaml", "yaml", []byte(body)); err != nil {
			return
		}
		cfg := DefaultConfig()
		var endpointFrom string
		if err := decodeFile(v, "fuzz.yaml", &cfg, &endpointFrom); err != nil {
			if !strings.Contains(err.Error(), "fuzz.yaml") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if verr := cfg.Validate(); verr != nil {
			t.Fatalf("decoded %+v, which does not validate: %v", cfg, verr)
		}
	})
}
