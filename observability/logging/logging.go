// Package logging builds the slog.Logger every Lemonade binary uses, from the
// two settings users give on the command line: a level and a format.
//
// Logs are meant to stay quiet at info: nothing per request or per connection
// is logged above debug.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Accepted values, in the order help texts list them.
var (
	Levels  = []string{"debug", "info", "warn", "error"}
	Formats = []string{"text", "json"}
)

// Defaults used when a setting is empty.
const (
	DefaultLevel  = "info"
	DefaultFormat = "text"
)

// ParseLevel turns "debug", "info", "warn" or "error" (any case, surrounding
// spaces ignored) into a slog.Level. Empty means DefaultLevel.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("invalid log level %q: want one of %s", s, strings.Join(Levels, ", "))
}

// ParseFormat checks a format name ("text" or "json", any case) and returns
// it in lower case. Empty means DefaultFormat.
func ParseFormat(s string) (string, error) {
	switch f := strings.ToLower(strings.TrimSpace(s)); f {
	case "text", "json":
		return f, nil
	case "":
		return DefaultFormat, nil
	}
	return "", fmt.Errorf("invalid log format %q: want one of %s", s, strings.Join(Formats, ", "))
}

// New returns a logger writing to w at the given level and format. Both
// settings are checked before anything is built, and an error names the bad
// value.
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	f, err := ParseFormat(format)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if f == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
