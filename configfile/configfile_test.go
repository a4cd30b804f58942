package configfile

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	for _, key := range []string{"bogus: unknown key", "inner.wiat: unknown key", "items[0].idd: unknown key"} {
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
	good := map[string]time.Duration{
		"0": 0, "20": 20 * time.Millisecond, " 20 ": 20 * time.Millisecond, "20ms": 20 * time.Millisecond,
		" 5s ": 5 * time.Second, "1.5s": 1500 * time.Millisecond, "-3": -3 * time.Millisecond,
		"250us": 250 * time.Microsecond, "9223372036854": 9223372036854 * time.Millisecond,
	}
	for in, want := range good {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "20 ms", "1.5", "9223372036855", "-9223372036855", "99999999999999999999"} {
		if d, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, nil; want an error", in, d)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"0", "20", "20ms", "-1", "1.5s", "1h2m", "9223372036854", "9223372036855", "1e3", "+5", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		// An integer is exactly that many milliseconds: no silent overflow.
		if ms, perr := strconv.ParseInt(strings.TrimSpace(s), 10, 64); perr == nil && d != time.Duration(ms)*time.Millisecond {
			t.Fatalf("ParseDuration(%q) = %v; want %d ms", s, d, ms)
		}
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

// Every problem in a file is reported at once, each naming its key, and types
// are strict: no string for a number, no fraction for an integer.
func TestDecodeReportsEveryProblemStrictly(t *testing.T) {
	v := viper.New()
	if err := ReadBytes(v, "x.json", "json", []byte(`{"name":"x","bogus":1,"delay":"soon","items":[{"id":1.5},{"id":"2"}]}`)); err != nil {
		t.Fatal(err)
	}
	s := sample{Name: "default"}
	err := Decode(v, &s)
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("Decode = %v; want a *DecodeError", err)
	}
	keys := make([]string, len(de.Problems))
	for i, p := range de.Problems {
		keys[i] = p.Key
	}
	slices.Sort(keys[1:]) // unknown keys come first; the rest in mapstructure's order
	if want := []string{"bogus", "delay", "items[0].id", "items[1].id"}; !slices.Equal(keys, want) {
		t.Fatalf("problems %v (%v); want one for each of %v", keys, err, want)
	}
	for _, want := range []string{"bogus: unknown key", "soon", "want a whole number, got 1.5", "items[1].id:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// Decode keeps what out holds for the keys the file does not set.
func TestDecodeKeepsDefaults(t *testing.T) {
	v := viper.New()
	if err := ReadBytes(v, "x.yaml", "yaml", []byte("name: y\n")); err != nil {
		t.Fatal(err)
	}
	s := sample{Name: "x", Delay: time.Second}
	if err := Decode(v, &s); err != nil || s.Name != "y" || s.Delay != time.Second {
		t.Fatalf("Decode = %v, %+v; want name y and the delay kept", err, s)
	}
}
