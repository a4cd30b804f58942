// Command lemonade runs Lemonade's TCP load balancer, its demo workers, the
// one-command demo and a load generator. It is wiring only: flags, signals
// and exit codes; the behaviour lives in the loadbalancer, service and
// worker modules.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/lemonade-lb/lemonade/loadbalancer/admin"
	"github.com/lemonade-lb/lemonade/loadbalancer/strategy"
	"github.com/lemonade-lb/lemonade/observability/logging"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // failed at run time (a port taken, a crash of a worker)
	exitUsage   = 2 // bad flag, bad config: nothing was started
)

// Globals are the flags every command takes.
type Globals struct {
	LogLevel  string `help:"Log level: debug, info, warn, error." default:"info" env:"LEMONADE_LOG_LEVEL"`
	LogFormat string `help:"Log format: text or json." default:"text" env:"LEMONADE_LOG_FORMAT"`

	stdout, stderr io.Writer
}

// Logger builds the logger the flags ask for.
func (g *Globals) Logger() (*slog.Logger, error) {
	log, err := logging.New(g.stderr, g.LogLevel, g.LogFormat)
	if err != nil {
		return nil, usageError{err}
	}
	return log, nil
}

// CLI is the command tree.
type CLI struct {
	Globals

	Worker       WorkerCmd       `cmd:"" aliases:"w" help:"Run a demo worker (GET /health, GET /work) on one of the web frameworks."`
	LoadBalancer LoadBalancerCmd `cmd:"" name:"load-balancer" aliases:"lb" help:"Run the TCP load balancer."`
	Demo         DemoCmd         `cmd:"" help:"Run the whole system in one process: a worker of every framework behind the balancer."`
	Bench        BenchCmd        `cmd:"" help:"Generate HTTP load and show what the balancer did."`
	Ctl          CtlCmd          `cmd:"" help:"Drive a running balancer through its admin API: status, drain, enable, disable, weight, apply."`
	Version      VersionCmd      `cmd:"" help:"Print the version."`
}

// usageError marks an error that means "nothing was started because the
// input was wrong": exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, runs the command and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	v, c := buildVersion()
	admin.SetBuildInfo(admin.BuildInfo{Version: v, Commit: c}) // for lemonade_build_info
	cli := CLI{Globals: Globals{stdout: stdout, stderr: stderr}}
	exit := -1
	parser, err := kong.New(&cli,
		kong.Name("lemonade"),
		kong.Description("Lemonade: a fast, observable TCP (layer-4) load balancer, with demo workers."),
		kong.UsageOnError(),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exit = code }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		// The strategy names come from the one registry, not a copy here.
		kong.Vars{
			"strategies":       strings.Join(strategy.Names(), ","),
			"default_strategy": strategy.Default(),
		},
	)
	if err != nil {
		fmt.Fprintln(stderr, "lemonade:", err)
		return exitFailure
	}
	kctx, err := parser.Parse(args)
	if exit >= 0 { // --help
		return exit
	}
	if err != nil {
		fmt.Fprintf(stderr, "lemonade: error: %v\n", err)
		return exitUsage
	}
	if err := kctx.Run(&cli.Globals); err != nil {
		fmt.Fprintf(stderr, "lemonade: error: %v\n", err)
		if errors.As(err, new(usageError)) {
			return exitUsage
		}
		return exitFailure
	}
	return exitOK
}

// signalContext ends on the first SIGINT or SIGTERM; a second one exits the
// process at once, for an operator who will not wait for the drain. Call stop
// when done with it.
func signalContext(log *slog.Logger) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		defer signal.Stop(sigs)
		select {
		case s := <-sigs:
			log.Info("shutting down; send the signal again to exit at once", "signal", s.String())
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			log.Warn("second signal: exiting now", "signal", s.String())
			os.Exit(exitFailure)
		case <-done:
		}
	}()
	return ctx, sync.OnceFunc(func() { cancel(); close(done) })
}
