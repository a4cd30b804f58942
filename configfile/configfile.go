// Package configfile reads configuration files the same way for every Lemonade
// binary: the format comes from the file's extension, keys the target struct
// does not declare are errors that name the key, and durations accept both
// integer milliseconds and duration strings ("250", "250ms", "5s").
//
// A file must be a regular file of UTF-8 text, at most MaxSize bytes, whose
// top level is a map of at least one key, with no key set twice. A file that
// is not is an *Error naming the file, and the line, column and key where
// they are known: "lb.yaml:7:3: backends[1].address: set twice (first on
// line 5)".
package configfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
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

// MaxSize is the largest config file Read and ReadBytes accept: a thousand
// backends take well under 100 KiB, so a bigger file is almost surely the
// wrong file, and reading it whole would cost memory for nothing.
const MaxSize = 4 << 20

// Errors that Read and ReadBytes wrap in an *Error; test for them with errors.Is.
var (
	// ErrUnsupportedFormat is returned for a file whose extension is not in Formats.
	ErrUnsupportedFormat = errors.New("unsupported config file extension (want .json, .toml, .yaml or .yml)")
	// ErrTooLarge is returned for a file of more than MaxSize bytes.
	ErrTooLarge = errors.New("too large for a config file")
	// ErrNotText is returned for a file that is not UTF-8 text: a binary
	// file, or text in another encoding.
	ErrNotText = errors.New("not UTF-8 text")
	// ErrEmpty is returned for a file that sets nothing: empty, only
	// comments, or an empty map. It is almost always a mistake (a file
	// truncated mid-write, the wrong file), never a way to ask for defaults.
	ErrEmpty = errors.New("the file has no settings")
	// ErrNotMap is returned when the top level is a list or a single value:
	// a config file is a map of keys.
	ErrNotMap = errors.New("the top level must be a map of keys")
	// ErrDuplicateKey is returned for a key set twice in one map. Keys
	// ignore case, as viper's do: "Strategy" and "strategy" are one key.
	ErrDuplicateKey = errors.New("set twice")
)

// Error is a problem with a config file: with the file as a whole, or at a
// line and a key in it. It reads "FILE:LINE:COLUMN: KEY: problem", leaving
// out what is not known, so that editors and terminals can jump to it.
type Error struct {
	File   string // the file's path, or the name that stands for it; may be ""
	Line   int    // 1-based; 0 when not known
	Column int    // 1-based, in characters; 0 when not known
	Key    string // dotted path such as "backends[3].address"; "" when none
	Err    error  // what is wrong
}

// Error reads "FILE:LINE:COLUMN: KEY: problem", leaving out what is not known.
func (e *Error) Error() string {
	where := e.File
	switch {
	case e.Line > 0 && where == "":
		where = "line " + strconv.Itoa(e.Line)
	case e.Line > 0:
		where += ":" + strconv.Itoa(e.Line)
		if e.Column > 0 {
			where += ":" + strconv.Itoa(e.Column)
		}
	}
	var parts []string
	for _, s := range []string{where, e.Key, e.Err.Error()} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, ": ")
}

// Unwrap returns what is wrong, for errors.Is (ErrDuplicateKey,
// fs.ErrNotExist, fs.ErrPermission...).
func (e *Error) Unwrap() error { return e.Err }

// Format returns the viper format for path, chosen by its extension.
func Format(path string) (string, error) {
	ext := strings.ToLower(filepath.Ext(path))
	f, ok := Formats[ext]
	if !ok {
		return "", &Error{File: path, Err: ErrUnsupportedFormat}
	}
	return f, nil
}

// Read loads the file at path into v, a new viper. Every error is an *Error
// that names the file, and the line and key where there are some: see
// ReadBytes. The file must be a regular file of at most MaxSize bytes.
func Read(v *viper.Viper, path string) error {
	format, err := Format(path)
	if err != nil {
		return err
	}
	data, err := readFile(path)
	if err != nil {
		return err
	}
	return ReadBytes(v, path, format, data)
}

// readFile reads a config file whole, refusing what is not a regular file
// (opening a named pipe would block; a device may never end) and what is
// larger than MaxSize.
func readFile(path string) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		// The path is in the *Error already: keep the reason only.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &Error{File: path, Err: err}
	}
	st, err := os.Stat(path)
	if err != nil {
		return fail(err)
	}
	if err := checkFileInfo(st); err != nil {
		return fail(err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	// Stat again what was opened: the path may have been replaced meanwhile.
	if st, err = f.Stat(); err != nil {
		return fail(err)
	}
	if err := checkFileInfo(st); err != nil {
		return fail(err)
	}
	// Read one byte past the limit to notice a file that grew meanwhile.
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return fail(err)
	}
	if len(data) > MaxSize {
		return fail(tooLarge(-1)) // it grew while being read: size unknown
	}
	return data, nil
}

// checkFileInfo says what is wrong with a file to read as a config file.
func checkFileInfo(st fs.FileInfo) error {
	switch mode := st.Mode(); {
	case mode.IsDir():
		return errors.New("is a directory, not a file")
	case !mode.IsRegular():
		kind := "special file"
		switch {
		case mode&fs.ModeNamedPipe != 0:
			kind = "named pipe"
		case mode&fs.ModeSocket != 0:
			kind = "socket"
		case mode&fs.ModeDevice != 0:
			kind = "device"
		}
		return fmt.Errorf("is a %s, not a regular file", kind)
	case st.Size() > MaxSize:
		return tooLarge(st.Size())
	}
	return nil
}

