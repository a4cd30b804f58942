package configfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// read decodes data, in format, as viper would, with the decoder viper uses
// for it, and gives v the settings. On the way it checks what viper lets
// through or reports without a line: bytes that are not UTF-8 text, an
// empty file, a top level that is not a map, keys set twice, a second YAML
// document, nesting or maps too large for the decoders.
func read(v *viper.Viper, name, format string, data []byte) error {
	d := &document{name: name, data: bytes.TrimPrefix(data, utf8BOM)}
	if bad, err := d.checkText(); err != nil {
		if bad >= 0 {
			err.Key = d.keyAt(format, bad)
		}
		return err
	}
	if len(bytes.TrimSpace(d.data)) == 0 {
		return d.fail(0, fmt.Errorf("%w: it is empty", ErrEmpty))
	}
	var (
		settings map[string]any
		err      error
	)
	switch format {
	case "yaml":
		settings, err = d.readYAML()
	case "json":
		settings, err = d.readJSON()
	case "toml":
		settings, err = d.readTOML()
	default:
		err = d.fail(0, fmt.Errorf("format %q: %w", format, ErrUnsupportedFormat))
	}
	if err != nil {
		return err
	}
	// What v.ReadConfig would do, without parsing again. MergeConfigMap
	// looks each top-level key up among the others, which maxKeys bounds.
	v.SetConfigType(format)
	return v.MergeConfigMap(settings)
}

// document is one config file being parsed.
type document struct {
	name string
	data []byte
	// newlines holds the offset of every '\n' in data, found on first use.
	newlines []int
	// yaml is the YAML document, once parsed.
	yaml yaml.Node

	// When markLine is not 0, the walkers set markKey to the key nearest
	// before the character at markLine and markCol, on its line: the key a
	// bad byte belongs to.
	markLine, markCol int
	markKey           string
}

// fail is an error about the file as a whole, or at line when it is not 0.
func (d *document) fail(line int, err error) *Error {
	return &Error{File: d.name, Line: line, Err: err}
}

// failAt is an error at a byte offset in data, and at key when not "".
func (d *document) failAt(offset int, key string, err error) *Error {
	line, col := d.position(offset)
	return &Error{File: d.name, Line: line, Column: col, Key: key, Err: err}
}

// line returns the 1-based line of the byte at offset.
func (d *document) line(offset int) int {
	if d.newlines == nil {
		d.newlines = []int{}
		for i, c := range d.data {
			if c == '\n' {
				d.newlines = append(d.newlines, i)
			}
		}
	}
	return sort.SearchInts(d.newlines, offset) + 1
}

// position returns the 1-based line and column (in characters) of the byte
// at offset.
func (d *document) position(offset int) (line, col int) {
	offset = max(0, min(offset, len(d.data)))
	line = d.line(offset)
	start := 0
	if line > 1 {
		start = d.newlines[line-2] + 1
	}
	return line, utf8.RuneCount(d.data[start:offset]) + 1
}

// lineText returns the text of the 1-based line n.
func (d *document) lineText(n int) []byte {
	d.line(0)
	if n < 1 || n > len(d.newlines)+1 {
		return nil
	}
	start, end := 0, len(d.data)
	if n > 1 {
		start = d.newlines[n-2] + 1
	}
	if n <= len(d.newlines) {
		end = d.newlines[n-1]
	}
	return d.data[start:end]
}

var (
	utf8BOM    = []byte{0xEF, 0xBB, 0xBF}
	utf16BOMLE = []byte{0xFF, 0xFE}
	utf16BOMBE = []byte{0xFE, 0xFF}
)

// checkText finds the first byte that makes data something else than UTF-8
// text, and returns its offset (-1 for none, or for the file as a whole).
func (d *document) checkText() (int, *Error) {
	if bytes.HasPrefix(d.data, utf16BOMLE) || bytes.HasPrefix(d.data, utf16BOMBE) {
		return -1, d.failAt(0, "", fmt.Errorf("%w: the file is UTF-16 (save it as UTF-8)", ErrNotText))
	}
	for i := 0; i < len(d.data); {
		if c := d.data[i]; c >= ' ' && c < 0x7f || c == '\n' { // the common case, first
			i++
			continue
		}
		size, bad := badByte(d.data, i)
		if !bad {
			i += size
			continue
		}
		msg := "byte %#02x (save the file as UTF-8)"
		if d.data[i] < utf8.RuneSelf {
			msg = "control character %#02x (is it a binary file?)"
		}
		return i, d.failAt(i, "", fmt.Errorf("%w: "+msg, ErrNotText, d.data[i]))
	}
	return -1, nil
}

