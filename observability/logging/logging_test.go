package logging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
)

func TestParseLevel(t *testing.T) {
	cases := map[string]slog.Level{
		"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn,
		"error": slog.LevelError, "": slog.LevelInfo, " DEBUG ": slog.LevelDebug, "Warn": slog.LevelWarn,
	}
	for in, want := range cases {
		got, err := ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"verbose", "warning", "1", "info2"} {
		_, err := ParseLevel(bad)
		if err == nil || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("ParseLevel(%q) error = %v; want one naming the value", bad, err)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]string{"text": "text", "JSON": "json", "": "text"} {
		got, err := ParseFormat(in)
		if err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := ParseFormat("logfmt")
	if err == nil || !strings.Contains(err.Error(), `"logfmt"`) {
		t.Errorf("ParseFormat(logfmt) error = %v; want one naming the value", err)
	}
}

func TestNewWritesAtLevelAndFormat(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want exactly one line, got %q", buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("not JSON: %q: %v", lines[0], err)
	}
	if rec["msg"] != "shown" || rec["level"] != "WARN" || rec["k"] != float64(1) {
		t.Errorf("record = %v", rec)
	}

	buf.Reset()
	log, err = New(&buf, "debug", "text")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("d")
	if !strings.Contains(buf.String(), "level=DEBUG msg=d") {
		t.Errorf("text output = %q", buf.String())
	}
}

func TestNewRejectsBadValues(t *testing.T) {
	if _, err := New(&bytes.Buffer{}, "loud", "text"); err == nil || !strings.Contains(err.Error(), `"loud"`) {
		t.Errorf("bad level error = %v", err)
	}
	if _, err := New(&bytes.Buffer{}, "info", "xml"); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("bad format error = %v", err)
	}
}

func FuzzParseLevel(f *testing.F) {
	for _, s := range []string{"debug", "INFO", " warn", "error ", "", "x", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lvl, err := ParseLevel(s)
		if err != nil {
			if !strings.Contains(err.Error(), "invalid log level") {
				t.Fatalf("unexpected error text %q", err)
			}
			return
		}
		switch lvl {
		case slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError:
		default:
			t.Fatalf("ParseLevel(%q) = %v, not one of the four levels", s, lvl)
		}
	})
}

func FuzzParseFormat(f *testing.F) {
	for _, s := range []string{"text", "JSON", "", "yaml"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseFormat(s)
		if err == nil && got != "text" && got != "json" {
			t.Fatalf("ParseFormat(%q) = %q", s, got)
		}
	})
}

func ExampleNew() {
	_, err := New(os.Stderr, "loud", "text")
	fmt.Println(err)
	// Output: invalid log level "loud": want one of debug, info, warn, error
}
