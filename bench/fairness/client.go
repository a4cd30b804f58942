package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type clientConfig struct {
	target   string
	bulk     int
	duration time.Duration
	warmup   time.Duration
	pings    int // per second; 0: back to back
	dir      string
	timeout  time.Duration
}

func runClient(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	var cfg clientConfig
	fs.StringVar(&cfg.target, "target", "", "address to connect to: the balancer, or the backend itself (host:port)")
	fs.IntVar(&cfg.bulk, "bulk", 1, "bulk connections pushing data as fast as they can")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "how long the round trips are measured")
	fs.DurationVar(&cfg.warmup, "warmup", 500*time.Millisecond, "bulk transfer before the measurement starts")
	fs.IntVar(&cfg.pings, "pings", 1000, "1-byte round trips per second on the ping connection; 0: back to back")
	fs.StringVar(&cfg.dir, "dir", "both", "bulk direction: both, up (client to backend) or down (backend to client)")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "a connect or a round trip taking longer fails the run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case cfg.target == "":
		return errors.New("client: -target is required")
	case cfg.bulk < 0:
		return errors.New("client: -bulk must be 0 or more")
	case cfg.duration <= 0:
		return errors.New("client: -duration must be positive")
	case cfg.warmup < 0:
		return errors.New("client: -warmup must be 0 or more")
	case cfg.pings < 0:
		return errors.New("client: -pings must be 0 or more")
	case cfg.timeout <= 0:
		return errors.New("client: -timeout must be positive")
	}
	var mode byte
	switch cfg.dir {
	case "both":
		mode = bulkBoth
	case "up":
		mode = bulkUp
	case "down":
		mode = bulkDown
	default:
		return fmt.Errorf("client: -dir must be both, up or down, not %q", cfg.dir)
	}
	return runMeasurement(cfg, mode, out)
}

// bulkSet is the bulk connections and their byte counters.
type bulkSet struct {
	sent, received atomic.Int64
	stopping       atomic.Bool
	conns          []net.Conn
	wg             sync.WaitGroup

	mu       sync.Mutex
	errs     int
	firstErr error
}