// badByte reports whether the character at data[i] is not text: an invalid
// UTF-8 sequence (size 1), or a control character other than tab, line feed
// and carriage return, which none of the formats allows.
func badByte(data []byte, i int) (size int, bad bool) {
	if c := data[i]; c < utf8.RuneSelf {
		return 1, (c < ' ' && c != '\t' && c != '\n' && c != '\r') || c == 0x7f
	}
	r, size := utf8.DecodeRune(data[i:])
	return size, r == utf8.RuneError && size == 1
}

// keyAt names the key the bad byte at offset belongs to: the nearest key
// before it on its line. It parses the file with every bad byte replaced by
// U+FFFD, which moves nothing before offset; "" when that parse finds none.
func (d *document) keyAt(format string, offset int) string {
	clean := make([]byte, 0, len(d.data)+16)
	for i := 0; i < len(d.data); {
		size, bad := badByte(d.data, i)
		if bad {
			clean = utf8.AppendRune(clean, utf8.RuneError)
		} else {
			clean = append(clean, d.data[i:i+size]...)
		}
		i += size
	}
	r := &document{name: d.name, data: clean}
	r.markLine, r.markCol = d.position(offset)
	switch format {
	case "yaml":
		_ = r.checkYAML()
	case "json":
		_, _ = r.readJSON()
	case "toml":
		_ = r.tomlKeys() // only the keys, even past a syntax error
	}
	return r.markKey
}

// marks reports whether a key starting at line and col (1-based, in
// characters) comes before the mark, on its line.
func (d *document) marks(line, col int) bool {
	return d.markLine != 0 && line == d.markLine && col < d.markCol
}

// maxDepth bounds how deep maps and lists nest in JSON and TOML (YAML's
// decoder has its own bound): a config nests a few deep, and the decoders
// recurse once per level.
const maxDepth = 1000

var errTooDeep = fmt.Errorf("maps and lists nested more than %d deep", maxDepth)

// maxKeys bounds the keys of one map. Lemonade's configs have a dozen at
// most, so this only stops garbage, and it must: the YAML decoder and
// viper compare each key of a map with every other.
const maxKeys = 1000

var errTooManyKeys = fmt.Errorf("more than %d keys in one map", maxKeys)

// keys holds the keys of one map seen so far, to find one set twice.
// Keys ignore case, as viper's do.
type keys map[string]firstKey

type firstKey struct {
	name string
	line int
}

// add records the key name, seen at line, or says when it was set before
// or when it is one too many.
func (k keys) add(name string, line int) error {
	lower := strings.ToLower(name)
	first, seen := k[lower]
	switch {
	case !seen && len(k) >= maxKeys:
		return errTooManyKeys
	case !seen:
		k[lower] = firstKey{name, line}
		return nil
	case first.name == name:
		return fmt.Errorf("%w (first on line %d)", ErrDuplicateKey, first.line)
	}
	return fmt.Errorf("%w (first as %q on line %d; keys ignore case)", ErrDuplicateKey, first.name, first.line)
}

// join and index build key paths as the validation messages write them:
// "proxy.listen_address", "backends[3].address".
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// YAML

// readYAML decodes the file as yaml.Unmarshal into a map[string]any does
// (viper's YAML codec), through a yaml.Node to check it first.
func (d *document) readYAML() (map[string]any, error) {
	if err := d.checkYAML(); err != nil {
		return nil, err
	}
	settings := map[string]any{}
	if err := d.yaml.Decode(&settings); err != nil {
		return nil, d.yamlError(err)
	}
	return settings, nil
}

