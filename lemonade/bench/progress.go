package bench

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// How often each view updates.
const (
	barEvery   = 200 * time.Millisecond
	plainEvery = time.Second
)

// view shows the progress of a run.
type view interface {
	update(elapsed time.Duration, done, failed int64)
	finish()
}

// startProgress shows r's progress on w until stop is called: a bar on a
// terminal, otherwise a plain line every plainEvery (logs, CI, pipes).
func startProgress(w io.Writer, r *run, start time.Time) (stop func()) {
	if w == nil {
		return func() {}
	}
	var v view
	every := plainEvery
	if isTerminal(w) {
		v, every = newBarView(w, r.o), barEvery
	} else {
		v = &plainView{w: w, o: r.o}
	}
	quit, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case now := <-tick.C:
				v.update(now.Sub(start), r.done.Load(), r.failed.Load())
			}
		}
	}()
	return func() {
		close(quit)
		<-exited
		v.finish()
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// plainView prints one line per update, e.g.
//
//	bench: 3s of 10s, 34567 requests (11522 req/s now), 0 errors
type plainView struct {
	w           io.Writer
	o           Options
	lastElapsed time.Duration
	lastDone    int64
}

func (p *plainView) update(elapsed time.Duration, done, failed int64) {
	now := 0.0
	if dt := elapsed - p.lastElapsed; dt > 0 {
		now = float64(done-p.lastDone) / dt.Seconds()
	}
	p.lastElapsed, p.lastDone = elapsed, done
	var of string
	if p.o.Requests > 0 {
		of = fmt.Sprintf("%d/%d requests", done, p.o.Requests)
	} else {
		of = fmt.Sprintf("%s of %s, %d requests", elapsed.Round(100*time.Millisecond), p.o.Duration, done)
	}
	fmt.Fprintf(p.w, "bench: %s (%.0f req/s now), %d errors\n", of, now, failed)
}

func (p *plainView) finish() {}

// barView draws a progress bar: of requests with -n, of time with -d.
type barView struct {
	bar *progressbar.ProgressBar
	o   Options
}

func newBarView(w io.Writer, o Options) *barView {
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetPredictTime(true),
	}
	max := int64(o.Duration / time.Millisecond)
	if o.Requests > 0 {
		max = int64(o.Requests)
		opts = append(opts, progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("req"))
	}
	return &barView{bar: progressbar.NewOptions64(max, opts...), o: o}
}

func (b *barView) update(elapsed time.Duration, done, failed int64) {
	// Set64 first: Describe draws again, with both up to date. No
	// throttling: the ticker paces the drawing.
	if b.o.Requests > 0 {
		_ = b.bar.Set64(done)
		b.bar.Describe(fmt.Sprintf("%d errors", failed))
		return
	}
	_ = b.bar.Set64(min(int64(elapsed/time.Millisecond), int64(b.o.Duration/time.Millisecond)))
	rate := float64(done) / elapsed.Seconds()
	b.bar.Describe(fmt.Sprintf("%d requests (%.0f req/s), %d errors", done, rate, failed))
}

// finish erases the bar so that the report starts on a clean line.
func (b *barView) finish() { _ = b.bar.Clear() }