func (b *bulkSet) fail(err error) {
	if b.stopping.Load() {
		return // our own close, at the end of the run
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errs++
	if b.firstErr == nil {
		b.firstErr = err
	}
}

func (b *bulkSet) start(cfg clientConfig, mode byte) error {
	for i := 0; i < cfg.bulk; i++ {
		c, err := net.DialTimeout("tcp", cfg.target, cfg.timeout)
		if err != nil {
			return fmt.Errorf("bulk connection %d: %w", i+1, err)
		}
		b.conns = append(b.conns, c)
		if _, err := c.Write([]byte{mode}); err != nil {
			return fmt.Errorf("bulk connection %d: %w", i+1, err)
		}
		b.sent.Add(1)
		b.wg.Add(2)
		go func() { // reader: whatever comes back
			defer b.wg.Done()
			buf := make([]byte, chunk)
			for {
				n, err := c.Read(buf)
				b.received.Add(int64(n))
				if err != nil {
					if mode != bulkUp || !errors.Is(err, io.EOF) {
						b.fail(err)
					}
					return
				}
			}
		}()
		go func() { // writer: as fast as the path takes it
			defer b.wg.Done()
			if mode == bulkDown {
				return
			}
			buf := make([]byte, chunk)
			for j := range buf {
				buf[j] = byte(j)
			}
			for !b.stopping.Load() {
				n, err := c.Write(buf)
				b.sent.Add(int64(n))
				if err != nil {
					b.fail(err)
					return
				}
			}
		}()
	}
	return nil
}

func (b *bulkSet) stop() {
	b.stopping.Store(true)
	for _, c := range b.conns {
		c.Close()
	}
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

func runMeasurement(cfg clientConfig, mode byte, out io.Writer) error {
	runStart := time.Now()
	ping, err := net.DialTimeout("tcp", cfg.target, cfg.timeout)
	if err != nil {
		return fmt.Errorf("ping connection: %w", err)
	}
	defer ping.Close()
	buf := make([]byte, 1)
	if err := roundTrip(ping, buf, cfg.timeout); err != nil { // not counted
		return fmt.Errorf("first round trip: %w", err)
	}

	var bulk bulkSet
	defer bulk.stop()
	if err := bulk.start(cfg, mode); err != nil {
		return err
	}
	time.Sleep(cfg.warmup)

	sent0, recv0 := bulk.sent.Load(), bulk.received.Load()
	start := time.Now()
	end := start.Add(cfg.duration)
	var interval time.Duration
	if cfg.pings > 0 {
		interval = time.Second / time.Duration(cfg.pings)
	}
	rtts := make([]time.Duration, 0, 1<<16)
	next := start
	var pingErr error
	for {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		if interval > 0 {
			if d := next.Sub(now); d > 0 {
				time.Sleep(d)
			}
			// After a stall, go on from now: no burst to catch up.
			next = next.Add(interval)
			if now := time.Now(); next.Before(now) {
				next = now
			}
		}
		t0 := time.Now()
		if err := roundTrip(ping, buf, cfg.timeout); err != nil {
			pingErr = fmt.Errorf("round trip %d: %w", len(rtts)+1, err)
			break
		}
		rtts = append(rtts, time.Since(t0))
	}
	elapsed := time.Since(start)
	sent1, recv1 := bulk.sent.Load(), bulk.received.Load()
	bulk.stop()
	total := bulk.sent.Load() + bulk.received.Load()
	wall := time.Since(runStart)

	slices.Sort(rtts)
	secs := elapsed.Seconds()
	up := float64(sent1-sent0) / secs / 1e6
	down := float64(recv1-recv0) / secs / 1e6
	var mean time.Duration
	if len(rtts) > 0 {
		var sum time.Duration
		for _, d := range rtts {
			sum += d
		}
		mean = sum / time.Duration(len(rtts))
	}
	rate := "back to back"
	if cfg.pings > 0 {
		rate = fmt.Sprintf("%d/s", cfg.pings)
	}
	fmt.Fprintf(out, "target %s: %d bulk connection(s) (%s), 1 ping connection (%s), %.2fs measured after %v of warm-up\n",
		cfg.target, cfg.bulk, cfg.dir, rate, secs, cfg.warmup)
	fmt.Fprintf(out, "1-byte round trips: %d  p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  mean %.3f ms\n",
		len(rtts), ms(percentile(rtts, 0.50)), ms(percentile(rtts, 0.90)), ms(percentile(rtts, 0.99)),
		ms(percentile(rtts, 1)), ms(mean))
	fmt.Fprintf(out, "bulk: up %.1f MB/s  down %.1f MB/s  both %.1f MB/s  (MB = 10^6 bytes; %d bytes sent+received in %.2fs in all)\n",
		up, down, up+down, total, wall.Seconds())
	bulk.mu.Lock()
	bulkErrs, bulkErr := bulk.errs, bulk.firstErr
	bulk.mu.Unlock()
	if bulkErrs > 0 {
		fmt.Fprintf(out, "bulk errors: %d, the first: %v\n", bulkErrs, bulkErr)
	}
	kv := []string{
		fmt.Sprintf("pings=%d", len(rtts)),
		fmt.Sprintf("p50_ms=%.4f", ms(percentile(rtts, 0.50))),
		fmt.Sprintf("p90_ms=%.4f", ms(percentile(rtts, 0.90))),
		fmt.Sprintf("p99_ms=%.4f", ms(percentile(rtts, 0.99))),
		fmt.Sprintf("max_ms=%.4f", ms(percentile(rtts, 1))),
		fmt.Sprintf("mean_ms=%.4f", ms(mean)),
		fmt.Sprintf("up_MBps=%.1f", up),
		fmt.Sprintf("down_MBps=%.1f", down),
		fmt.Sprintf("bulk_MBps=%.1f", up+down),
		fmt.Sprintf("bytes_total=%d", total),
		fmt.Sprintf("seconds=%.3f", secs),
		fmt.Sprintf("bulk=%d", cfg.bulk),
		fmt.Sprintf("dir=%s", cfg.dir),
		fmt.Sprintf("pings_per_s=%d", cfg.pings),
		fmt.Sprintf("bulk_errors=%d", bulkErrs),
	}
	fmt.Fprintf(out, "result %s\n", strings.Join(kv, " "))
	if pingErr != nil {
		return pingErr
	}
	if bulkErrs > 0 {
		return fmt.Errorf("%d bulk connection(s) failed, the first: %w", bulkErrs, bulkErr)
	}
	if len(rtts) == 0 {
		return errors.New("no round trip completed")
	}
	return nil
}

// percentile returns the nearest-rank p-quantile of the sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
