package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lemonade-lb/lemonade/fleet"
	"github.com/lemonade-lb/lemonade/fleet/etcdtest"
	"github.com/lemonade-lb/lemonade/observability/testnet"
)

// fleetLB is one balancer of a fleet test.
type fleetLB struct {
	proc        *proc
	addr, admin string
}

// startFleetLB starts a balancer that finds its backends in the fleet at
// etcd under prefix, and waits until it listens.
func startFleetLB(t *testing.T, endpoint, prefix, extra string) fleetLB {
	t.Helper()
	lb := fleetLB{addr: freeAddr(t), admin: freeAddr(t)}
	path := filepath.Join(t.TempDir(), "lb.yaml")
	body := fmt.Sprintf("proxy: {listen_address: %q}\nadmin: {listen_address: %q}\nhealth: {interval: 200ms}\nruntime: {drain_timeout_millis: 1000}\n"+
		"discovery:\n  etcd: {endpoints: [%q], prefix: %q, dial_timeout: 3s}\n%s", lb.addr, lb.admin, endpoint, prefix, extra)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	lb.proc = start(t, nil, "lb", "-c", path, "--log-level", "warn")
	waitListening(t, lb.proc, lb.addr)
	return lb
}

// view is what a balancer's admin API says of its config.
func (lb fleetLB) view(t *testing.T) (strategy string, backends []string) {
	t.Helper()
	var c struct {
		Strategy string `json:"strategy"`
		Backends []struct {
			Name string `json:"name"`
		} `json:"backends"`
	}
	if err := json.Unmarshal([]byte(mustGet(t, "http://"+lb.admin+"/api/v1/config")), &c); err != nil {
		t.Fatal(err)
	}
	for _, b := range c.Backends {
		backends = append(backends, b.Name)
	}
	slices.Sort(backends)
	return c.Strategy, backends
}

// override is the override a balancer's status shows on the backend name.
func (lb fleetLB) override(t *testing.T, name string) string {
	t.Helper()
	var s struct {
		Backends []struct {
			Name     string `json:"name"`
			Override string `json:"override"`
		} `json:"backends"`
	}
	if err := json.Unmarshal([]byte(mustGet(t, "http://"+lb.admin+"/api/v1/status")), &s); err != nil {
		t.Fatal(err)
	}
	for _, b := range s.Backends {
		if b.Name == name {
			return b.Override
		}
	}
	return "missing"
}

// answering collects the services that answer /health through the
// balancer, over n requests.
func (lb fleetLB) answering(n int) map[string]bool {
	seen := map[string]bool{}
	for range n {
		_, body, err := httpGet("http://" + lb.addr + "/health")
		if err != nil {
			continue
		}
		var h struct {
			Service string `json:"service"`
		}
		if json.Unmarshal([]byte(body), &h) == nil {
			seen[h.Service] = true
		}
	}
	return seen
}

// stopGracefully sends SIGTERM to each process, running or not, and wants
// exit 0 from those that ran (a graceful stop also writes their coverage).
func stopGracefully(t *testing.T, procs ...*proc) {
	t.Helper()
	for _, p := range procs {
		if p.running() {
			if code := p.signal(t, syscall.SIGTERM); code != 0 {
				t.Errorf("%v exited %d after SIGTERM", p.cmd.Args, code)
			}
		}
	}
}

// registeredWorker starts a worker that joins the fleet at url.
func registeredWorker(t *testing.T, fw, name, url string) (*proc, string) {
	t.Helper()
	addr := freeAddr(t)
	p := start(t, nil, "worker", "-f", fw, "-a", addr, "-n", name, "-d", "0", "--register", url, "--log-level", "warn")
	waitListening(t, p, addr)
	return p, addr
}

