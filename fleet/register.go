package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNameTaken is returned by a registration whose name a live registration
// of another address holds.
var ErrNameTaken = errors.New("the backend name is taken")

// DefaultTTL is how long a registration outlives its process: a crashed
// worker leaves its pool this long after its last keep-alive.
const DefaultTTL = 5 * time.Second

// Registrar keeps one backend registered under a lease of its TTL, kept
// alive. If the lease is lost (etcd unreachable for longer than the TTL, or
// restarted without it), it registers again as soon as etcd answers.
type Registrar struct {
	cli   *clientv3.Client
	key   string
	value string
	ttl   time.Duration
	log   *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	lease      clientv3.LeaseID // 0: not registered now
	registered chan struct{}    // closed at the first registration
	taken      chan error       // the first attempt's ErrNameTaken
}

// Register registers r as the backend name of pool under k, and keeps it
// registered until Close. It waits up to wait for the first registration;
// if etcd does not answer by then it logs so and returns, and keeps trying.
// A live registration of another address under the name is ErrNameTaken.
func Register(cli *clientv3.Client, k Keys, pool, name string, r Registration, ttl, wait time.Duration, log *slog.Logger) (*Registrar, error) {
	if err := CheckName("pool", pool); err != nil {
		return nil, err
	}
	if err := CheckName("backend", name); err != nil {
		return nil, err
	}
	return registerKey(cli, k.Backend(pool, name), r, ttl, wait, log)
}

// Balancer is the value of a balancer's key, PREFIX/balancers/ID: where an
// operator's tools (lemonade ctl fleet) find its admin API.
type Balancer struct {
	Listen string `json:"listen"`          // proxy.listen_address
	Admin  string `json:"admin,omitempty"` // admin.listen_address as a URL; "" when off
}

// Balancers is the prefix of every balancer's key, ending in "/".
func (k Keys) Balancers() string { return k.Prefix + "/balancers/" }

// RegisterBalancer registers the balancer id (its listen address and host,
// say) as Register does a backend, so that the fleet's tools list it.
func RegisterBalancer(cli *clientv3.Client, k Keys, id string, b Balancer, ttl, wait time.Duration, log *slog.Logger) (*Registrar, error) {
	if err := CheckName("balancer", id); err != nil {
		return nil, err
	}
	return registerKey(cli, k.Balancers()+id, b, ttl, wait, log)
}

// registerKey keeps key set to value (JSON) under a lease of ttl.
func registerKey(cli *clientv3.Client, key string, v any, ttl, wait time.Duration, log *slog.Logger) (*Registrar, error) {
	value, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if ttl < time.Second {
		ttl = time.Second // etcd leases count whole seconds
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Registrar{
		cli: cli, key: key, value: string(value), ttl: ttl, log: log.With("key", key),
		cancel: cancel, done: make(chan struct{}), registered: make(chan struct{}), taken: make(chan error, 1),
	}
	go g.run(ctx)
	select {
	case <-g.registered:
	case err := <-g.taken:
		cancel()
		<-g.done
		return nil, err
	case <-time.After(wait):
		g.log.Warn("etcd did not answer: going on unregistered for now, registering as soon as it does", "waited", wait)
	}
	return g, nil
}

// Key is the registration's key.
func (g *Registrar) Key() string { return g.key }

// Registered is closed once the backend is first registered.
func (g *Registrar) Registered() <-chan struct{} { return g.registered }

func (g *Registrar) run(ctx context.Context) {
	defer close(g.done)
	trouble := logOnce{log: g.log}
	first := true
	for backoff := 100 * time.Millisecond; ctx.Err() == nil; backoff = min(2*backoff, 5*time.Second) {
		lease, err := g.register(ctx)
		if err != nil {
			if first && errors.Is(err, ErrNameTaken) {
				g.taken <- err
				first = false
			}
			if ctx.Err() == nil {
				trouble.lost("registration failed; retrying", err)
				sleep(ctx, backoff)
			}
			continue
		}
		backoff = 100 * time.Millisecond
		if first {
			first = false
			close(g.registered)
			g.log.Info("registered", "ttl", g.ttl)
		}
		trouble.back("registered again")
		alive, err := g.cli.KeepAlive(ctx, lease)
		if err != nil {
			trouble.lost("keep-alive failed; registering again", err)
			continue
		}
		for range alive { // closes when ctx ends or the lease is gone
		}
		if ctx.Err() == nil {
			trouble.lost("lease lost; registering again", nil)
		}
	}
}

// register grants a lease and puts the key under it, unless another live
// registration of another address holds the name.
func (g *Registrar) register(ctx context.Context) (clientv3.LeaseID, error) {
	rctx, cancel := context.WithTimeout(ctx, g.ttl)
	defer cancel()
	grant, err := g.cli.Grant(rctx, int64(g.ttl/time.Second))
	if err != nil {
		return 0, err
	}
	// Free, or held by this same address (a restart within the old lease's
	// TTL): ours. Anything else is another worker under the same name.
	free := clientv3.Compare(clientv3.CreateRevision(g.key), "=", 0)
	same := clientv3.Compare(clientv3.Value(g.key), "=", g.value)
	put := clientv3.OpPut(g.key, g.value, clientv3.WithLease(grant.ID))
	resp, err := g.cli.Txn(rctx).If(free).Then(put).Else(clientv3.OpTxn([]clientv3.Cmp{same}, []clientv3.Op{put}, []clientv3.Op{clientv3.OpGet(g.key)})).Commit()
	if err == nil && !resp.Succeeded {
		inner := resp.Responses[0].GetResponseTxn()
		if !inner.Succeeded {
			held := ""
			if kvs := inner.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
				held = string(kvs[0].Value)
			}
			err = fmt.Errorf("%w: %s holds %s; give each its own name", ErrNameTaken, g.key, held)
		}
	}
	if err != nil {
		_, _ = g.cli.Revoke(rctx, grant.ID)
		return 0, err
	}
	g.mu.Lock()
	g.lease = grant.ID
	g.mu.Unlock()
	return grant.ID, nil
}

// Close stops keeping the registration alive, deletes the key and revokes
// the lease, so the balancers drain the backend at once instead of at the
// TTL. Call it before the backend stops serving. It gives up when ctx ends:
// the lease then expires by itself.
func (g *Registrar) Close(ctx context.Context) error {
	g.cancel()
	<-g.done
	g.mu.Lock()
	lease := g.lease
	g.mu.Unlock()
	if lease == 0 {
		return nil
	}
	// Only our own registration: a replacement may hold the name by now.
	ours := clientv3.Compare(clientv3.LeaseValue(g.key), "=", lease)
	if _, err := g.cli.Txn(ctx).If(ours).Then(clientv3.OpDelete(g.key)).Commit(); err != nil {
		return err
	}
	_, err := g.cli.Revoke(ctx, lease)
	return err
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
