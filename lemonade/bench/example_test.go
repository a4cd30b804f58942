package bench_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/lemonade-lb/lemonade/lemonade/bench"
)

// A run against a server that answers like a demo worker: 100 requests on
// 4 connections.
func ExampleRun() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"status":true,"service":"worker-gin","duration_ms":0}`)
	}))
	defer srv.Close()

	rep, err := bench.Run(context.Background(), bench.Options{URL: srv.URL + "/work", Concurrency: 4, Requests: 100}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rep.Responses, "responses,", rep.Errors, "errors")
	for _, b := range rep.Backends {
		fmt.Printf("%s: %d (%.0f%%)\n", b.Service, b.Count, b.Share)
	}
	// Output:
	// 100 responses, 0 errors
	// worker-gin: 100 (100%)
}

func ExampleReport_WriteText() {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	rep := &bench.Report{
		URL: "http://127.0.0.1:50501/work", Concurrency: 20, KeepAlive: true,
		Timeout: 10 * time.Second, Duration: 5 * time.Second, Elapsed: 5002 * time.Millisecond,
		Requests: 1003, Responses: 1000, Errors: 3, RequestsPerSecond: 200.52,
		Latency:     bench.Latency{P50: ms(2.21), P90: ms(2.931), P99: ms(4.878), P999: ms(7.873), Max: ms(9.789), Mean: ms(2.32)},
		StatusCodes: map[int]int64{200: 990, 503: 10},
		ErrorKinds: []bench.ErrorCount{
			{Kind: bench.ErrReset, Count: 3, Example: "read tcp 127.0.0.1:40112->127.0.0.1:50501: read: connection reset by peer"},
		},
		Backends: []bench.BackendSummary{
			{Service: "worker-fiber", Count: 600, Share: 60, Latency: bench.Latency{P50: ms(2.2), P99: ms(4.813)}},
			{Service: "worker-nethttp", Count: 390, Share: 39, Latency: bench.Latency{P50: ms(2.21), P99: ms(4.944)}},
			{Service: bench.Unknown, Count: 10, Share: 1, Latency: bench.Latency{P50: ms(0.4123), P99: ms(0.5)}},
		},
	}
	rep.WriteText(os.Stdout)
	// Output:
	// Target        http://127.0.0.1:50501/work
	// Load          20 workers, keep-alive, as fast as possible, for 5s (timeout 10s)
	// Elapsed       5.002s
	// Requests      1003 (200.5 req/s): 1000 responses, 3 errors
	// Latency       p50 2.210ms  p90 2.931ms  p99 4.878ms  p99.9 7.873ms  max 9.789ms  (mean 2.320ms)
	// Status codes  200: 990  503: 10
	// Errors        reset: 3  (e.g. read tcp 127.0.0.1:40112->127.0.0.1:50501: read: connection reset by peer)
	//
	// Backends (the "service" field of each response)
	//    SERVICE          REQUESTS   SHARE       P50       P99
	//    worker-fiber          600   60.0%   2.200ms   4.813ms
	//    worker-nethttp        390   39.0%   2.210ms   4.944ms
	//    (unknown)              10    1.0%   412.3µs   500.0µs
}
