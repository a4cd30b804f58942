package config_test

import (
	"errors"
	"fmt"

	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

func ExampleParse() {
	c, err := config.Parse([]byte(`
strategy: weighted_round_robin
backends:
  - address: 127.0.0.1:50510
    weight: 3
  - name: slow
    address: 127.0.0.1:50520
health:
  interval: 2500   # integer milliseconds or "2.5s"
`), "yaml", "example.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Strategy, c.Proxy.ListenAddress, "retries:", *c.Proxy.Retries, "health every", c.Health.Interval)
	for _, b := range c.Backends {
		fmt.Println(b.ID, b.Name, b.Address, b.Weight)
	}
	// Output:
	// weighted_round_robin 127.0.0.1:50501 retries: 1 health every 2.5s
	// 0 backend-0 127.0.0.1:50510 3
	// 1 slow 127.0.0.1:50520 1
}

func ExampleParse_invalid() {
	_, err := config.Parse([]byte(`
strategy: random
backends:
  - address: 127.0.0.1:50510
    wieght: 3
  - address: 127.0.0.1:70000
`), "yaml", "lb.yaml")
	fmt.Println(errors.Is(err, config.ErrInvalid))
	fmt.Println(err)
	// Output:
	// true
	// invalid load balancer configuration: 3 problems:
	// 	lb.yaml: backends[0].wieght: unknown key
	// 	lb.yaml: strategy: unknown value "random" (want one of round_robin, least_connections, weighted_round_robin, fastest_response_time, adaptive)
	// 	lb.yaml: backends[1].address: "127.0.0.1:70000": port must be a number 1..65535
}
