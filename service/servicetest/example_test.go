package servicetest_test

import (
	"fmt"
	"testing"

	"github.com/lemonade-lb/lemonade/service/servicetest"
)

// A worker module for a framework of its own runs the whole suite on its
// Serve and Run with one test: the conformance checks, graceful shutdown, a
// refused config, Run on an address, the request observer and bad input,
// each as a subtest.
//
// The suite reports through a test's *testing.T, so this example is
// compiled but not run. The function it builds is what goes in the
// module's _test.go file as
//
//	func TestAdapter(t *testing.T) {
//		servicetest.Adapter(t, workerx.Framework, workerx.Serve, workerx.Run)
//	}
//
// with reference and referenceRun (the Serve and Run of this package's own
// reference adapter, checked by TestReferenceAdapter) in place of the
// module's.
func ExampleAdapter() {
	testAdapter := func(t *testing.T) {
		servicetest.Adapter(t, "reference", reference, referenceRun)
	}
	_ = testAdapter
}

// Start serves an adapter on a loopback port for the rest of the test, and
// Run checks it against the HTTP contract; together they test a server
// started with a config of the test's choosing. Compiled but not run, like
// ExampleAdapter: in a _test.go file this is
//
//	func TestConformance(t *testing.T) {
//		servicetest.Run(t, servicetest.Start(t, servicetest.Config("worker-x"), workerx.Serve))
//	}
func ExampleStart() {
	testConformance := func(t *testing.T) {
		cfg := servicetest.Config(`a "quoted" name`) // names are JSON-escaped in every body
		servicetest.Run(t, servicetest.Start(t, cfg, reference))
	}
	_ = testConformance
}

// Config is the configuration the suite's servers run with; a test may
// change it before Start.
func ExampleConfig() {
	cfg := servicetest.Config("worker-x")
	fmt.Println(cfg.ListenAddress, cfg.ServiceName, cfg.WorkDelay)
	// Output: 127.0.0.1:0 worker-x 20ms
}
