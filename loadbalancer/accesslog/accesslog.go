// Package accesslog is the balancer's TCP access log: one line per proxied
// connection when it ends, with how it ended (End), in text (logfmt) or JSON.
//
// The event loops never wait for it: Send puts a Record in a bounded queue
// and returns; one writer goroutine formats and writes the lines, in order.
// The writer is not woken per line (a wake-up costs the sender more than the
// line): it writes what is queued every FlushEvery, or as soon as the queue
// is a quarter full, with one write for many lines. When the queue is full
// the line is dropped and counted (Stats.Dropped). Reopen opens the
// file again (log rotation, SIGUSR1); Use changes the file or the format at
// a reload, after the lines queued before are written to the old one.
package accesslog

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// End is how a connection ended.
type End uint8

// The ways a connection ends. A clean end is named by the side whose FIN
// came first; an aborted one by the side that reset first.
const (
	endUnknown   End = iota // never logged: the engine always names one
	ClientFIN               // both sides closed; the client's FIN came first
	BackendFIN              // both sides closed; the backend's FIN came first
	ClientReset             // the client reset (also while its backend was dialled)
	BackendReset            // the backend reset (or its socket failed)
	IdleTimeout             // no bytes either way for proxy.idle_timeout
	DrainTimeout            // its backend was removed or disabled and the drain timeout passed
	NoBackend               // no backend was eligible, or every dial failed
	NoDescriptor            // this host had no descriptor (or port) for the backend connection in time
	Shutdown                // the balancer shut down (its drain timeout passed)
)

var endNames = [...]string{
	endUnknown:   "unknown",
	ClientFIN:    "client_fin",
	BackendFIN:   "backend_fin",
	ClientReset:  "client_reset",
	BackendReset: "backend_reset",
	IdleTimeout:  "idle_timeout",
	DrainTimeout: "drain_timeout",
	NoBackend:    "no_backend",
	NoDescriptor: "no_descriptor",
	Shutdown:     "shutdown",
}

// String returns the name a line carries for e, such as "client_fin"
// ("unknown" for a value that is not one of the Ends).
func (e End) String() string {
	if int(e) < len(endNames) {
		return endNames[e]
	}
	return endNames[endUnknown]
}

// Ends lists every End a line can carry, in documentation order.
func Ends() []End {
	return []End{ClientFIN, BackendFIN, ClientReset, BackendReset, IdleTimeout, DrainTimeout, NoBackend, NoDescriptor, Shutdown}
}

// Record is one connection, as the engine saw it end. Durations are -1 when
// the moment never came (no backend connected, no answer).
type Record struct {
	Start       time.Time      // accepted
	Duration    time.Duration  // from the accept to the end
	Client      netip.AddrPort // zero when unknown
	Listener    netip.AddrPort // the listener's address
	Backend     string         // the backend's name; "" when none was connected or tried
	BackendAddr netip.AddrPort // the address connected; zero when none
	BytesIn     int64          // client → backend
	BytesOut    int64          // backend → client
	Connect     time.Duration  // from the accept until the backend connection was up, retries included
	TTFB        time.Duration  // from the client's first bytes (or the connect, when the backend speaks first) to the backend's first bytes
	Retries     int            // dials after a failed one
	End         End            // how the connection ended
}

// Formats lists the valid formats.
var Formats = []string{"text", "json"}

// Format is how a line is written.
type Format uint8

const (
	Text Format = iota // logfmt: key=value pairs
	JSON               // one JSON object per line
)

// ParseFormat reads a format name (one of Formats).
func ParseFormat(s string) (Format, error) {
	switch s {
	case "text", "":
		return Text, nil
	case "json":
		return JSON, nil
	}
	return 0, fmt.Errorf("unknown access log format %q (text or json)", s)
}

// Stdout is the path that writes to the standard output.
const Stdout = "-"

// QueueSize bounds the lines waiting for the writer.
const QueueSize = 4096

// FlushEvery is the longest a line waits before it is written (while no
// burst wakes the writer sooner).
const FlushEvery = 100 * time.Millisecond

// batchSize is what the writer gathers before a write, at most.
const batchSize = 64 << 10

