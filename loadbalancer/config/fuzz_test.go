package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary YAML to Parse: it must never panic, every error
// must be ErrInvalid, and every config it returns must be resolved and valid.
func FuzzParse(f *testing.F) {
	seed, err := os.ReadFile("testdata/seed.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	for _, s := range []string{
		"",
		"backends:\n  - address: 127.0.0.1:1\n",
		"backends: [{address: \"[::1]:80\", weight: 255, id: 9}]\nproxy: {retries: 0}\n",
		"backends:\n  - address: x\n    weight: 1.5\n    bogus: 1\nproxy:\n  max_connections: abc\n",
		"backends: 5\nproxy: [1, 2]\nhealth: null\n",
		"runtime:\n  drain_timeout_millis: 9999999999999999\n",
		"backends:\n  - {id: 1e300, weight: -1e300, address: {a: b}}\n",
		"? [a]\n: 1\n",
		"- 1\n- 2\n",
		"adaptive: {connection_weight: .nan, latency_weight: .inf, error_weight: -.inf}\n",
		"strategy: a\nStrategy: b\nbackends:\n  - {address: 127.0.0.1:1, Address: 127.0.0.1:2}\n",
		"backends:\n\t- address: 127.0.0.1:1\n",
		"backends: [{address: \"caf\xe9:1\"}]\n",
		"---\n---\nbackends: []\n",
		"# only a comment\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "yaml", "fuzz.yaml")
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error is not ErrInvalid: %v", err)
			}
			return
		}
		if c.Proxy.Retries == nil {
			t.Fatal("Retries not resolved")
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse returned a config that Validate rejects: %v", err)
		}
	})
}

// FuzzBackendList feeds arbitrary strings to the LEMONADE_LB_BACKEND_ADDRESSES
// parser: it must never panic, and a parsed list has one backend per entry,
// with ids equal to positions.
func FuzzBackendList(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:50510,127.0.0.1:50520",
		"fast=127.0.0.1:50510*3,127.0.0.1:50520",
		" a = [::1]:80 * 2 ,b=host:1",
		"a,,b",
		"=*,*=",
		"x*99999999999999999999",
		"n=h:1*-5",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		backends, err := parseBackendList(s)
		if err != nil {
			return
		}
		if len(backends) != strings.Count(s, ",")+1 {
			t.Fatalf("%q: %d backends", s, len(backends))
		}
		for i, b := range backends {
			if b.ID != i || b.Address == "" {
				t.Fatalf("%q: backend %d is %+v", s, i, b)
			}
		}
		c := Default()
		c.Backends = backends
		c.resolve()
		_ = c.Validate() // must not panic
	})
}
