package config

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"time"
)

// MarshalJSON writes c in the file's own format: the file's keys, durations
// as strings ("5s"), so that Parse(data, "json", name) reads back the same
// Config. The admin API serves the running config this way, and a client can
// edit it and post it back.
func (c Config) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // a config is not HTML: "<" stays "<"
	err := enc.Encode(document(reflect.ValueOf(c)))
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), err
}

// document turns v into maps, lists and plain values keyed by the
// mapstructure names the file uses. A nil pointer is left out.
func document(v reflect.Value) any {
	switch {
	case v.Type() == reflect.TypeFor[time.Duration]():
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return document(v.Elem())
	case v.Kind() == reflect.Struct:
		m := map[string]any{}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
			if !f.IsExported() || key == "" || key == "-" {
				continue
			}
			if val := document(v.Field(i)); val != nil {
				m[key] = val
			}
		}
		return m
	case v.Kind() == reflect.Slice:
		list := make([]any, v.Len())
		for i := range list {
			list[i] = document(v.Index(i))
		}
		return list
	}
	return v.Interface()
}