// stuckAfter bounds how long Use, Reopen and Close wait for a writer that
// cannot write (a pipe nobody reads, a hung file system): a reload or a
// shutdown must not hang on the log.
const stuckAfter = 5 * time.Second

// ErrStuck is returned when the writer did not answer within stuckAfter.
var ErrStuck = errors.New("the access log's writer is stuck writing (a pipe nobody reads, a hung file system?)")

// Stats are the log's counters.
type Stats struct {
	Path    string `json:"path"`    // "" when off
	Written uint64 `json:"written"` // lines written
	Dropped uint64 `json:"dropped"` // lines dropped: the queue was full, a write failed, or the log was off
	Errors  uint64 `json:"errors"`  // failed writes and reopens
}

// Log is an access log. New starts its writer; Close stops it.
type Log struct {
	errLog *slog.Logger
	queue  chan Record
	nudge  chan struct{} // a quarter of the queue is full: write now
	ctl    chan func()
	stop   chan struct{}
	done   chan struct{}
	closed atomic.Bool
	on     atomic.Bool // an output is in use

	written, dropped, errors atomic.Uint64

	mu   sync.Mutex // the fields below: set by the writer, read by Stats
	path string

	// the writer's own
	tick     *time.Ticker // runs while there is an output
	out      *output
	format   Format
	batch    []byte // formatted lines not yet written
	lines    int    // how many lines batch holds
	cut      bool   // a failed write left a partial line in the file
	lastWarn time.Time
}

// output is an open destination.
type output struct {
	path string
	f    *os.File
	own  bool // f is closed with the output (not stdout)
}

// New returns a log that writes nothing until Use gives it a file; errLog
// receives its own failures (at most one line per 10s).
func New(errLog *slog.Logger) *Log {
	if errLog == nil {
		errLog = slog.New(slog.DiscardHandler)
	}
	l := &Log{
		errLog: errLog,
		queue:  make(chan Record, QueueSize),
		nudge:  make(chan struct{}, 1),
		ctl:    make(chan func(), 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		tick:   time.NewTicker(FlushEvery),
	}
	l.tick.Stop() // until Use gives an output
	go l.run()
	return l
}

// Output is a destination opened by Open, not yet in use.
type Output struct{ o *output }

// Open opens path for appending (created 0644 if missing); Stdout is the
// standard output. Opening is apart from Use so that a reload can fail
// before it changes anything.
func Open(path string) (Output, error) {
	if path == Stdout {
		return Output{&output{path: path, f: os.Stdout}}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return Output{}, fmt.Errorf("access_log.path: %w", err)
	}
	return Output{&output{path: path, f: f, own: true}}, nil
}

// Close closes an Output that was never put in use.
func (o Output) Close() {
	if o.o != nil {
		o.o.close()
	}
}

// Use writes the next lines to out in format f, once the lines queued
// before are written to the current output, which is then closed. A zero
// Output turns the log off: later lines are dropped (and counted). If the
// writer is stuck, the change waits its turn and ErrStuck is returned.
func (l *Log) Use(out Output, f Format) error {
	if out.o == nil {
		l.on.Store(false) // first: the lines queued before are still written
	}
	queued, err := l.do(func() {
		l.flush()
		if l.out != nil {
			l.out.close()
		}
		l.out, l.format = out.o, f
		l.on.Store(l.out != nil)
		if l.out != nil {
			l.tick.Reset(FlushEvery)
		} else {
			l.tick.Stop()
		}
		l.mu.Lock()
		l.path = ""
		if out.o != nil {
			l.path = out.o.path
		}
		l.mu.Unlock()
	})
	if !queued {
		out.Close()
	}
	return err
}

// ErrOff is Reopen's answer when there is no file to reopen.
var ErrOff = errors.New("the access log is off")

// Reopen opens the current file again, after the lines queued before are
// written to it: after a rotation, the file at the path is a new one. When
// the file cannot be opened, the old one stays in use and the error is
// returned.
func (l *Log) Reopen() error {
	var err error
	_, stuck := l.do(func() {
		l.flush()
		if l.out == nil {
			err = ErrOff
			return
		}
		if !l.out.own { // stdout: nothing to reopen
			return
		}
		var next Output
		if next, err = Open(l.out.path); err != nil {
			l.errors.Add(1)
			return
		}
		l.out.close()
		l.out = next.o
	})
	if stuck != nil {
		return stuck
	}
	return err
}

// do runs f in the writer after the lines queued before are written, and
// waits for it at most stuckAfter: then queued says whether f will still run
// in its turn, and the error is ErrStuck. A closed log runs nothing.
func (l *Log) do(f func()) (queued bool, err error) {
	if l.closed.Load() {
		return false, ErrOff
	}
	ran := make(chan struct{})
	timer := time.NewTimer(stuckAfter)
	defer timer.Stop()
	select {
	case l.ctl <- func() { f(); close(ran) }:
	case <-l.done:
		return false, ErrOff
	case <-timer.C:
		return false, ErrStuck
	}
	select {
	case <-ran:
		return true, nil
	case <-l.done:
		return true, nil
	case <-timer.C:
		return true, ErrStuck
	}
}

// Send queues r and returns at once; a full queue drops it (counted).
func (l *Log) Send(r Record) {
	if !l.on.Load() || l.closed.Load() {
		l.dropped.Add(1)
		return
	}
	select {
	case l.queue <- r:
		if len(l.queue) >= QueueSize/4 {
			select {
			case l.nudge <- struct{}{}:
			default:
			}
		}
	default:
		l.dropped.Add(1)
	}
}

// Stats reads the counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	p := l.path
	l.mu.Unlock()
	return Stats{Path: p, Written: l.written.Load(), Dropped: l.dropped.Load(), Errors: l.errors.Load()}
}

