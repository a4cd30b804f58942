// Package configfile reads configuration files the same way for every Lemonade
// binary: the format comes from the file's extension, keys the target struct
// does not declare are errors that name the key, and durations accept both
// integer milliseconds and duration strings ("250", "250ms", "5s").
package configfile

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// Formats lists the supported file extensions and the viper format of each.
var Formats = map[string]string{
	".json": "json",
	".toml": "toml",
	".yaml": "yaml",
	".yml":  "yaml",
}

// ErrUnsupportedFormat is returned for a file whose extension is not in Formats.
var ErrUnsupportedFormat = errors.New("unsupported config file extension (want .json, .toml, .yaml or .yml)")

// Format returns the viper format for path, chosen by its extension.
func Format(path string) (string, error) {
	ext := strings.ToLower(filepath.Ext(path))
	f, ok := Formats[ext]
	if !ok {
		return "", fmt.Errorf("%s: %w", path, ErrUnsupportedFormat)
	}
	return f, nil
}

// Read loads the file at path into v. Every error names the file.
func Read(v *viper.Viper, path string) error {
	format, err := Format(path)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return ReadBytes(v, path, format, data)
}

// ReadBytes loads data, in the given viper format, into v; name is used in errors.
func ReadBytes(v *viper.Viper, name, format string, data []byte) error {
	v.SetConfigType(format)
	if err := v.ReadConfig(strings.NewReader(string(data))); err != nil {
		return fmt.Errorf("config file %s: %w", name, err)
	}
	return nil
}

// Decode copies v's settings into out (a pointer to a struct with mapstructure
// tags). Keys out does not declare are rejected, all of them listed at once.
func Decode(v *viper.Viper, out any) error {
	unknown := UnknownKeys(v.AllSettings(), reflect.TypeOf(out).Elem(), "")
	if len(unknown) > 0 {
		return fmt.Errorf("unknown key(s): %s", strings.Join(unknown, ", "))
	}
	err := v.Unmarshal(out, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		DurationHook(),
		mapstructure.StringToSliceHookFunc(","),
	)))
	if err != nil {
		return cleanDecodeError(err)
	}
	return nil
}

// cleanDecodeError drops mapstructure's preamble so the message reads as
// "key: problem".
func cleanDecodeError(err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "decoding failed due to the following error(s):\n\n")
	msg = strings.ReplaceAll(msg, "\n", "; ")
	return errors.New(msg)
}

// UnknownKeys walks settings (as viper's AllSettings returns them) against the
// struct type t and returns, sorted, the dotted paths that t does not declare.
func UnknownKeys(settings map[string]any, t reflect.Type, prefix string) []string {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[strings.ToLower(name)] = f.Type
	}
	var unknown []string
	for key, val := range settings {
		path := prefix + key
		ft, ok := fields[strings.ToLower(key)]
		if !ok {
			unknown = append(unknown, strconv.Quote(path))
			continue
		}
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Duration]():
			if m, ok := val.(map[string]any); ok {
				unknown = append(unknown, UnknownKeys(m, ft, path+".")...)
			}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			if list, ok := val.([]any); ok {
				for i, item := range list {
					if m, ok := item.(map[string]any); ok {
						unknown = append(unknown, UnknownKeys(m, ft.Elem(), fmt.Sprintf("%s[%d].", path, i))...)
					}
				}
			}
		}
	}
	sort.Strings(unknown)
	return unknown
}

// ParseDuration accepts integer milliseconds ("250") or a Go duration string
// ("250ms", "5s").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return millis(ms)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want integer milliseconds or a duration like \"250ms\" or \"5s\"", s)
	}
	return d, nil
}

// maxMillis is the most milliseconds a time.Duration holds (about 292 years).
const maxMillis = math.MaxInt64 / int64(time.Millisecond)

// millis converts milliseconds to a Duration, refusing values that would
// overflow instead of silently wrapping around.
func millis(ms int64) (time.Duration, error) {
	if ms > maxMillis || ms < -maxMillis {
		return 0, fmt.Errorf("invalid duration %d: more milliseconds than a duration holds (at most %d)", ms, maxMillis)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// DurationHook decodes time.Duration fields from integer milliseconds or duration strings.
func DurationHook() mapstructure.DecodeHookFunc {
	return func(from, to reflect.Type, data any) (any, error) {
		if to != reflect.TypeFor[time.Duration]() {
			return data, nil
		}
		switch v := data.(type) {
		case string:
			return ParseDuration(v)
		case int:
			return millis(int64(v))
		case int64:
			return millis(v)
		case uint64:
			if v > math.MaxInt64 {
				return millis(math.MaxInt64)
			}
			return millis(int64(v))
		case float64:
			if v != math.Trunc(v) || math.Abs(v) > float64(maxMillis) {
				return nil, fmt.Errorf("invalid duration %v: milliseconds must be a whole number up to %d", v, maxMillis)
			}
			return millis(int64(v))
		case time.Duration:
			return v, nil
		}
		return data, nil
	}
}