// Three balancers and four workers of different frameworks through one
// etcd: every balancer routes to all four; a killed worker leaves every
// balancer within its lease's TTL and a second; a new one joins within a
// second of its registration; a change of the shared settings reaches all.
func TestFleetOfThreeBalancersAndFourWorkers(t *testing.T) {
	srv := etcdtest.Start(t)
	const prefix = "/fleet"
	url := "etcd://" + srv.Endpoint() + prefix
	workers := map[string]*proc{}
	for _, fw := range []string{"nethttp", "gin", "echo", "fiber"} {
		workers["w-"+fw], _ = registeredWorker(t, fw, "w-"+fw, url)
	}
	var lbs []fleetLB
	for range 3 {
		lbs = append(lbs, startFleetLB(t, srv.Endpoint(), prefix, ""))
	}
	all := []string{"w-echo", "w-fiber", "w-gin", "w-nethttp"}
	for i, lb := range lbs {
		testnet.WaitFor(t, fmt.Sprintf("balancer %d answers from all four workers", i), func() bool {
			seen := lb.answering(8)
			return len(seen) == 4
		})
		if _, backends := lb.view(t); !slices.Equal(backends, all) {
			t.Fatalf("balancer %d has %v; want %v", i, backends, all)
		}
	}

	// A crash: the registration stays until its lease expires.
	killed := time.Now()
	workers["w-gin"].signal(t, syscall.SIGKILL)
	for i, lb := range lbs {
		testnet.WaitFor(t, fmt.Sprintf("balancer %d drops the killed worker", i), func() bool {
			_, backends := lb.view(t)
			return !slices.Contains(backends, "w-gin")
		})
	}
	if took, bound := time.Since(killed), fleet.DefaultTTL+time.Second; took > bound {
		t.Errorf("the balancers dropped a killed worker %v after the kill; want within the TTL and a second, %v", took, bound)
	} else {
		t.Logf("a killed worker left every balancer %v after the kill (TTL %v)", took.Round(time.Millisecond), fleet.DefaultTTL)
	}

	// A new worker: every balancer uses it within a second of its registration.
	cli := srv.Client()
	key := fleet.Keys{Prefix: prefix}.Backend(fleet.DefaultPool, "w-new")
	newWorker, _ := registeredWorker(t, "echo", "w-new", url)
	var registered time.Time
	testnet.WaitFor(t, "w-new registered", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, key)
		registered = time.Now()
		return err == nil && len(resp.Kvs) == 1
	})
	for i, lb := range lbs {
		testnet.WaitFor(t, fmt.Sprintf("balancer %d sends to w-new", i), func() bool {
			return lb.answering(8)["w-new"]
		})
	}
	if took := time.Since(registered); took > time.Second {
		t.Errorf("the balancers used a new worker %v after it registered; want within a second", took)
	}

	// The shared settings: every balancer switches strategy.
	srv.Put(prefix+"/config", "strategy: least_connections\n")
	for i, lb := range lbs {
		testnet.WaitFor(t, fmt.Sprintf("balancer %d switches to least_connections", i), func() bool {
			s, _ := lb.view(t)
			return s == "least_connections"
		})
	}
	// A fleet-wide drain, through one balancer's API (lemonade ctl --fleet),
	// reaches all three.
	var id int
	var cfg struct {
		Backends []struct {
			ID   int    `json:"id"`
			Name string `json:"name"`
		} `json:"backends"`
	}
	if err := json.Unmarshal([]byte(mustGet(t, "http://"+lbs[0].admin+"/api/v1/config")), &cfg); err != nil {
		t.Fatal(err)
	}
	for _, b := range cfg.Backends {
		if b.Name == "w-nethttp" {
			id = b.ID
		}
	}
	if code, out, stderr := runLemonade(t, nil, "ctl", "--admin", "http://"+lbs[0].admin, "--fleet", "drain", fmt.Sprint(id)); code != 0 {
		t.Fatalf("ctl --fleet drain: exit %d\n%s%s", code, out, stderr)
	}
	for i, lb := range lbs {
		testnet.WaitFor(t, fmt.Sprintf("balancer %d drains w-nethttp", i), func() bool {
			return lb.override(t, "w-nethttp") == "drain"
		})
	}
	// ctl fleet: etcd's view and each balancer's, side by side.
	code, out, stderr := runLemonade(t, nil, "ctl", "fleet", "--etcd", url)
	if code != 0 {
		t.Fatalf("ctl fleet: exit %d\n%s%s", code, out, stderr)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "w-nethttp ") && strings.Count(line, "drain") != 4 {
			t.Errorf("ctl fleet shows w-nethttp as %q; want the fleet's drain and each balancer's", line)
		}
	}
	if !strings.Contains(out, "pool default: 4 backends") || !strings.Contains(out, "LB3") || !strings.Contains(out, "strategy: least_connections") {
		t.Errorf("ctl fleet:\n%s", out)
	}
	code, out, stderr = runLemonade(t, nil, "ctl", "--json", "fleet", "--etcd", url)
	var doc struct {
		Balancers map[string]struct {
			Status *struct{ Strategy string } `json:"status"`
		} `json:"balancers"`
	}
	if err := json.Unmarshal([]byte(out), &doc); code != 0 || err != nil || len(doc.Balancers) != 3 {
		t.Fatalf("ctl --json fleet: exit %d, %v, %d balancers\n%s%s", code, err, len(doc.Balancers), out, stderr)
	}
	for id, b := range doc.Balancers {
		if b.Status == nil || b.Status.Strategy != "least_connections" {
			t.Errorf("ctl --json fleet: balancer %s: %+v", id, b.Status)
		}
	}

	if code, out, stderr := runLemonade(t, nil, "ctl", "--admin", "http://"+lbs[2].admin, "--fleet", "enable", fmt.Sprint(id)); code != 0 {
		t.Fatalf("ctl --fleet enable: exit %d\n%s%s", code, out, stderr)
	}
	for i, lb := range lbs {
		testnet.WaitFor(t, fmt.Sprintf("balancer %d enables w-nethttp", i), func() bool {
			return lb.override(t, "w-nethttp") == ""
		})
	}

	// An invalid value is rejected by all, and nothing changes.
	srv.Put(prefix+"/config", "strategy: random\n")
	for i, lb := range lbs {
		testnet.WaitFor(t, fmt.Sprintf("balancer %d rejects strategy random", i), func() bool {
			return strings.Contains(mustGet(t, "http://"+lb.admin+"/api/v1/status"), `etcd /fleet/config: strategy: unknown value \"random\"`)
		})
		if s, _ := lb.view(t); s != "least_connections" {
			t.Errorf("balancer %d runs %s after a rejected change", i, s)
		}
	}

	// A graceful stop: the workers leave the pool, the balancers their list.
	stopGracefully(t, workers["w-nethttp"], workers["w-echo"], workers["w-fiber"], newWorker)
	for i, lb := range lbs {
		testnet.WaitFor(t, fmt.Sprintf("balancer %d sees every worker leave", i), func() bool {
			_, backends := lb.view(t)
			return len(backends) == 0
		})
	}
	stopGracefully(t, lbs[0].proc, lbs[1].proc, lbs[2].proc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if resp, err := cli.Get(ctx, prefix+"/balancers/", clientv3.WithPrefix()); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("after a graceful stop, balancers still listed: %v, %v", resp, err)
	}
}

