package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/fleet"
	"github.com/lemonade-lb/lemonade/observability/testnet"
)

// ctl fleet asks every balancer at once, and says for each why it has no
// status: no admin API, a refused connection, an answer that is no status.
func TestFetchStatuses(t *testing.T) {
	var inside, most atomic.Int64
	release := make(chan struct{})
	status := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inside.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if n == 3 { // all three status fetches are in at once
			close(release)
		}
		select { // fetched one after another, each waits its bound out and most is 1
		case <-release:
		case <-time.After(testnet.WaitBound):
		}
		inside.Add(-1)
		_, _ = w.Write([]byte(`{"strategy":"least_connections"}`))
	}))
	defer status.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("<html>"))
	}))
	defer garbage.Close()
	refused := "http://" + testnet.Addr(t)

	views := fetchStatuses(map[string]fleet.Balancer{
		"a": {Admin: status.URL}, "b": {Admin: status.URL}, "c": {Admin: status.URL},
		"none": {}, "refused": {Admin: refused}, "garbage": {Admin: garbage.URL},
	}, "")
	for _, id := range []string{"a", "b", "c"} {
		if s := views[id].Status; s == nil || s.Strategy != "least_connections" || views[id].Error != "" {
			t.Errorf("%s: %+v", id, views[id])
		}
	}
	if most.Load() != 3 {
		t.Errorf("at most %d status fetches at once; want the three together", most.Load())
	}
	for id, want := range map[string]string{"none": "no admin API", "refused": "refused", "garbage": "something else than a status"} {
		if v := views[id]; v.Status != nil || !strings.Contains(v.Error, want) {
			t.Errorf("%s: %+v; want an error saying %q", id, v, want)
		}
	}
}