// checkYAML parses the file into d.yaml and checks it.
func (d *document) checkYAML() error {
	dec := yaml.NewDecoder(bytes.NewReader(d.data))
	doc := &d.yaml
	if err := dec.Decode(doc); err != nil {
		if err == io.EOF {
			return d.fail(0, fmt.Errorf("%w, only comments", ErrEmpty))
		}
		return d.yamlError(err)
	}
	// yaml.Unmarshal, as viper uses it, reads the first document and drops
	// the rest without a word.
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == io.EOF:
	case err != nil:
		return d.yamlError(err)
	case len(next.Content) > 0 && !isNull(next.Content[0]):
		return d.fail(next.Line, errors.New("a second YAML document (after ---): a config file is one document"))
	}
	top := doc.Content[0]
	switch {
	case isNull(top):
		return d.fail(top.Line, fmt.Errorf("%w: the document is empty (null)", ErrEmpty))
	case top.Kind == yaml.SequenceNode:
		return d.fail(top.Line, fmt.Errorf("%w, not a list", ErrNotMap))
	case top.Kind == yaml.ScalarNode:
		return d.fail(top.Line, fmt.Errorf("%w, not a single value (%q)", ErrNotMap, top.Value))
	case top.Kind == yaml.MappingNode && len(top.Content) == 0:
		return d.fail(top.Line, fmt.Errorf("%w: an empty map", ErrEmpty))
	}
	return d.yamlKeys(top, "")
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// yamlKeys checks the keys of every map under n, whose path is path: none
// set twice, none past maxKeys.
func (d *document) yamlKeys(n *yaml.Node, path string) error {
	switch n.Kind {
	case yaml.MappingNode:
		seen := keys{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
				continue // a merge (<<: *base) may override keys; the decoder checks other kinds
			}
			key := join(path, k.Value)
			if d.marks(k.Line, k.Column) {
				d.markKey = key
			}
			if err := seen.add(k.Value, k.Line); err != nil {
				return &Error{File: d.name, Line: k.Line, Column: k.Column, Key: key, Err: err}
			}
			if err := d.yamlKeys(v, key); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			if err := d.yamlKeys(item, index(path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// yamlLine matches the "line N: " the YAML decoder starts many messages with.
var yamlLine = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)

// yamlError rewrites a YAML decoder error as an *Error with its line.
func (d *document) yamlError(err error) *Error {
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msgs = slices.Clone(te.Errors) // one "line N: ..." each
	}
	line := 0
	if m := yamlLine.FindStringSubmatch(msgs[0]); m != nil {
		line, _ = strconv.Atoi(m[1])
		msgs[0] = m[2]
	}
	msg := strings.Join(msgs, "; ")
	// A tab in the indentation is the classic mistake, and the decoder may
	// give the line before the tab's.
	if line > 0 && (strings.Contains(msg, "tab") || strings.Contains(msg, "cannot start any token")) {
		for l := line; l <= line+1; l++ {
			text := d.lineText(l)
			if !bytes.Contains(text[:len(text)-len(bytes.TrimLeft(text, " \t"))], []byte{'\t'}) {
				continue
			}
			line = l
			if strings.Contains(msg, "tab") {
				msg += " (YAML indents with spaces only)"
			} else {
				msg += " (a tab in the indentation: YAML indents with spaces only)"
			}
			break
		}
	}
	return d.fail(line, errors.New(msg))
}

// JSON

// readJSON decodes the file as json.Unmarshal into a map[string]any does
// (viper's JSON codec): the walk that checks it builds the same values from
// the decoder's own tokens, and leaves no key set twice for Unmarshal to
// settle.
func (d *document) readJSON() (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(d.data))
	start := len(d.data) - len(bytes.TrimLeft(d.data, " \t\r\n"))
	tok, err := dec.Token()
	if err != nil {
		return nil, d.jsonError(err)
	}
	if tok != json.Delim('{') {
		what := "a single value"
		if tok == json.Delim('[') {
			what = "an array"
		}
		return nil, d.failAt(start, "", fmt.Errorf("%w (an object), not %s", ErrNotMap, what))
	}
	settings, err := d.jsonObject(dec, "", 1)
	if err != nil {
		return nil, err
	}
	switch _, err := dec.Token(); {
	case err == io.EOF:
	case err != nil:
		return nil, d.jsonError(err)
	default:
		return nil, d.fail(d.line(int(dec.InputOffset())-1), errors.New("more JSON after the top-level object: a config file is one object"))
	}
	if len(settings) == 0 {
		return nil, d.failAt(start, "", fmt.Errorf("%w: an empty object", ErrEmpty))
	}
	return settings, nil
}

// jsonObject reads the members of an object whose '{' was just read, up to
// and including its '}', and finds a key set twice in it or under it.
func (d *document) jsonObject(dec *json.Decoder, path string, depth int) (map[string]any, error) {
	object := map[string]any{}
	seen := keys{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, d.jsonError(err)
		}
		name, _ := tok.(string) // the decoder allows only strings here
		key := join(path, name)
		end := int(dec.InputOffset()) - 1 // the key's closing quote
		line := d.line(end)
		if d.markLine != 0 {
			if l, c := d.position(d.openingQuote(end)); d.marks(l, c) {
				d.markKey = key
			}
		}
		if err := seen.add(name, line); err != nil {
			return nil, &Error{File: d.name, Line: line, Key: key, Err: err}
		}
		if object[name], err = d.jsonValue(dec, key, depth); err != nil {
			return nil, err
		}
	}
	return object, d.jsonEnd(dec, '}')
}

