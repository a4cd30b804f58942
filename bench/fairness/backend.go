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

// Bulk mode bytes: the first byte of a bulk connection says which way the
// data flows. Anything else is an echo connection.
const (
	bulkBoth = 'B' // discard what is read, write an endless stream back
	bulkUp   = 'U' // discard what is read, write nothing
	bulkDown = 'D' // write an endless stream, discard what is read
)

// chunk is the size of the bulk reads and writes.
const chunk = 128 << 10

func runBackend(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "fairness backend listening on %s\n", ln.Addr())
	return serveListener(ln)
}

// serveListener serves every connection ln accepts until ln is closed.
func serveListener(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// EMFILE and the like: back off instead of spinning or exiting.
			fmt.Fprintln(os.Stderr, "fairness backend: accept:", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go serve(c)
	}
}

func serve(c net.Conn) {
	defer c.Close()
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		return // a health check or a probe that connected and left
	}
	switch first[0] {
	case bulkBoth, bulkDown:
		serveBulk(c, true)
	case bulkUp:
		serveBulk(c, false)
	default:
		serveEcho(c, first[0])
	}
}

// serveBulk discards everything it reads until the peer closes and, when
// write is set, writes an endless stream meanwhile.
func serveBulk(c net.Conn, write bool) {
	done := make(chan struct{})
	if write {
		go func() {
			defer close(done)
			buf := make([]byte, chunk)
			for i := range buf {
				buf[i] = byte(i)
			}
			for {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	} else {
		close(done)
	}
	buf := make([]byte, chunk)
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
	}
	c.Close() // stops the writer
	<-done
}

// serveEcho writes first back, then every byte it reads, at once.
func serveEcho(c net.Conn, first byte) {
	buf := make([]byte, 4096)
	buf[0] = first
	if _, err := c.Write(buf[:1]); err != nil {
		return
	}
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
