// Command embed runs Lemonade's balancer inside its own program, as a user
// of the loadbalancer module would: a config built in code, one request
// proxied, a reload that adds a backend, a shutdown.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

func run() error {
	a, err := greeter("a")
	if err != nil {
		return err
	}
	b, err := greeter("b")
	if err != nil {
		return err
	}
	cfg := balancerConfig(a)
	if err := cfg.Validate(); err != nil {
		return err
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	lb, err := loadbalancer.Start(ctx, slog.New(slog.DiscardHandler), cfg)
	if err != nil {
		return err
	}
	first, err := get(lb.Addr().String())
	if err != nil {
		return err
	}
	fmt.Println("before the reload:", first)

	if err := lb.Apply(balancerConfig(a, b)); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i := 0; i < 20 && len(seen) < 2; i++ {
		got, err := get(lb.Addr().String())
		if err != nil {
			return err
		}
		seen[got] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	fmt.Println("after the reload:", strings.Join(names, " "))

	stop()
	<-lb.Done()
	fmt.Println("stopped")
	return nil
}

// balancerConfig is the defaults, a listener on a free loopback port, and
// round robin over the backends at addrs.
func balancerConfig(addrs ...string) *config.Config {
	c := config.Default()
	c.Proxy.ListenAddress = "127.0.0.1:0"
	c.Strategy = "round_robin"
	for i, addr := range addrs {
		c.Backends = append(c.Backends, config.Backend{ID: i, Name: fmt.Sprintf("backend-%d", i), Address: addr, Weight: 1})
	}
	return c
}

// greeter is a backend that writes its name to each connection and closes it.
func greeter(name string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, name)
			c.Close()
		}
	}()
	return ln.Addr().String(), nil
}

// get reads what one connection through the balancer answers.
func get(addr string) (string, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	body, err := io.ReadAll(c)
	return string(body), err
}
