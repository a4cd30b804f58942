// Package workerfasthttp serves the Lemonade worker HTTP contract (package
// service) on fasthttp, two ways: with fasthttp directly (Handler, Serve,
// Run) and with fiber v2, which runs on fasthttp (App, ServeFiber, RunFiber).
//
// fasthttp does not notice a client that hangs up while its handler runs, so
// a /work with a delay watches the connection itself (see watchClient) to
// end early, as the net/http based workers do.
package workerfasthttp
