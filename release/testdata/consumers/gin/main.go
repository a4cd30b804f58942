// Command gin serves the Lemonade worker contract with the worker-gin module
// and checks its /health answer, as a user of that module would.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"github.com/lemonade-lb/lemonade/service"
	workergin "github.com/lemonade-lb/lemonade/worker-gin"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gin:", err)
		os.Exit(1)
	}
}

func run() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cfg := service.DefaultConfig()
	cfg.ServiceName = "consumer-gin"
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- workergin.Serve(ctx, ln, cfg) }()

	res, err := http.Get("http://" + ln.Addr().String() + service.RouteHealth)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return err
	}
	fmt.Println(res.StatusCode, string(body))

	stop()
	if err := <-served; err != nil {
		return err
	}
	fmt.Println("stopped")
	return nil
}
