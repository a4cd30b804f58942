package main

import (
	"context"
	"fmt"
	"net"
	"sort"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/lemonade-lb/lemonade/fleet"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
	"github.com/lemonade-lb/lemonade/observability/otel"
	"github.com/lemonade-lb/lemonade/service"
	workerecho "github.com/lemonade-lb/lemonade/worker-echo"
	workerfasthttp "github.com/lemonade-lb/lemonade/worker-fasthttp"
	workergin "github.com/lemonade-lb/lemonade/worker-gin"
	workernethttp "github.com/lemonade-lb/lemonade/worker-nethttp"
)

// serveFunc serves the worker HTTP API on ln until ctx ends.
type serveFunc func(ctx context.Context, ln net.Listener, cfg service.Config) error

// frameworks maps each --framework name to its worker.
var frameworks = map[string]serveFunc{
	"nethttp":  workernethttp.Serve,
	"gin":      workergin.Serve,
	"echo":     workerecho.Serve,
	"fasthttp": workerfasthttp.Serve,
	"fiber":    workerfasthttp.ServeFiber,
}

// frameworkNames lists the frameworks in the order the demo starts them.
var frameworkNames = []string{"nethttp", "gin", "echo", "fasthttp", "fiber"}

func init() {
	// One list: the names above must be exactly the map's keys.
	keys := make([]string, 0, len(frameworks))
	for k := range frameworks {
		keys = append(keys, k)
	}
	sorted := append([]string(nil), frameworkNames...)
	sort.Strings(keys)
	sort.Strings(sorted)
	for i := range keys {
		if keys[i] != sorted[i] {
			panic("frameworkNames and frameworks disagree")
		}
	}
}

// WorkerCmd runs one demo worker.
type WorkerCmd struct {
	Framework string `short:"f" required:"" enum:"nethttp,gin,echo,fasthttp,fiber" help:"Web framework: ${enum}."`
	Config    string `short:"c" help:"Config file (.json, .toml, .yaml or .yml)." placeholder:"FILE"`
	Address   string `short:"a" help:"Listen address (default 127.0.0.1:50200)." placeholder:"ADDR"`
	Name      string `short:"n" help:"Service name reported in responses (default lemonade-worker)."`
	Delay     string `short:"d" help:"Work delay: integer milliseconds or a duration like 20ms (default 20)." placeholder:"MS"`
	Register  string `env:"LEMONADE_WORKER_REGISTER" help:"Join a fleet: register as a backend in etcd, under the service name, while serving (docs/fleet.md)." placeholder:"etcd://HOST:PORT[,HOST:PORT...]/PREFIX"`
	Pool      string `env:"LEMONADE_WORKER_POOL" default:"default" help:"The pool to join with --register."`
	Advertise string `env:"LEMONADE_WORKER_ADVERTISE" help:"The address the balancers connect to, registered with --register (default: the listen address)." placeholder:"HOST:PORT"`
}

// Run implements the command.
func (c *WorkerCmd) Run(g *Globals) error {
	cfg, err := service.Load(service.Flags{Config: c.Config, Address: c.Address, Name: c.Name, Delay: c.Delay})
	if err != nil {
		return usageError{err}
	}
	var fleetEtcd config.Etcd // checked before anything binds
	if c.Register != "" {
		if fleetEtcd, err = fleet.ParseURL(c.Register); err != nil {
			return usageError{fmt.Errorf("--register: %w", err)}
		}
	}
	log, err := g.Logger()
	if err != nil {
		return err
	}
	// A span and the request metrics per request, once in the service core
	// for every framework; without an endpoint nothing is built.
	version, _ := buildVersion()
	tel, err := otel.Setup(context.Background(), otel.Settings{
		Endpoint:          cfg.OTLPEndpoint,
		Protocol:          cfg.OTLPProtocol,
		ServiceName:       cfg.ServiceName,
		ServiceVersion:    version,
		ServiceInstanceID: instanceID(cfg.ListenAddress),
		Attributes:        []attribute.KeyValue{attribute.String(otel.AttrFramework, c.Framework)},
		Traces:            true,
		Logger:            log,
	})
	if err != nil {
		return usageError{fmt.Errorf("invalid OTLP endpoint %q: %w", cfg.OTLPEndpoint, err)}
	}
	defer flushOTLP(log, tel, 0) // after the server stopped: its last requests go too
	if tel != nil {
		obs, err := otel.NewHTTP(tel, c.Framework)
		if err != nil {
			return fmt.Errorf("OpenTelemetry instruments: %w", err)
		}
		cfg.Observer = obs
	}
	ln, err := service.Listen(cfg.ListenAddress)
	if err != nil {
		return err
	}
	ctx, stop := signalContext(log)
	defer stop()
	serving := ctx
	if c.Register != "" {
		reg, cli, err := workerRegistration(log, fleetEtcd, c.Pool, cfg.ServiceName, c.Advertise, ln, c.Framework)
		if err != nil {
			ln.Close()
			return err
		}
		// On a stop, leave the pool first, then stop serving: the balancers
		// drain the worker before its port closes. If serving fails, leave
		// the pool all the same, before the client goes.
		var stopServing context.CancelFunc
		serving, stopServing = context.WithCancel(context.Background())
		left := make(chan struct{})
		defer func() {
			stopServing() // serving ended (or failed): leave the pool without the grace
			<-left
			cli.Close()
		}()
		go func() {
			defer close(left)
			defer stopServing()
			select {
			case <-ctx.Done():
			case <-serving.Done():
			}
			leave, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := reg.Close(leave); err != nil {
				log.Warn("leaving the pool failed; the registration expires with its lease", "key", reg.Key(), "error", err)
				return
			}
			log.Info("left the pool", "key", reg.Key())
			if serving.Err() == nil {
				time.Sleep(deregisterGrace) // the balancers see the key go meanwhile
			}
		}()
	}
	log.Info("worker started", "framework", c.Framework, "address", ln.Addr().String(), "name", cfg.ServiceName, "delay", cfg.WorkDelay)
	if tel != nil {
		log.Info("exporting spans and request metrics over OTLP", "endpoint", cfg.OTLPEndpoint, "protocol", protocolName(cfg.OTLPProtocol))
	}
	if err := frameworks[c.Framework](serving, ln, cfg); err != nil {
		return err
	}
	log.Info("worker stopped", "framework", c.Framework, "name", cfg.ServiceName)
	return nil
}
