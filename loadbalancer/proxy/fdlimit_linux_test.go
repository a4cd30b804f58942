package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/strategy"
)

// The descriptor tests run the balancer in a child process (this test
// binary again) under a low RLIMIT_NOFILE, so that only the balancer runs
// out, not the test's clients and backend.
const (
	childBackendEnv = "LEMONADE_PROXY_TEST_CHILD_BACKEND"
	childLimitEnv   = "LEMONADE_PROXY_TEST_CHILD_NOFILE"
)

// runAsChild serves a balancer to the backend named in the environment,
// under the descriptor limit named there, prints its address, and stops
// when its standard input closes, printing its stats as JSON.
func runAsChild() (int, bool) {
	addr := os.Getenv(childBackendEnv)
	if addr == "" {
		return 0, false
	}
	limit, err := strconv.ParseUint(os.Getenv(childLimitEnv), 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2, true
	}
	pool := []*backend.Backend{backend.New(0, "b0", addr, 1)}
	srv := New(slog.New(slog.DiscardHandler), &Table{Backends: pool, Strategy: &strategy.RoundRobin{}}, Settings{})
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2, true
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2, true
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	fmt.Println(ln.Addr().String())
	io.Copy(io.Discard, os.Stdin)
	cancel()
	<-done
	srv.CloseAll()
	srv.Wait(context.Background())
	json.NewEncoder(os.Stdout).Encode(struct {
		Stats Stats
		Up    bool
		Fails uint64
	}{srv.Stats(), pool[0].Up(), pool[0].Snapshot().ConnectFailures})
	return 0, true
}

// Out of descriptors: the client is kept (or waits in the backlog), accepts
// pause, and every client is served once descriptors free — none is
// accepted only to be dropped, and the backend is not blamed. Each
// connection takes two descriptors, so whether accept(2) or the backend's
// socket(2) meets the limit first depends on its parity: both limits are
// run, and the socket(2) case must come up in one.
func TestOutOfDescriptorsClientsWaitAndAreServed(t *testing.T) {
	backendAddr := server(t, func(c net.Conn) { io.Copy(c, c) })
	var waited uint64
	for _, limit := range []int{48, 49} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			waited += outOfDescriptors(t, backendAddr, limit)
		})
	}
	if waited == 0 {
		t.Error("no client waited for a descriptor at its backend socket under either limit")
	}
}

// outOfDescriptors runs a balancer under limit and returns how many of its
// clients waited for a descriptor after their accept.
func outOfDescriptors(t *testing.T, backendAddr string, limit int) uint64 {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childBackendEnv+"="+backendAddr, childLimitEnv+"="+strconv.Itoa(limit))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}()
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	addr := line[:len(line)-1]

	// More clients than the child has descriptors for (2 each).
	const n = 40
	clients := make([]net.Conn, n)
	for i := range clients {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := fmt.Fprintf(c, "client %02d\n", i); err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	// The first ones are served while descriptors last; the last one waits.
	for i := range 10 {
		expectLine(t, clients[i], i)
	}
	clients[n-1].SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := clients[n-1].Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the last client: %v; want it waiting (the limit of %d did not bind)", err, limit)
	}
	clients[n-1].SetDeadline(time.Now().Add(20 * time.Second))
	// Closing served clients frees descriptors: every other client is
	// served in turn, none reset.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 10; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := readLine(clients[i], i); err != nil {
				errs <- err
				return
			}
			clients[i].Close() // and free its descriptors for the next
		}()
	}
	for i := range 10 {
		clients[i].Close()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	stdin.Close()
	var res struct {
		Stats Stats
		Up    bool
		Fails uint64
	}
	if err := json.NewDecoder(out).Decode(&res); err != nil {
		t.Fatalf("child's stats: %v", err)
	}
	if !res.Up || res.Fails != 0 || res.Stats.NoBackend != 0 {
		t.Errorf("the backend was blamed for the host's shortage: up %v, failures %d, stats %+v", res.Up, res.Fails, res.Stats)
	}
	if res.Stats.Accepted != n {
		t.Errorf("accepted %d clients, want %d", res.Stats.Accepted, n)
	}
	t.Logf("stats %+v", res.Stats)
	return res.Stats.WaitedForDescriptors
}

func expectLine(t *testing.T, c net.Conn, i int) {
	t.Helper()
	if err := readLine(c, i); err != nil {
		t.Fatal(err)
	}
}

func readLine(c net.Conn, i int) error {
	want := fmt.Sprintf("client %02d\n", i)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		return fmt.Errorf("client %d: %q, %v", i, got, err)
	}
	return nil
}
