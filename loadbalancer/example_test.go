package loadbalancer_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"

	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// Start a balancer in front of one backend, proxy a request through it,
// then stop it: cancelling the context drains and closes it, and Done says
// when it is over.
func ExampleStart() {
	a := newBackend("a") // an HTTP server answering its name
	defer a.Close()

	// Port 0: any free port; Addr tells which.
	cfg, err := config.Parse([]byte(`
proxy:
  listen_address: "127.0.0.1:0"
strategy: round_robin
backends:
  - {id: 0, name: a, address: "`+a.Listener.Addr().String()+`"}
`), "yaml", "example.yaml")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lb, err := loadbalancer.Start(ctx, slog.New(slog.DiscardHandler), cfg)
	if err != nil {
		panic(err)
	}
	fmt.Println("answered by", get(lb.Addr().String()))

	cancel()
	<-lb.Done()
	fmt.Println("stopped")
	// Output:
	// answered by a
	// stopped
}

// Apply changes the running balancer to a new config, here with a second
// backend, without dropping a connection: all of it, or on an error none.
func ExampleBalancer_Apply() {
	a, b := newBackend("a"), newBackend("b")
	defer a.Close()
	defer b.Close()

	ctx, cancel := context.WithCancel(context.Background())
	lb, err := loadbalancer.Start(ctx, slog.New(slog.DiscardHandler), parse(a))
	if err != nil {
		panic(err)
	}
	fmt.Println("answered by", get(lb.Addr().String()))

	if err := lb.Apply(parse(a, b)); err != nil {
		panic(err)
	}
	var names, answers []string
	for _, be := range lb.Snapshot().Backends {
		names = append(names, be.Name)
	}
	for range 2 { // round robin: one request each
		answers = append(answers, get(lb.Addr().String()))
	}
	slices.Sort(answers)
	fmt.Println("backends:", names)
	fmt.Println("answered by", answers)

	cancel()
	<-lb.Done()
	// Output:
	// answered by a
	// backends: [a b]
	// answered by [a b]
}

// parse is a config with the backends, listening on a free loopback port;
// the same listen address in every config, so Apply keeps the listener.
func parse(backends ...*httptest.Server) *config.Config {
	var yaml strings.Builder
	yaml.WriteString("proxy: {listen_address: \"127.0.0.1:0\"}\nstrategy: round_robin\nbackends:\n")
	for i, be := range backends {
		fmt.Fprintf(&yaml, "  - {id: %d, name: %c, address: %q}\n", i, 'a'+i, be.Listener.Addr())
	}
	cfg, err := config.Parse([]byte(yaml.String()), "yaml", "example.yaml")
	if err != nil {
		panic(err)
	}
	return cfg
}

// newBackend starts an HTTP server on 127.0.0.1:0 that answers name.
func newBackend(name string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, name)
	}))
}

// get sends one request through the balancer at addr, on a connection of
// its own, and returns the answer.
func get(addr string) string {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := client.Get("http://" + addr + "/")
	if err != nil {
		panic(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		panic(err)
	}
	return string(body)
}
