package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/lemonade-lb/lemonade/configfile"
	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/admin"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
)

// CtlCmd drives a running balancer through its admin API. Its flags are the
// subcommands' too (kong binds the parent).
type CtlCmd struct {
	Admin string `default:"http://127.0.0.1:50500" env:"LEMONADE_ADMIN_URL" help:"The balancer's admin API (admin.listen_address) as a URL; default ${default}." placeholder:"URL"`
	Token string `env:"LEMONADE_ADMIN_TOKEN" help:"The balancer's admin.token, when it has one." placeholder:"T"`
	JSON  bool   `name:"json" help:"Print the API's JSON answer, for scripts."`
	Fleet bool   `help:"drain, disable, enable, weight: on every balancer of the fleet (the API's ?scope=fleet; the balancer needs discovery.etcd)."`

	Status  CtlStatusCmd  `cmd:"" help:"Show the balancer and its backends."`
	Drain   CtlDrainCmd   `cmd:"" help:"No new connections to backend ID; the open ones finish."`
	Enable  CtlEnableCmd  `cmd:"" help:"Undo drain, disable and weight on backend ID: it takes connections again, at the config's weight."`
	Disable CtlDisableCmd `cmd:"" help:"No new connections to backend ID, and its open ones are closed after runtime.drain_timeout_millis."`
	Weight  CtlWeightCmd  `cmd:"" help:"Set backend ID's weight to N (1..255) until enable."`
	Apply   CtlApplyCmd   `cmd:"" help:"Replace the running config with FILE (.yaml, .yml, .json, .toml), all or nothing; with --dry-run, only show what would change."`
	Pools   CtlFleetCmd   `cmd:"" name:"fleet" help:"Show the fleet as etcd holds it (pools, backends, shared settings, overrides) and each registered balancer's view of it."`
}

// CtlStatusCmd is ctl status.
type CtlStatusCmd struct{}

// CtlDrainCmd is ctl drain ID.
type CtlDrainCmd struct {
	ID int `arg:"" help:"The backend's id in the config."`
}

// CtlEnableCmd is ctl enable ID.
type CtlEnableCmd struct {
	ID int `arg:"" help:"The backend's id in the config."`
}

// CtlDisableCmd is ctl disable ID.
type CtlDisableCmd struct {
	ID int `arg:"" help:"The backend's id in the config."`
}

// CtlWeightCmd is ctl weight ID N.
type CtlWeightCmd struct {
	ID     int `arg:"" help:"The backend's id in the config."`
	Weight int `arg:"" name:"n" help:"The new weight, 1..255."`
}

// CtlApplyCmd is ctl apply FILE.
type CtlApplyCmd struct {
	File   string `arg:"" type:"existingfile" help:"The whole config, as for lemonade lb -c (the LEMONADE_LB_* variables are not applied)." placeholder:"FILE"`
	DryRun bool   `help:"Show what would change; change nothing."`
}

// Run implements ctl status.
func (CtlStatusCmd) Run(g *Globals, c *CtlCmd) error {
	body, err := c.call("GET", "api/v1/status", "", nil)
	if err != nil || c.JSON {
		return c.print(g, body, err)
	}
	var s loadbalancer.Snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		return fmt.Errorf("the admin API at %s answered a status that is not one: %w", c.Admin, err)
	}
	printStatus(g.stdout, s)
	return nil
}

// Run implements ctl drain.
func (d CtlDrainCmd) Run(g *Globals, c *CtlCmd) error {
	return c.backend(g, "POST", d.ID, "drain", nil, func(b backend.Snapshot) string {
		return fmt.Sprintf("draining: no new connections; open ones (%d now) finish", b.Active)
	})
}

// Run implements ctl enable.
func (e CtlEnableCmd) Run(g *Globals, c *CtlCmd) error {
	return c.backend(g, "POST", e.ID, "enable", nil, func(b backend.Snapshot) string {
		return fmt.Sprintf("enabled: takes new connections, weight %d", b.Weight)
	})
}

// Run implements ctl disable.
func (d CtlDisableCmd) Run(g *Globals, c *CtlCmd) error {
	return c.backend(g, "POST", d.ID, "disable", nil, func(b backend.Snapshot) string {
		return fmt.Sprintf("disabled: no new connections; open ones (%d now) are closed after runtime.drain_timeout_millis", b.Active)
	})
}

// Run implements ctl weight.
func (w CtlWeightCmd) Run(g *Globals, c *CtlCmd) error {
	body, _ := json.Marshal(map[string]int{"weight": w.Weight})
	return c.backend(g, "PUT", w.ID, "weight", body, func(b backend.Snapshot) string {
		return fmt.Sprintf("weight %d until `lemonade ctl enable %d`", b.Weight, b.ID)
	})
}

// Run implements ctl apply.
func (a CtlApplyCmd) Run(g *Globals, c *CtlCmd) error {
	format, err := configfile.Format(a.File)
	if err != nil {
		return usageError{err}
	}
	data, err := os.ReadFile(a.File)
	if err != nil {
		return usageError{err}
	}
	path := "api/v1/config"
	if a.DryRun {
		path += "?dry_run=true"
	}
	body, err := c.call("POST", path, "application/"+format, data)
	if err != nil || c.JSON {
		return c.print(g, body, err)
	}
	var res admin.ConfigResult
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("the admin API at %s answered something else than a config result: %w", c.Admin, err)
	}
	head := "applied " + a.File + ":"
	if res.DryRun {
		head = "dry run, nothing changed; applying " + a.File + " would make:"
	}
	fmt.Fprintln(g.stdout, head)
	for _, line := range res.Summary {
		fmt.Fprintln(g.stdout, "  "+line)
	}
	return nil
}

