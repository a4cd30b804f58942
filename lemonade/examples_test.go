package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/lemonade-lb/lemonade/loadbalancer/config"
	"github.com/lemonade-lb/lemonade/service"
)

// Every example config in config/ loads, through the same code the binary
// uses, so a documented example cannot rot.
func TestExampleConfigsLoad(t *testing.T) {
	paths, err := filepath.Glob("../config/*")
	if err != nil || len(paths) < 2 {
		t.Fatalf("example configs: %v, %v", paths, err)
	}
	for _, p := range paths {
		switch name := filepath.Base(p); {
		case strings.HasPrefix(name, "load-balancer."):
			if _, err := config.Load(p); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		case strings.HasPrefix(name, "worker-"):
			if _, err := service.Load(service.Flags{Config: p}); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		default:
			t.Errorf("%s: not a load-balancer.* or worker-* example; add it to this test", p)
		}
	}
}