// etcd unreachable at the start: a balancer with static backends starts on
// them; one without exits 1 with an error that says why.
func TestFleetStartWithoutEtcd(t *testing.T) {
	dead := freeAddr(t) // nothing listens there
	backend, _ := tcpServer(t, func(c net.Conn) { c.Close() })
	lb := startFleetLB(t, dead, "/fleet", fmt.Sprintf("backends: [{address: %q}]\n", backend))
	if !lb.proc.running() {
		t.Fatal("the balancer with a static backend did not start")
	}
	if !strings.Contains(lb.proc.stderr.String(), "etcd cannot be reached: starting on the config file's static backends") {
		t.Errorf("no clear log of the missing etcd:\n%s", lb.proc.stderr.String())
	}
	stopGracefully(t, lb.proc)

	path := filepath.Join(t.TempDir(), "lb.yaml")
	body := fmt.Sprintf("proxy: {listen_address: %q}\ndiscovery:\n  etcd: {endpoints: [%q], dial_timeout: 500ms}\n", freeAddr(t), dead)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runLemonade(t, nil, "lb", "-c", path)
	if code != 1 || !strings.Contains(stderr, "etcd cannot be reached and the config file lists no static backend") || !strings.Contains(stderr, dead) {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and an error naming the endpoint", code, stderr)
	}
}

