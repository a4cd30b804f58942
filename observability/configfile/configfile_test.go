package configfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/viper"
)

type inner struct {
	Wait time.Duration `mapstructure:"wait"`
}

type item struct {
	ID int `mapstructure:"id"`
}

type sample struct {
	Name  string        `mapstructure:"name"`
	Delay time.Duration `mapstructure:"delay"`
	Inner inner         `mapstructure:"inner"`
	Items []item        `mapstructure:"items"`
}

func write(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadDecodeEveryFormat(t *testing.T) {
	files := map[string]string{
		"a.yaml": "name: x\ndelay: 20\ninner:\n  wait: 5s\nitems:\n  - id: 1\n",
		"a.yml":  "name: x\ndelay: 20ms\ninner:\n  wait: 5000\nitems:\n  - id: 1\n",
		"a.json": `{"name":"x","delay":20,"inner":{"wait":"5s"},"items":[{"id":1}]}`,
		"a.toml": "name = \"x\"\ndelay = \"20ms\"\n[inner]\nwait = 5000\n[[items]]\nid = 1\n",
	}
	for name, body := range files {
		t.Run(name, func(t *testing.T) {
			v := viper.New()
			if err := Read(v, write(t, name, body)); err != nil {
				t.Fatal(err)
			}
			var s sample
			if err := Decode(v, &s); err != nil {
				t.Fatal(err)
			}
			if s.Name != "x" || s.Delay != 20*time.Millisecond || s.Inner.Wait != 5*time.Second || len(s.Items) != 1 || s.Items[0].ID != 1 {
				t.Fatalf("decoded %+v", s)
			}
		})
	}
}

func TestUnknownKeysAreNamed(t *testing.T) {
	v := viper.New()
	if err := Read(v, write(t, "c.yaml", "name: x\nbogus: 1\ninner:\n  wiat: 1\nitems:\n  - id: 1\n    idd: 2\n")); err != nil {
		t.Fatal(err)
	}
	var s sample
	err := Decode(v, &s)
	if err == nil {
		t.Fatal("want an error for unknown keys")
	}
	for _, key := range []string{`"bogus"`, `"inner.wiat"`, `"items[0].idd"`} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
}

func TestReadErrorsNameTheFile(t *testing.T) {
	cases := map[string]string{
		"unsupported": write(t, "c.ini", "x=1"),
		"missing":     filepath.Join(t.TempDir(), "nope.yaml"),
		"syntax":      write(t, "bad.yaml", "name: [unclosed\n"),
	}
	for name, path := range cases {
		t.Run(name, func(t *testing.T) {
			err := Read(viper.New(), path)
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v does not name %s", err, path)
			}
		})
	}
}

func TestBadDurationIsAnError(t *testing.T) {
	v := viper.New()
	if err := ReadBytes(v, "x.yaml", "yaml", []byte("delay: soon\n")); err != nil {
		t.Fatal(err)
	}
	var s sample
	err := Decode(v, &s)
	if err == nil || !strings.Contains(err.Error(), "delay") || !strings.Contains(err.Error(), "soon") {
		t.Fatalf("error %v should name the key and value", err)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "20": 20 * time.Millisecond, "20ms": 20 * time.Millisecond, " 5s ": 5 * time.Second} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseDuration("x"); err == nil {
		t.Error("want an error for x")
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"0", "20", "1h2m", "-5ms", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseDuration(s)
	})
}

// Milliseconds beyond what a time.Duration holds are errors, not a silent
// wrap-around to some other (often negative) duration.
func TestDurationOverflowIsAnError(t *testing.T) {
	if _, err := ParseDuration("9223372036855"); err == nil {
		t.Error("ParseDuration: want an error for 9223372036855 ms")
	}
	if d, err := ParseDuration("9223372036854"); err != nil || d <= 0 {
		t.Errorf("ParseDuration(9223372036854) = %v, %v; want the largest whole-millisecond duration", d, err)
	}
	for name, body := range map[string]string{
		"x.yaml": "delay: 9223372036855\n",
		"x.json": `{"delay": 1e300}`,
		"x.toml": "delay = -9223372036855\n",
	} {
		v := viper.New()
		format, _ := Format(name)
		if err := ReadBytes(v, name, format, []byte(body)); err != nil {
			t.Fatal(err)
		}
		var s sample
		if err := Decode(v, &s); err == nil || !strings.Contains(err.Error(), "delay") {
			t.Errorf("%s: got %v (delay %v), want an error naming delay", name, err, s.Delay)
		}
	}
}
