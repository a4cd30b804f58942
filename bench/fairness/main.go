// Command fairness measures how a TCP load balancer shares one event loop
// between bulk transfers and a latency-sensitive connection (issue #9,
// defect 4: "one busy connection starves its loop").
//
// It has three subcommands:
//
//	fairness backend -addr A
//	fairness client -target A -bulk N -duration D -pings P
//	fairness probe -target A
//
// The backend serves every connection by its first byte: 'B' is a bulk
// connection both ways (it discards all it reads and writes an endless
// stream back), 'U' a bulk upload (discard only), 'D' a bulk download
// (endless stream, what it reads is discarded); any other first byte makes
// an echo connection, which writes every byte it reads back at once.
//
// The client opens N bulk connections that push data as fast as they can
// and read whatever comes back, plus one ping connection doing 1-byte round
// trips, and prints the round trips' count, p50, p90, p99 and max and the
// bulk MB/s, then the same as one line of key=value pairs starting with
// "result ". bench/fairness.sh runs it through HAProxy and Lemonade side by
// side.
//
// The probe does one 1-byte round trip, for scripts waiting for a path to
// work end to end.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

const usageText = `usage:
  fairness backend -addr 127.0.0.1:9000
  fairness client -target 127.0.0.1:8000 [-bulk 1] [-duration 5s] [-pings 1000] [-warmup 500ms] [-dir both]
  fairness probe -target 127.0.0.1:8000 [-timeout 1s]

Run "fairness SUBCOMMAND -h" for the flags of one subcommand.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usageText)
		os.Exit(2)
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "backend":
		err = runBackend(args)
	case "client":
		err = runClient(args, os.Stdout)
	case "probe":
		err = runProbe(args)
	case "help", "-h", "-help", "--help":
		fmt.Print(usageText)
		return
	default:
		fmt.Fprintf(os.Stderr, "fairness: unknown subcommand %q\n%s", os.Args[1], usageText)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fairness:", err)
		os.Exit(1)
	}
}

// pingByte is what the ping connection sends: anything but a bulk mode byte.
const pingByte = 'p'

// roundTrip writes one byte on c and waits for it to come back.
func roundTrip(c net.Conn, buf []byte, timeout time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	buf[0] = pingByte
	if _, err := c.Write(buf[:1]); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		return err
	}
	if buf[0] != pingByte {
		return fmt.Errorf("echo returned %q, want %q", buf[0], pingByte)
	}
	return nil
}

func runProbe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	target := fs.String("target", "", "address to probe (host:port)")
	timeout := fs.Duration("timeout", time.Second, "time allowed for the connect and for the round trip")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *target == "" {
		return errors.New("probe: -target is required")
	}
	c, err := net.DialTimeout("tcp", *target, *timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	return roundTrip(c, make([]byte, 1), *timeout)
}