// backend changes backend id with method on api/v1/backends/ID/action and
// prints one line: what says about the answer.
func (c *CtlCmd) backend(g *Globals, method string, id int, action string, body []byte, what func(backend.Snapshot) string) error {
	contentType := ""
	if body != nil {
		contentType = "application/json"
	}
	path := fmt.Sprintf("api/v1/backends/%d/%s", id, action)
	if c.Fleet {
		path += "?scope=fleet"
	}
	answer, err := c.call(method, path, contentType, body)
	if err != nil || c.JSON {
		return c.print(g, answer, err)
	}
	var b backend.Snapshot
	if err := json.Unmarshal(answer, &b); err != nil {
		return fmt.Errorf("the admin API at %s answered something else than a backend: %w", c.Admin, err)
	}
	fmt.Fprintf(g.stdout, "backend %d (%s at %s) %s\n", b.ID, b.Name, b.Address, what(b))
	return nil
}

// print writes the API's answer as it came, for --json.
func (c *CtlCmd) print(g *Globals, body []byte, err error) error {
	if err != nil {
		return err
	}
	_, err = g.stdout.Write(body)
	return err
}

// ctlClient is the HTTP client of ctl: the API answers at once, but an apply
// may wait for the new backends' names to be looked up.
var ctlClient = &http.Client{Timeout: 30 * time.Second}

// call sends one request to the admin API and returns the body of a 2xx
// answer. Any other answer, or none, is an error that says which.
func (c *CtlCmd) call(method, path, contentType string, body []byte) ([]byte, error) {
	base, err := url.Parse(c.Admin)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" || base.RawQuery != "" {
		return nil, usageError{fmt.Errorf("--admin %q (or LEMONADE_ADMIN_URL): want the admin API's URL, like http://127.0.0.1:50500", c.Admin)}
	}
	rel, err := url.Parse(path)
	if err != nil {
		return nil, err
	}
	target := base.JoinPath(rel.Path)
	target.RawQuery = rel.RawQuery
	req, err := http.NewRequest(method, target.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := ctlClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the admin API at %s: %s", c.Admin, reason(err))
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("the admin API at %s: reading the answer: %s", c.Admin, reason(err))
	}
	if resp.StatusCode/100 == 2 {
		return answer, nil
	}
	var e struct {
		Error    string   `json:"error"`
		Problems []string `json:"problems"`
	}
	if json.Unmarshal(answer, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(answer))
	}
	msg := fmt.Sprintf("the admin API answered %s: %s", resp.Status, e.Error)
	if len(e.Problems) > 0 && !strings.Contains(e.Error, e.Problems[0]) {
		msg += "\n\t" + strings.Join(e.Problems, "\n\t")
	}
	if resp.StatusCode == http.StatusUnauthorized {
		msg += " (pass --token or set LEMONADE_ADMIN_TOKEN to the balancer's admin.token)"
	}
	return nil, errors.New(msg)
}

// reason is the end of a client error's chain, which says what happened
// ("connection refused") without Go's "Get …: dial tcp …:" prefixes.
func reason(err error) string {
	var errno syscall.Errno
	var netErr net.Error
	switch {
	case errors.As(err, &errno):
		return errno.Error()
	case errors.As(err, &netErr) && netErr.Timeout():
		return "no answer within " + ctlClient.Timeout.String()
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// printStatus writes s as a summary line and an aligned table of the
// backends, the removed ones still draining last.
func printStatus(w io.Writer, s loadbalancer.Snapshot) {
	reload := s.LastReloadSource
	if !s.LastReload.IsZero() {
		reload += " at " + s.LastReload.Local().Format(time.DateTime)
	}
	if !s.LastReloadOK {
		reload += ", failed: " + s.LastError
	}
	fmt.Fprintf(w, "listening on %s, strategy %s, %d connections open, %d accepted; last config: %s\n\n",
		s.ListenAddress, s.Strategy, s.Proxy.Active, s.Proxy.Accepted, reload)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tADDRESS\tSTATE\tWEIGHT\tACTIVE\tTOTAL\tTTFB\tERRORS\tOVERRIDE")
	row := func(b backend.Snapshot, removed bool) {
		state := "up"
		switch {
		case removed:
			state = "removed, draining"
		case b.Override == loadbalancer.OverrideDisable:
			state = "disabled"
		case b.Draining:
			state = "draining"
		case !b.Up:
			state = "down"
		}
		ttfb := "-"
		if b.LatencySamples > 0 {
			ttfb = duration(b.Latency)
		}
		override := b.Override
		if override == "" {
			override = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%.1f%%\t%s\n",
			b.ID, b.Name, b.Address, state, b.Weight, b.Active, b.Total, ttfb, b.ErrorRate*100, override)
	}
	for _, b := range s.Backends {
		row(b, false)
	}
	for _, b := range s.Draining {
		row(b, true)
	}
	tw.Flush()
}

// duration prints a response time to a useful precision.
func duration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(10 * time.Millisecond).String()
}