// openingQuote returns the offset of the '"' that opens the string whose
// closing '"' is at end.
func (d *document) openingQuote(end int) int {
	for i := end - 1; i >= 0; i-- {
		if d.data[i] != '"' {
			continue
		}
		backslashes := 0
		for j := i - 1; j >= 0 && d.data[j] == '\\'; j-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			return i
		}
	}
	return 0
}

// jsonValue reads the value at path: an object, an array or a scalar, in
// depth objects and arrays. Token, unlike Unmarshal, does not bound the
// depth: without a bound here, a file of "[[[[..." would overflow the stack.
func (d *document) jsonValue(dec *json.Decoder, path string, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		e := d.jsonError(err)
		if errors.As(err, new(*json.UnmarshalTypeError)) {
			e.Key = path // a number out of range
		}
		return nil, e
	}
	if tok == json.Delim('{') || tok == json.Delim('[') {
		if depth++; depth > maxDepth {
			if len(path) > 40 {
				path = path[:40] + "..." // "a[0][0][0]...", not a thousand of them
			}
			return nil, d.failAt(int(dec.InputOffset())-1, path, errTooDeep)
		}
	}
	switch tok {
	case json.Delim('{'):
		return d.jsonObject(dec, path, depth)
	case json.Delim('['):
		array := []any{}
		for i := 0; dec.More(); i++ {
			v, err := d.jsonValue(dec, index(path, i), depth)
			if err != nil {
				return nil, err
			}
			array = append(array, v)
		}
		return array, d.jsonEnd(dec, ']')
	}
	return tok, nil
}

// jsonEnd reads the delimiter that closes an object or array.
func (d *document) jsonEnd(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err == nil && tok != want {
		err = fmt.Errorf("want %q, got %v", want, tok) // More said there was no other member
	}
	if err != nil {
		return d.jsonError(err) // a nil *Error would not be a nil error
	}
	return nil
}

// jsonError rewrites a JSON decoder error as an *Error with its position.
func (d *document) jsonError(err error) *Error {
	var (
		se  *json.SyntaxError
		ute *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &se):
		msg := se.Error()
		if strings.HasPrefix(msg, "invalid character '/'") || strings.HasPrefix(msg, "invalid character '#'") {
			msg += " (JSON has no comments)"
		}
		// Offset counts the bytes read, the offending one included.
		return d.failAt(int(se.Offset)-1, "", errors.New(msg))
	case errors.As(err, &ute):
		// Into an any, only a number beyond float64 fails; the offset
		// the decoder gives is not the number's, so jsonValue adds the key.
		return d.fail(0, fmt.Errorf("%s is out of range", ute.Value))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return d.failAt(len(d.data), "", errors.New("unexpected end of the JSON: an object or array is not closed"))
	}
	return d.fail(0, err)
}

// TOML

