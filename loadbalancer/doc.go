// Package loadbalancer is Lemonade's layer-4 (TCP) load balancer as a library:
// configuration, backend state, balancing strategies, health checks, the proxy
// and hot reload. The lemonade CLI only wires it to flags and signals.
package loadbalancer