// Close writes the lines queued, closes the file and stops the writer.
// Lines sent after it are dropped (counted). A writer stuck for stuckAfter
// is left behind, and ErrStuck returned.
func (l *Log) Close() error {
	if !l.closed.Swap(true) {
		close(l.stop)
	}
	select {
	case <-l.done:
	case <-time.After(stuckAfter):
		return ErrStuck
	}
	for { // a Send that raced with Close: counted, not lost silently
		select {
		case <-l.queue:
			l.dropped.Add(1)
		default:
			return nil
		}
	}
}

func (l *Log) run() {
	defer close(l.done)
	defer l.tick.Stop()
	for {
		select {
		case <-l.tick.C:
			l.drain()
			l.flush()
		case <-l.nudge:
			l.drain()
			l.flush()
		case f := <-l.ctl:
			l.drain()
			f()
		case <-l.stop:
			l.drain()
			l.flush()
			if l.out != nil {
				l.out.close()
				l.out = nil
			}
			return
		}
	}
}

// drain formats the lines queued now, writing whenever a batch is full.
func (l *Log) drain() {
	for {
		select {
		case r := <-l.queue:
			l.add(r)
		default:
			return
		}
	}
}

func (l *Log) add(r Record) {
	if l.out == nil {
		l.dropped.Add(1)
		return
	}
	if l.format == JSON {
		l.batch = AppendJSON(l.batch, &r)
	} else {
		l.batch = AppendText(l.batch, &r)
	}
	l.lines++
	if len(l.batch) >= batchSize {
		l.flush()
	}
}

// flush writes the batch: its lines are counted written once they are. A
// failed write drops the batch (counted), and the next line written starts
// on a line of its own.
func (l *Log) flush() {
	if l.out == nil || l.lines == 0 {
		return
	}
	b := l.batch
	if l.cut {
		b = append([]byte{'\n'}, b...)
	}
	n, err := l.out.f.Write(b)
	switch {
	case err == nil:
		l.written.Add(uint64(l.lines))
		l.cut = false
	default:
		l.dropped.Add(uint64(l.lines))
		l.cut = n > 0 || l.cut
		l.errors.Add(1)
		if now := time.Now(); now.Sub(l.lastWarn) >= 10*time.Second {
			l.lastWarn = now
			l.errLog.Error("cannot write the access log: lines dropped", "path", l.out.path, "error", err, "errors", l.errors.Load())
		}
	}
	l.batch, l.lines = l.batch[:0], 0
}

func (o *output) close() {
	if o.own {
		o.f.Close()
	}
}
