// Package etcdtest runs a real etcd server for tests, on loopback: the
// etcd binary (Debian's etcd-server), started on free ports with a data
// directory of the test's own. Stop and Start restart it on the same ports
// and data, for outage tests.
package etcdtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lemonade-lb/lemonade/observability/testnet"
)

// Binary is the etcd executable the tests run.
const Binary = "etcd"

// Server is one etcd member of a test.
type Server struct {
	tb     testing.TB
	dir    string
	client string // host:port of the client URL
	peer   string // host:port of the peer URL
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *os.File
	own    *clientv3.Client // Put's
}

// Start starts a single-member etcd and waits until it answers. It is
// stopped at the end of the test.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if _, err := exec.LookPath(Binary); err != nil {
		tb.Fatalf("%s not found (install the etcd-server package: apt-get install etcd-server): %v", Binary, err)
	}
	s := &Server{tb: tb, dir: tb.TempDir(), client: testnet.Addr(tb), peer: testnet.Addr(tb)}
	s.Start()
	tb.Cleanup(s.Stop)
	return s
}

// Endpoint is the server's client address, host:port.
func (s *Server) Endpoint() string { return s.client }

// Start starts the server again after Stop, on the same ports and data,
// and waits until it answers.
func (s *Server) Start() {
	s.tb.Helper()
	if s.cmd != nil {
		s.tb.Fatal("etcdtest: Start of a running server")
	}
	stderr, err := os.Create(filepath.Join(s.dir, "etcd.log"))
	if err != nil {
		s.tb.Fatal(err)
	}
	s.stderr = stderr
	cmd := exec.Command(Binary,
		"--name", "test",
		"--data-dir", filepath.Join(s.dir, "data"),
		"--listen-client-urls", "http://"+s.client,
		"--advertise-client-urls", "http://"+s.client,
		"--listen-peer-urls", "http://"+s.peer,
		"--initial-advertise-peer-urls", "http://"+s.peer,
		"--initial-cluster", "test=http://"+s.peer,
		"--logger", "zap", "--log-level", "warn",
	)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("starting %s: %v", Binary, err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.exited) }()

	cli := s.Client()
	deadline := time.Now().Add(testnet.WaitBound)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "probe")
		cancel()
		if err == nil {
			return
		}
		select {
		case <-s.exited:
			s.tb.Fatalf("%s exited at start: %s", Binary, s.log())
		default:
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("%s did not answer within %v: %v\n%s", Binary, testnet.WaitBound, err, s.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
	s.stderr.Close()
}

// log is the server's output, for a failure message.
func (s *Server) log() string {
	data, _ := os.ReadFile(filepath.Join(s.dir, "etcd.log"))
	return strings.TrimSpace(string(data))
}

// Client returns a client of the server, closed at the end of the test.
func (s *Server) Client() *clientv3.Client {
	s.tb.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.client}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		s.tb.Fatal(err)
	}
	s.tb.Cleanup(func() { cli.Close() })
	return cli
}

// Put sets key to value, failing the test on an error.
func (s *Server) Put(key, value string) {
	s.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.own == nil {
		s.own = s.Client()
	}
	if _, err := s.own.Put(ctx, key, value); err != nil {
		s.tb.Fatal(fmt.Errorf("etcd put %s: %w", key, err))
	}
}
