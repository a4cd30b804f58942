package config

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The running config the admin API serves must read back as the same config:
// an operator edits it and posts it back.
func TestConfigJSONReadsBackTheSame(t *testing.T) {
	seed, err := os.ReadFile("testdata/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fromSeed, err := Parse(seed, "yaml", "seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	every := Default()
	every.Backends = []Backend{{ID: 7, Name: "a", Address: "[::1]:80", Weight: 3}, {ID: 2, Name: "b", Address: "host.example:8080", Weight: 1}}
	every.Proxy.IdleTimeout = 1500 * time.Millisecond
	every.Health.Passive = Passive{MaxFails: 0, FailDuration: 0}
	every.Admin = Admin{ListenAddress: "0.0.0.0:50500", Token: "s3cret"}
	every.OTLPEndpoint = "localhost:4317"
	every.resolve()
	for name, c := range map[string]*Config{"seed": fromSeed, "every key set": every} {
		t.Run(name, func(t *testing.T) {
			data, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(data, "json", "api")
			if err != nil {
				t.Fatalf("%s\n%v", data, err)
			}
			if !reflect.DeepEqual(back, c) {
				t.Fatalf("read back %+v\nwant %+v\nfrom %s", back, c, data)
			}
		})
	}
}

func TestConfigJSONUsesTheFileKeys(t *testing.T) {
	c := Default()
	c.Backends = []Backend{{ID: 0, Name: "a", Address: "127.0.0.1:1", Weight: 1}}
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"drain_timeout_millis":"5s"`, `"listen_address":"127.0.0.1:50501"`, `"backends":[{"address":"127.0.0.1:1","id":0,"name":"a","weight":1}]`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("%s lacks %s", data, want)
		}
	}
	if strings.Contains(string(data), `"retries"`) {
		t.Errorf("%s: an unresolved retries should be left out", data)
	}
}
