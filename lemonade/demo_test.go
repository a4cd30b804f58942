package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/lemonade-lb/lemonade/loadbalancer/strategy"
)

// The demo's --strategy choices are the registry's names, whatever it holds.
func TestDemoStrategyFlagIsTheRegistry(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"demo", "--help"}, &out, &errOut); code != 0 {
		t.Fatalf("demo --help: exit %d: %s", code, errOut.String())
	}
	help := strings.Join(strings.Fields(out.String()), " ")
	if want := "Balancing strategy: " + strings.Join(strategy.Names(), ","); !strings.Contains(help, want) {
		t.Errorf("demo --help does not contain %q:\n%s", want, out.String())
	}
	if want := `--strategy="` + strategy.Default() + `"`; !strings.Contains(help, want) {
		t.Errorf("demo --help does not contain %q:\n%s", want, out.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"demo", "--strategy", "random"}, &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), `"random"`) {
		t.Errorf("demo --strategy random: exit %d, %q; want %d naming the value", code, errOut.String(), exitUsage)
	}
}
