package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/lemonade-lb/lemonade/fleet"
	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
)

// CtlFleetCmd is ctl fleet: the fleet as etcd holds it, and beside it each
// registered balancer's own view of the backends.
type CtlFleetCmd struct {
	Etcd string `required:"" env:"LEMONADE_FLEET_ETCD" help:"The fleet's etcd and prefix, as a worker's --register takes them." placeholder:"etcd://HOST:PORT[,HOST:PORT...]/PREFIX"`
}

// balancerView is one balancer's status as ctl fleet fetched it.
type balancerView struct {
	fleet.Balancer
	Status *loadbalancer.Snapshot `json:"status,omitempty"`
	Error  string                 `json:"error,omitempty"` // why there is no status
}

// Run implements ctl fleet.
func (f CtlFleetCmd) Run(g *Globals, c *CtlCmd) error {
	e, err := fleet.ParseURL(f.Etcd)
	if err != nil {
		return usageError{fmt.Errorf("--etcd: %w", err)}
	}
	cli, err := fleet.Dial(e)
	if err != nil {
		return fmt.Errorf("--etcd: %w", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), e.DialTimeout)
	defer cancel()
	view, err := fleet.Read(ctx, cli, fleet.Keys{Prefix: e.Prefix})
	if err != nil {
		return fmt.Errorf("cannot read the fleet at %v%s: %w", e.Endpoints, e.Prefix, err)
	}
	balancers := fetchStatuses(view.Balancers, c.Token)
	if c.JSON {
		out, err := json.MarshalIndent(struct {
			Etcd      fleet.View              `json:"etcd"`
			Balancers map[string]balancerView `json:"balancers"`
		}{view, balancers}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(g.stdout, "%s\n", out)
		return err
	}
	printFleet(g.stdout, view, balancers)
	return nil
}

// statusFetches is how many balancers ctl fleet asks for their status at once.
const statusFetches = 16

// fetchStatuses asks every balancer's admin API for its status, several at
// once: one that does not answer costs its timeout once, not once per
// balancer behind it.
func fetchStatuses(registered map[string]fleet.Balancer, token string) map[string]balancerView {
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		slots = make(chan struct{}, statusFetches)
		views = map[string]balancerView{}
	)
	for id, b := range registered {
		wg.Go(func() {
			bv := balancerView{Balancer: b}
			if b.Admin == "" {
				bv.Error = "no admin API"
			} else {
				slots <- struct{}{}
				admin := CtlCmd{Admin: b.Admin, Token: token}
				body, err := admin.call("GET", "api/v1/status", "", nil)
				<-slots
				var s loadbalancer.Snapshot
				switch {
				case err != nil:
					bv.Error = err.Error()
				case json.Unmarshal(body, &s) != nil:
					bv.Error = "its admin API answered something else than a status"
				default:
					bv.Status = &s
				}
			}
			mu.Lock()
			views[id] = bv
			mu.Unlock()
		})
	}
	wg.Wait()
	return views
}

// printFleet writes the fleet as tables: each pool's backends as etcd holds
// them, with a column per balancer saying what it does with each.
func printFleet(w io.Writer, v fleet.View, balancers map[string]balancerView) {
	ids := slices.Sorted(maps.Keys(balancers))
	fmt.Fprintf(w, "fleet %s: %d pools, %d balancers\n", v.Prefix, len(v.Pools), len(ids))
	if v.Settings != nil {
		fmt.Fprintf(w, "\nshared settings (%s/config):\n", v.Prefix)
		for _, line := range strings.Split(strings.TrimRight(*v.Settings, "\n"), "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	for _, pool := range slices.Sorted(maps.Keys(v.Pools)) {
		fmt.Fprintf(w, "\npool %s: %d backends\n", pool, len(v.Pools[pool]))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		header := "  NAME\tADDRESS\tFRAMEWORK\tWEIGHT\tFLEET OVERRIDE"
		for i := range ids {
			header += fmt.Sprintf("\tLB%d", i+1)
		}
		fmt.Fprintln(tw, header)
		for _, m := range v.Pools[pool] {
			row := fmt.Sprintf("  %s\t%s\t%s\t%d\t%s", m.Name, m.Address, dash(m.Framework), m.Weight, overrideText(v.Overrides[pool][m.Name]))
			for _, id := range ids {
				row += "\t" + balancerState(balancers[id], m.Name)
			}
			fmt.Fprintln(tw, row)
		}
		tw.Flush()
	}
	if len(ids) > 0 {
		fmt.Fprintln(w, "\nbalancers:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  \tID\tLISTEN\tADMIN\tSTRATEGY\tBACKENDS")
		for i, id := range ids {
			b := balancers[id]
			what := b.Error
			strategy := "-"
			if b.Status != nil {
				up := 0
				for _, s := range b.Status.Backends {
					if s.Up {
						up++
					}
				}
				what, strategy = fmt.Sprintf("%d, %d up", len(b.Status.Backends), up), b.Status.Strategy
			}
			fmt.Fprintf(tw, "  LB%d\t%s\t%s\t%s\t%s\t%s\n", i+1, id, b.Listen, dash(b.Admin), strategy, what)
		}
		tw.Flush()
	}
	for _, p := range v.Problems {
		fmt.Fprintf(w, "ignored: %s\n", p)
	}
}

// balancerState is what one balancer does with the backend name: "up",
// "down", its override ("drain", "disable", "weight 3"), "-" when it does not
// have it, "?" when its status could not be read.
func balancerState(b balancerView, name string) string {
	if b.Status == nil {
		return "?"
	}
	for _, s := range b.Status.Backends {
		if s.Name == name {
			return backendState(s)
		}
	}
	return "-"
}

func backendState(s backend.Snapshot) string {
	switch {
	case s.Override == loadbalancer.OverrideWeight:
		return fmt.Sprintf("weight %d", s.Weight)
	case s.Override != "":
		return s.Override
	case s.Up:
		return "up"
	}
	return "down"
}

func overrideText(o fleet.Override) string {
	var parts []string
	if o.State != "" {
		parts = append(parts, o.State)
	}
	if o.Weight != 0 {
		parts = append(parts, fmt.Sprintf("weight %d", o.Weight))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