// readTOML decodes the file as toml.Unmarshal into a map[string]any does
// (viper's TOML codec), once it is checked.
func (d *document) readTOML() (map[string]any, error) {
	// The TOML parser does not bound the depth of arrays and inline tables:
	// "a = [[[[..." would overflow the stack, a crash no recover can catch.
	if offset := tomlTooDeep(d.data); offset >= 0 {
		return nil, d.failAt(offset, "", errTooDeep)
	}
	if err := d.tomlKeys(); err != nil {
		return nil, err
	}
	settings := map[string]any{}
	if err := toml.Unmarshal(d.data, &settings); err != nil {
		return nil, d.tomlError(err)
	}
	if len(settings) == 0 {
		return nil, d.fail(0, fmt.Errorf("%w, only comments", ErrEmpty))
	}
	return settings, nil
}

// tomlError rewrites a TOML decoder error as an *Error with its position.
func (d *document) tomlError(err error) *Error {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, col := de.Position()
		return &Error{File: d.name, Line: line, Column: col, Key: strings.Join(de.Key(), "."),
			Err: errors.New(strings.TrimPrefix(de.Error(), "toml: "))}
	}
	return d.fail(0, errors.New(strings.TrimPrefix(err.Error(), "toml: ")))
}

// tomlTooDeep returns the offset of the first '[' or '{' that opens more
// than maxDepth arrays and inline tables, or -1. It skips comments and
// strings, and is only as exact as that needs: a config nests a few deep.
func tomlTooDeep(data []byte) int {
	depth := 0
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '#':
			for i < len(data) && data[i] != '\n' {
				i++
			}
		case '"', '\'':
			quote := string(c)
			if bytes.HasPrefix(data[i:], []byte{c, c, c}) {
				quote = strings.Repeat(quote, 3)
			}
			i += len(quote)
			for i < len(data) && !bytes.HasPrefix(data[i:], []byte(quote)) {
				if len(quote) == 1 && data[i] == '\n' {
					break // an unclosed one-line string: the parser will say
				}
				if c == '"' && data[i] == '\\' {
					i++ // an escaped character, in basic strings only
				}
				i++
			}
			i += len(quote) - 1
		case '[', '{':
			if depth++; depth > maxDepth {
				return i
			}
		case ']', '}':
			depth = max(0, depth-1)
		}
	}
	return -1
}

// tomlTable is a table of a TOML document as its expressions build it,
// enough to tell a key or table defined twice from one extended.
type tomlTable struct {
	entries map[string]*tomlEntry // by lower-case key
}

type tomlEntry struct {
	firstKey
	table    *tomlTable   // a table: from [a] (explicit), a.b = or [a.b] (implicit), or a = {...}
	explicit bool         // a [header] defined table
	closed   bool         // a value, inline tables included: nothing may add to it
	array    []*tomlTable // an array of tables, [[a]]
}

func newTOMLTable() *tomlTable { return &tomlTable{entries: map[string]*tomlEntry{}} }

