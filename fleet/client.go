package fleet

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// Dial returns an etcd client for e. It does not wait for etcd: a client
// reconnects by itself, and the first request says whether etcd is there.
func Dial(e config.Etcd) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:            e.Endpoints,
		Username:             e.Username,
		Password:             e.Password,
		DialTimeout:          e.DialTimeout,
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(), // its reconnect chatter is ours to log, once
	}
	if e.TLS.Enabled() {
		t, err := tlsConfig(e.TLS)
		if err != nil {
			return nil, err
		}
		cfg.TLS = t
	}
	return clientv3.New(cfg)
}

// tlsConfig reads the files of t.
func tlsConfig(t config.EtcdTLS) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("discovery.etcd.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("discovery.etcd.tls.ca_file %s: no PEM certificate in it", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("discovery.etcd.tls.cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// ParseURL reads a registration URL, etcd://HOST:PORT[,HOST:PORT…]/PREFIX,
// into the etcd settings it names (the other settings at their defaults).
// User information in the URL (etcd://user:password@host…) sets the
// username and password.
func ParseURL(raw string) (config.Etcd, error) {
	e := config.Default().Discovery.Etcd
	rest, ok := strings.CutPrefix(raw, "etcd://")
	if !ok {
		return e, fmt.Errorf("%q: want etcd://HOST:PORT[,HOST:PORT...]/PREFIX", raw)
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		u, err := url.Parse("etcd://" + rest[:at+1] + "x")
		if err != nil || u.User == nil {
			return e, fmt.Errorf("%q: bad user information", redactURL(raw))
		}
		e.Username = u.User.Username()
		e.Password, _ = u.User.Password()
		if e.Username == "" || e.Password == "" {
			return e, fmt.Errorf("%q: give both a user name and a password, or neither", redactURL(raw))
		}
		rest = rest[at+1:]
	}
	hosts, prefix, ok := strings.Cut(rest, "/")
	if !ok {
		return e, fmt.Errorf("%q: no /PREFIX after the endpoints (e.g. etcd://127.0.0.1:2379/lemonade)", redactURL(raw))
	}
	e.Prefix = "/" + prefix
	e.Endpoints = nil
	for _, h := range strings.Split(hosts, ",") {
		if _, _, err := net.SplitHostPort(h); err != nil || strings.HasPrefix(h, ":") {
			return e, fmt.Errorf("%q: endpoint %q: want HOST:PORT", redactURL(raw), h)
		}
		e.Endpoints = append(e.Endpoints, h)
	}
	c := config.Default()
	c.Discovery.Etcd = e
	c.Backends = []config.Backend{{Name: "x", Address: "127.0.0.1:1", Weight: 1}}
	if err := c.Validate(); err != nil {
		return e, fmt.Errorf("%q: %w", redactURL(raw), err)
	}
	return e, nil
}

// redactURL hides a password in a registration URL.
func redactURL(raw string) string {
	rest, ok := strings.CutPrefix(raw, "etcd://")
	at := strings.LastIndex(rest, "@")
	if !ok || at < 0 {
		return raw
	}
	user, _, _ := strings.Cut(rest[:at], ":")
	return "etcd://" + user + ":<redacted>@" + rest[at+1:]
}

// logOnce logs the first of a run of the same trouble and the recovery.
type logOnce struct {
	log  *slog.Logger
	down bool
}

func (l *logOnce) lost(msg string, err error, args ...any) {
	if l.down {
		return
	}
	l.down = true
	l.log.Warn(msg, append(args, "error", err)...)
}

func (l *logOnce) back(msg string, args ...any) {
	if !l.down {
		return
	}
	l.down = false
	l.log.Info(msg, args...)
}