// tooLarge is ErrTooLarge for a file of size bytes (-1 if not known).
func tooLarge(size int64) error {
	if size >= 0 {
		return fmt.Errorf("%w (%d bytes; the limit is %d, %d MiB)", ErrTooLarge, size, MaxSize, MaxSize>>20)
	}
	return fmt.Errorf("%w (more than %d bytes, %d MiB)", ErrTooLarge, MaxSize, MaxSize>>20)
}

// ReadBytes loads data, in the given viper format, into v, a new viper; name
// stands for the file in errors. It is stricter than viper alone: data must
// be UTF-8 text of at most MaxSize bytes whose top level is a map with at
// least one key, no key may be set twice in one map (ignoring case, as viper
// does), and a YAML file holds one document. Every error is an *Error naming
// name, with the line, column and key where they are known.
func ReadBytes(v *viper.Viper, name, format string, data []byte) error {
	if len(data) > MaxSize {
		return &Error{File: name, Err: tooLarge(int64(len(data)))}
	}
	return read(v, name, format, data)
}

// Decode copies v's settings into out, a pointer to a struct with
// mapstructure tags, and reports every key it could not decode at once: keys
// out does not declare, then values of the wrong type. It is strict, the same
// for every Lemonade binary: no "true" for a number, no 1.5 for an integer,
// and durations are integer milliseconds or duration strings (ParseDuration).
// Fields out already holds stay unless the file sets them, so defaults can be
// laid down first. Any error is a *DecodeError.
func Decode(v *viper.Viper, out any) error {
	var ps []Problem
	for _, key := range unknownKeys(v.AllSettings(), reflect.TypeOf(out).Elem(), "") {
		ps = append(ps, Problem{Key: key, Msg: "unknown key"})
	}
	err := v.Unmarshal(out,
		viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(durationHook(), wholeNumberHook)),
		func(dc *mapstructure.DecoderConfig) { dc.WeaklyTypedInput = false },
	)
	ps = append(ps, flatten(err)...)
	if len(ps) > 0 {
		return &DecodeError{Problems: ps}
	}
	return nil
}

// Problem is one key Decode could not decode.
type Problem struct {
	Key string // dotted path such as "backends[3].weight"; "" when not known
	Msg string // what is wrong
}

// String reads "KEY: problem", or the problem alone when the key is not known.
func (p Problem) String() string {
	if p.Key == "" {
		return p.Msg
	}
	return p.Key + ": " + p.Msg
}

// DecodeError lists every problem Decode found, unknown keys first.
type DecodeError struct {
	Problems []Problem
}

// Error lists the problems, separated by "; ".
func (e *DecodeError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return strings.Join(parts, "; ")
}

// wholeNumberHook rejects numbers an int field cannot hold exactly, which
// mapstructure would otherwise truncate (JSON numbers arrive as float64).
func wholeNumberHook(_, to reflect.Type, data any) (any, error) {
	if to.Kind() != reflect.Int {
		return data, nil
	}
	switch n := data.(type) {
	case float64:
		if n != math.Trunc(n) || n < math.MinInt64 || n >= math.MaxInt64 {
			return nil, fmt.Errorf("want a whole number, got %v", n)
		}
	case uint64:
		if n > math.MaxInt64 {
			return nil, fmt.Errorf("%v is too large", n)
		}
	}
	return data, nil
}

// flatten lists one problem per field in a mapstructure error.
func flatten(err error) []Problem {
	switch e := err.(type) {
	case nil:
		return nil
	case interface{ Unwrap() []error }:
		var ps []Problem
		for _, inner := range e.Unwrap() {
			ps = append(ps, flatten(inner)...)
		}
		return ps
	case *mapstructure.DecodeError:
		if _, joined := e.Unwrap().(interface{ Unwrap() []error }); joined {
			return flatten(e.Unwrap())
		}
		msg := e.Unwrap().Error()
		var wrongType *mapstructure.UnconvertibleTypeError
		if errors.As(e, &wrongType) {
			msg += fmt.Sprintf(" (%v)", wrongType.Value)
		}
		return []Problem{{Key: e.Name(), Msg: msg}}
	}
	// mapstructure wraps its list of errors in one "decoding failed" error.
	if inner := errors.Unwrap(err); inner != nil {
		return flatten(inner)
	}
	return []Problem{{Msg: err.Error()}}
}

// unknownKeys walks settings (as viper's AllSettings returns them) against the
// struct type t and returns, sorted, the dotted paths that t does not declare.
func unknownKeys(settings map[string]any, t reflect.Type, prefix string) []string {
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
			unknown = append(unknown, path)
			continue
		}
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Duration]():
			if m, ok := val.(map[string]any); ok {
				unknown = append(unknown, unknownKeys(m, ft, path+".")...)
			}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			if list, ok := val.([]any); ok {
				for i, item := range list {
					if m, ok := item.(map[string]any); ok {
						unknown = append(unknown, unknownKeys(m, ft.Elem(), fmt.Sprintf("%s[%d].", path, i))...)
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

// durationHook decodes time.Duration fields from integer milliseconds or duration strings.
func durationHook() mapstructure.DecodeHookFunc {
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
				return nil, fmt.Errorf("invalid duration %d: more milliseconds than a duration holds (at most %d)", v, maxMillis)
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
