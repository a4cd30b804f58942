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
// start with them, and what etcd sees (keep-alives per second, its RSS).
func BenchmarkFleetAt1000Workers(b *testing.B) {
	srv := etcdtest.Start(b)
	k := Keys{Prefix: "/scale"}
	cli := srv.Client()

	began := time.Now()
	regs := make([]*Registrar, scaleWorkers)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	errs := make(chan error, scaleWorkers)
	for i := range regs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			g, err := Register(cli, k, DefaultPool, fmt.Sprintf("w-%04d", i),
				Registration{Address: fmt.Sprintf("127.0.0.1:%d", 20000+i), Framework: "bench"}, DefaultTTL, 10*time.Second, quiet)
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
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, g := range regs {
			if g != nil {
				_ = g.Close(ctx)
			}
		}
	})

	// The balancer starts as `lemonade lb` does: a full read, the config
	// built with it, then the watch.
	began = time.Now()
	w, err := NewWatcher(cli, k, DefaultPool, quiet)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fl, err := w.Sync(ctx)
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
		b.Fatal(err)
	}
	started := time.Since(began)
	if n := len(lb.Config().Backends); n != scaleWorkers {
		b.Fatalf("the balancer started with %d backends; want %d", n, scaleWorkers)
	}
	sources := loadbalancer.NewSources(lb, path, file, fl)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watching := make(chan struct{})
	go func() { defer close(watching); w.Run(watchCtx, NewBalancerSink(sources, lb, quiet)) }()
	b.Cleanup(func() { stopWatch(); <-watching; stopLB(); <-lb.Done() })

	// waitBackends polls, every 100µs, for the balancer's config to hold
	// want backends.
	waitBackends := func(want int) {
		deadline := time.Now().Add(10 * time.Second)
		for len(lb.Config().Backends) != want {
			if time.Now().After(deadline) {
				b.Fatalf("after 10s the balancer has %d backends; want %d", len(lb.Config().Backends), want)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	var joins, leaves []time.Duration
	b.ResetTimer()
	for i := range b.N {
		key := k.Backend(DefaultPool, fmt.Sprintf("join-%d", i))
		t0 := time.Now()
		if _, err := cli.Put(ctx, key, fmt.Sprintf(`{"address":"127.0.0.1:%d"}`, 30000+i%2000)); err != nil {
			b.Fatal(err)
		}
		waitBackends(scaleWorkers + 1)
		joins = append(joins, time.Since(t0))
		t0 = time.Now()
		if _, err := cli.Delete(ctx, key); err != nil {
			b.Fatal(err)
		}
		waitBackends(scaleWorkers)
		leaves = append(leaves, time.Since(t0))
	}
	b.StopTimer()
	// etcd's keep-alives over a window of three renewal periods (each
	// lease is renewed about every DefaultTTL/3).
	const keepAlive = `grpc_server_msg_received_total{grpc_method="LeaseKeepAlive"`
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
}

// percentile is the p-th percentile of ds (nearest rank).
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// etcdMetric reads the sum of the series of srv's /metrics whose line
// starts with prefix, and etcd's resident memory in bytes.
func etcdMetric(tb testing.TB, srv *etcdtest.Server, prefix string) (sum, rss float64) {
	tb.Helper()
	resp, err := http.Get("http://" + srv.Endpoint() + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
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
			sum += v
		case fields[0] == "process_resident_memory_bytes":
			rss = v
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return sum, rss
}