// etcd stopped under load: the balancer keeps serving the last known pool
// and not one request fails; etcd back: changes flow again.
func TestFleetSurvivesAnEtcdOutageUnderLoad(t *testing.T) {
	srv := etcdtest.Start(t)
	const prefix = "/fleet"
	url := "etcd://" + srv.Endpoint() + prefix
	w1, _ := registeredWorker(t, "nethttp", "w-1", url)
	w2, _ := registeredWorker(t, "gin", "w-2", url)
	lb := startFleetLB(t, srv.Endpoint(), prefix, "")
	testnet.WaitFor(t, "the balancer answers from both workers", func() bool { return len(lb.answering(8)) == 2 })

	// Load: four clients, a request each at a time, until stopped (at most a minute).
	load := testnet.StartLoad(t, 4, time.Minute, func() error { return getHealth(lb.addr) })

	srv.Stop()
	testnet.WaitFor(t, "the balancer notices etcd is gone", func() bool {
		return strings.Contains(lb.proc.stderr.String(), "serving the last known pool")
	})
	during := load.OK()
	testnet.WaitFor(t, "requests go on during the outage", func() bool { return load.OK() > during+50 })
	srv.Start()
	w3, _ := registeredWorker(t, "echo", "w-3", url)
	testnet.WaitFor(t, "the balancer uses a worker registered after the outage", func() bool { return lb.answering(8)["w-3"] })
	load.Stop()
	if n := load.Failed(); n != 0 {
		t.Fatalf("%d of %d requests failed through an etcd outage; want none; the first: %v", n, n+load.OK(), load.FirstError())
	}
	t.Logf("%d requests through an etcd outage, none failed", load.OK())
	stopGracefully(t, lb.proc, w1, w2, w3)
}

// A worker's registration problems are errors at the start that say what to
// change: a bad URL or an address no balancer can reach (exit 2), a name
// another live worker holds (exit 1).
func TestWorkerRegistrationErrors(t *testing.T) {
	srv := etcdtest.Start(t)
	url := "etcd://" + srv.Endpoint() + "/fleet"
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-a", freeAddr(t), "--register", "http://" + srv.Endpoint() + "/fleet"}, 2, "want etcd://"},
		{[]string{"-a", "0.0.0.0:" + strings.Split(freeAddr(t), ":")[1], "--register", url}, 2, "--advertise"},
	} {
		code, _, stderr := runLemonade(t, nil, append([]string{"worker", "-f", "nethttp", "-n", "w"}, c.args...)...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("worker %v: exit %d, stderr:\n%s\nwant exit %d saying %q", c.args, code, stderr, c.code, c.want)
		}
	}
	first, _ := registeredWorker(t, "nethttp", "same", url)
	code, _, stderr := runLemonade(t, nil, "worker", "-f", "gin", "-a", freeAddr(t), "-n", "same", "--register", url)
	if code != 1 || !strings.Contains(stderr, "the backend name is taken") {
		t.Errorf("a second worker under a live name: exit %d, stderr:\n%s", code, stderr)
	}
	stopGracefully(t, first)
}