// tomlKeys finds a key or table set twice, ignoring case. The TOML decoder
// reports exact repeats without a line, and different cases not at all.
// Syntax errors are left to the decoder, which gives their position.
func (d *document) tomlKeys() error {
	root := newTOMLTable()
	current, path := root, ""
	var p unstable.Parser
	p.Reset(d.data)
	for p.NextExpression() {
		e := p.Expression()
		var err error
		switch e.Kind {
		case unstable.KeyValue:
			err = d.tomlKeyValue(current, path, e)
		case unstable.Table, unstable.ArrayTable:
			current, path, err = d.tomlHeader(root, e)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// tomlPart is one part of a dotted key.
type tomlPart struct {
	name   string
	line   int
	offset int
}

// tomlParts lists the parts of a key; never none, as the parser makes them.
func (d *document) tomlParts(it unstable.Iterator) []tomlPart {
	parts := []tomlPart{}
	for it.Next() {
		n := it.Node()
		parts = append(parts, tomlPart{string(n.Data), d.line(int(n.Raw.Offset)), int(n.Raw.Offset)})
	}
	if len(parts) == 0 {
		parts = append(parts, tomlPart{}) // not seen; keeps parts[len-1] safe
	}
	return parts
}

// tomlDescend goes from t into the table at part, creating it if needed, as
// a dotted key or a header's leading parts do.
func (d *document) tomlDescend(t *tomlTable, path string, part tomlPart) (*tomlTable, string, error) {
	key := join(path, part.name)
	e := t.entries[strings.ToLower(part.name)]
	switch {
	case e == nil:
		e = &tomlEntry{table: newTOMLTable()}
		if err := d.tomlPut(t, key, part, e); err != nil {
			return nil, "", err
		}
		return e.table, key, nil
	case e.array != nil:
		return e.array[len(e.array)-1], index(key, len(e.array)-1), nil
	case e.table != nil && !e.closed:
		return e.table, key, nil
	}
	return nil, "", d.tomlDuplicate(t, key, part)
}

// tomlPut adds the new entry e, at part, to t, unless t is full.
func (d *document) tomlPut(t *tomlTable, key string, part tomlPart, e *tomlEntry) error {
	if len(t.entries) >= maxKeys {
		return &Error{File: d.name, Line: part.line, Key: key, Err: errTooManyKeys}
	}
	e.firstKey = firstKey{part.name, part.line}
	t.entries[strings.ToLower(part.name)] = e
	return nil
}

// tomlDuplicate is the error for part, already in t.
func (d *document) tomlDuplicate(t *tomlTable, key string, part tomlPart) error {
	err := keys{strings.ToLower(part.name): t.entries[strings.ToLower(part.name)].firstKey}.add(part.name, part.line)
	return &Error{File: d.name, Line: part.line, Key: key, Err: err}
}

// tomlKeyValue records the key = value e in table t, at path.
func (d *document) tomlKeyValue(t *tomlTable, path string, e *unstable.Node) error {
	parts := d.tomlParts(e.Key())
	for _, part := range parts[:len(parts)-1] {
		var err error
		if t, path, err = d.tomlDescend(t, path, part); err != nil {
			return err
		}
	}
	last := parts[len(parts)-1]
	key := join(path, last.name)
	if d.markLine != 0 {
		if l, c := d.position(parts[0].offset); d.marks(l, c) {
			d.markKey = key
		}
	}
	if t.entries[strings.ToLower(last.name)] != nil {
		return d.tomlDuplicate(t, key, last)
	}
	entry := &tomlEntry{closed: true}
	if err := d.tomlPut(t, key, last, entry); err != nil {
		return err
	}
	return d.tomlValue(e.Value(), key, entry)
}

// tomlValue looks into inline tables, in v or in arrays in v, at path; entry
// is v's entry when v is a key's value.
func (d *document) tomlValue(v *unstable.Node, path string, entry *tomlEntry) error {
	switch v.Kind {
	case unstable.InlineTable:
		table := newTOMLTable()
		if entry != nil {
			entry.table = table
		}
		for it := v.Children(); it.Next(); {
			if err := d.tomlKeyValue(table, path, it.Node()); err != nil {
				return err
			}
		}
	case unstable.Array:
		i := 0
		for it := v.Children(); it.Next(); i++ {
			if err := d.tomlValue(it.Node(), index(path, i), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// tomlHeader goes to the table a [header] or [[header]] names, from root,
// and returns it with its path.
func (d *document) tomlHeader(root *tomlTable, h *unstable.Node) (*tomlTable, string, error) {
	parts := d.tomlParts(h.Key())
	t, path := root, ""
	for _, part := range parts[:len(parts)-1] {
		var err error
		if t, path, err = d.tomlDescend(t, path, part); err != nil {
			return nil, "", err
		}
	}
	last := parts[len(parts)-1]
	key := join(path, last.name)
	e := t.entries[strings.ToLower(last.name)]
	if h.Kind == unstable.ArrayTable {
		switch {
		case e == nil:
			e = &tomlEntry{}
			if err := d.tomlPut(t, key, last, e); err != nil {
				return nil, "", err
			}
		case e.array == nil:
			return nil, "", d.tomlDuplicate(t, key, last)
		}
		e.array = append(e.array, newTOMLTable())
		return e.array[len(e.array)-1], index(key, len(e.array)-1), nil
	}
	switch {
	case e == nil:
		e = &tomlEntry{table: newTOMLTable(), explicit: true}
		if err := d.tomlPut(t, key, last, e); err != nil {
			return nil, "", err
		}
	case e.table != nil && !e.closed && !e.explicit && e.array == nil:
		e.explicit = true // [a.b] came first, or a.b = 1: [a] may still come
	default:
		return nil, "", d.tomlDuplicate(t, key, last)
	}
	return e.table, key, nil
}
