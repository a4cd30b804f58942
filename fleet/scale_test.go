package fleet

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/fleet/etcdtest"
	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// scaleWorkers is the pool docs/fleet.md sizes.
const scaleWorkers = 1000

// BenchmarkFleetAt1000Workers measures the fleet at the scale docs/fleet.md
// sizes, against a real etcd: 1000 workers registered, each under a lease of
// its own kept alive at DefaultTTL, and one balancer following the pool
// (Watcher → BalancerSink → Sources → Balancer, as `lemonade lb` runs them).
// One op is a worker joining and then leaving: each from the etcd write to
// the balancer's config holding the change. Reported besides: the join and
// leave latency percentiles, the time to register the 1000, a balancer's
// start with them, and what etcd sees (keep-alives per second, its RSS and
// how much of it the fleet added).
func BenchmarkFleetAt1000Workers(b *testing.B) {
	srv := etcdtest.Start(b)
	k := Keys{Prefix: "/scale"}
	cli := srv.Client()
	const keepAlive = `grpc_server_msg_received_total{grpc_method="LeaseKeepAlive"`
	_, rssEmpty := etcdMetric(b, srv, keepAlive)

	// The workers' addresses are never dialed (health checks are an hour
	// apart): ports below testnet's range, where etcd listens.
	began := time.Now()
	regs := make([]*Registrar, scaleWorkers)
	b.Cleanup(func() { closeAll(regs) })
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	errs := make(chan error, scaleWorkers)
	for i := range regs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			g, err := Register(cli, k, DefaultPool, fmt.Sprintf("w-%04d", i),
				Registration{Address: fmt.Sprintf("127.0.0.1:%d", 2000+i), Framework: "bench"}, DefaultTTL, 10*time.Second, quiet)
			if err == nil {
				select {
				case <-g.Registered():
				default:
					err = fmt.Errorf("w-%04d: not registered within 10s", i)
				}
			}
			regs[i] = g
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	registered := time.Since(began)

	// The balancer starts as `lemonade lb` does: a full read, the config
	// built with it, then the watch.
	began = time.Now()
	w, err := NewWatcher(cli, k, DefaultPool, quiet)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	fl, err := w.Sync(ctx)
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "lb.yaml")
	file := []byte("proxy: {listen_address: \"127.0.0.1:0\"}\nhealth: {interval: 1h}\n")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, _, err := config.LoadDataWith(path, file, fl)
	if err != nil {
		b.Fatal(err)
	}
	lbCtx, stopLB := context.WithCancel(context.Background())
	lb, err := loadbalancer.Start(lbCtx, quiet, cfg)
	if err != nil {
		stopLB()
		b.Fatal(err)
	}
	started := time.Since(began)
	b.Cleanup(func() { stopLB(); <-lb.Done() })
	if n := len(lb.Config().Backends); n != scaleWorkers {
		b.Fatalf("the balancer started with %d backends; want %d", n, scaleWorkers)
	}
	sources := loadbalancer.NewSources(lb, path, file, fl)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watching := make(chan struct{})
	go func() { defer close(watching); w.Run(watchCtx, NewBalancerSink(sources, lb, quiet)) }()
	b.Cleanup(func() { stopWatch(); <-watching })

	// waitFor polls, every 100µs, for the balancer's config to hold name
	// (or, with present false, not to).
	waitFor := func(name string, present bool) {
		deadline := time.Now().Add(10 * time.Second)
		for slices.ContainsFunc(lb.Config().Backends, func(be config.Backend) bool { return be.Name == name }) != present {
			if time.Now().After(deadline) {
				b.Fatalf("after 10s, %s is still %s the balancer's backends", name, map[bool]string{true: "missing from", false: "in"}[present])
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	// write runs one etcd write with a bound of its own.
	write := func(op func(context.Context) error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := op(ctx); err != nil {
			b.Fatal(err)
		}
	}
	var joins, leaves []time.Duration
	i := 0
	for b.Loop() {
		name := fmt.Sprintf("join-%d", i)
		key := k.Backend(DefaultPool, name)
		t0 := time.Now()
		write(func(ctx context.Context) error {
			_, err := cli.Put(ctx, key, fmt.Sprintf(`{"address":"127.0.0.1:%d"}`, 4000+i%2000))
			return err
		})
		waitFor(name, true)
		joins = append(joins, time.Since(t0))
		t0 = time.Now()
		write(func(ctx context.Context) error {
			_, err := cli.Delete(ctx, key)
			return err
		})
		waitFor(name, false)
		leaves = append(leaves, time.Since(t0))
		i++
	}
	// etcd's keep-alives over a window of three renewal periods (each
	// lease is renewed about every DefaultTTL/3).
	keepAlives, _ := etcdMetric(b, srv, keepAlive)
	measured := time.Now()
	time.Sleep(DefaultTTL)
	keepAlivesAfter, rss := etcdMetric(b, srv, keepAlive)
	b.ReportMetric(percentile(joins, 50).Seconds()*1e3, "join-p50-ms")
	b.ReportMetric(percentile(joins, 99).Seconds()*1e3, "join-p99-ms")
	b.ReportMetric(percentile(leaves, 50).Seconds()*1e3, "leave-p50-ms")
	b.ReportMetric(registered.Seconds(), "register-1000-s")
	b.ReportMetric(started.Seconds()*1e3, "lb-start-ms")
	b.ReportMetric((keepAlivesAfter-keepAlives)/time.Since(measured).Seconds(), "etcd-keepalives/s")
	b.ReportMetric(rss/(1<<20), "etcd-rss-MiB")
	b.ReportMetric((rss-rssEmpty)/(1<<20), "etcd-rss-growth-MiB")
}

// closeAll closes the registrars that were made, 32 at a time.
func closeAll(regs []*Registrar) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, g := range regs {
		if g == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_ = g.Close(ctx)
		})
	}
	wg.Wait()
}

// percentile is the p-th percentile of ds (nearest rank).
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[max(0, (len(s)*p+99)/100-1)]
}

// etcdMetric reads the sum of the series of srv's /metrics whose line
// starts with prefix, and etcd's resident memory in bytes; either missing
// fails.
func etcdMetric(tb testing.TB, srv *etcdtest.Server, prefix string) (sum, rss float64) {
	tb.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + srv.Endpoint() + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	found := false
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(line, prefix):
			sum, found = sum+v, true
		case fields[0] == "process_resident_memory_bytes":
			rss = v
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	if !found || rss == 0 {
		tb.Fatalf("etcd's /metrics has no %s… or no process_resident_memory_bytes", prefix)
	}
	return sum, rss
}
