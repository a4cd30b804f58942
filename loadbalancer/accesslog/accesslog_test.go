package accesslog

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var sample = Record{
	Start:       time.Date(2026, 11, 29, 21, 14, 24, 123456789, time.UTC),
	Duration:    12345678 * time.Nanosecond,
	Client:      netip.MustParseAddrPort("127.0.0.1:51234"),
	Listener:    netip.MustParseAddrPort("127.0.0.1:50501"),
	Backend:     "web-1",
	BackendAddr: netip.MustParseAddrPort("[::1]:50510"),
	BytesIn:     78,
	BytesOut:    1234,
	Connect:     210 * time.Microsecond,
	TTFB:        1234567 * time.Nanosecond,
	Retries:     1,
	End:         ClientFIN,
}

func TestTextLine(t *testing.T) {
	got := string(AppendText(nil, &sample))
	want := "time=2026-11-29T21:14:24.135802Z client=127.0.0.1:51234 listener=127.0.0.1:50501 backend=web-1 backend_address=[::1]:50510 bytes_in=78 bytes_out=1234 duration_ms=12.345 connect_ms=0.210 ttfb_ms=1.234 retries=1 end=client_fin\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	none := Record{Start: sample.Start, Connect: -1, TTFB: -1, End: NoBackend, Backend: `a "quoted" name`}
	got = string(AppendText(nil, &none))
	want = `time=2026-11-29T21:14:24.123456Z client=- listener=- backend="a \"quoted\" name" backend_address=- bytes_in=0 bytes_out=0 duration_ms=0.000 connect_ms=- ttfb_ms=- retries=0 end=no_backend` + "\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestJSONLine(t *testing.T) {
	got := string(AppendJSON(nil, &sample))
	want := `{"time":"2026-11-29T21:14:24.135802Z","client":"127.0.0.1:51234","listener":"127.0.0.1:50501","backend":"web-1","backend_address":"[::1]:50510","bytes_in":78,"bytes_out":1234,"duration_ms":12.345,"connect_ms":0.210,"ttfb_ms":1.234,"retries":1,"end":"client_fin"}` + "\n"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// Every name reads back as itself; absent values are null.
	for _, name := range []string{"plain", `quote " and \ backslash`, "tab\tnew\nline\x01", "ünïcode ✓", "bad \xff byte"} {
		r := Record{Start: sample.Start, Backend: name, Connect: -1, TTFB: -1, End: Shutdown}
		var m map[string]any
		if err := json.Unmarshal(AppendJSON(nil, &r), &m); err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if want := strings.ToValidUTF8(name, "\uFFFD"); m["backend"] != want {
			t.Errorf("backend %q read back as %q", want, m["backend"])
		}
		if m["client"] != nil || m["connect_ms"] != nil || m["ttfb_ms"] != nil || m["end"] != "shutdown" {
			t.Errorf("absent values not null: %v", m)
		}
	}
}

func TestEveryEndHasAName(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range Ends() {
		s := e.String()
		if s == "unknown" || seen[s] {
			t.Errorf("End %d is named %q", e, s)
		}
		seen[s] = true
	}
	if End(200).String() != "unknown" {
		t.Error("an End out of range must read unknown")
	}
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// waitWritten waits until n lines are written in all.
func waitWritten(t *testing.T, l *Log, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.Stats().Written < n {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %+v, want %d written", l.Stats(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Rotation: the file is renamed, Reopen makes a new one at the path; the
// lines before are in the old file, those after in the new one.
func TestReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	out, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l := New(nil)
	defer l.Close()
	l.Use(out, Text)
	r := sample
	l.Send(r)
	l.Send(r)
	waitWritten(t, l, 2)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	r.End = BackendReset
	l.Send(r) // queued before the reopen: still the old file
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	r.End = IdleTimeout
	l.Send(r)
	waitWritten(t, l, 4)
	old, cur := lines(t, path+".1"), lines(t, path)
	if len(old) != 3 || !strings.HasSuffix(old[2], "end=backend_reset") {
		t.Errorf("rotated file: %q", old)
	}
	if len(cur) != 1 || !strings.HasSuffix(cur[0], "end=idle_timeout") {
		t.Errorf("new file: %q", cur)
	}

	// A path that cannot be opened again keeps the old file in use.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err == nil {
		t.Error("Reopen onto a directory succeeded")
	}
	if s := l.Stats(); s.Errors != 1 || s.Path != path {
		t.Errorf("after a failed reopen: %+v", s)
	}
	l.Send(r)
	waitWritten(t, l, 5)
}

// Use switches file and format after the lines queued before; a zero
// Output turns it off and later lines are counted as dropped.
func TestUseSwitchesFileAndFormat(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	outA, err := Open(a)
	if err != nil {
		t.Fatal(err)
	}
	l := New(nil)
	defer l.Close()
	l.Use(outA, Text)
	l.Send(sample)
	outB, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	l.Use(outB, JSON)
	l.Send(sample)
	waitWritten(t, l, 2)
	if got := lines(t, a); len(got) != 1 || !strings.HasPrefix(got[0], "time=") {
		t.Errorf("a.log: %q", got)
	}
	if got := lines(t, b); len(got) != 1 || !json.Valid([]byte(got[0])) {
		t.Errorf("b.log: %q", got)
	}
	l.Use(Output{}, Text)
	if s := l.Stats(); s.Path != "" {
		t.Errorf("off, yet path %q", s.Path)
	}
	l.Send(sample)
	deadline := time.Now().Add(5 * time.Second)
	for l.Stats().Dropped != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if s := l.Stats(); s.Dropped != 1 || s.Written != 2 {
		t.Errorf("off: %+v, want the line dropped", s)
	}
}

func TestOpenNamesThePath(t *testing.T) {
	_, err := Open("/nonexistent-dir/access.log")
	if err == nil || !strings.Contains(err.Error(), "access_log.path") || !strings.Contains(err.Error(), "/nonexistent-dir/access.log") {
		t.Errorf("Open: %v", err)
	}
	if _, err := ParseFormat("xml"); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("ParseFormat: %v", err)
	}
}

// Close writes what is queued; a Send after Close is dropped, not a panic.
func TestCloseWritesWhatIsQueued(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	out, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l := New(nil)
	l.Use(out, Text)
	for range 100 {
		l.Send(sample)
	}
	l.Close()
	if got := lines(t, path); len(got) != 100 {
		t.Errorf("%d lines after Close, want 100", len(got))
	}
	l.Send(sample)
	l.Close()
	if err := l.Reopen(); !errors.Is(err, ErrOff) {
		t.Errorf("Reopen after Close: %v, want ErrOff", err)
	}
	if s := l.Stats(); s.Written != 100 || s.Dropped != 1 {
		t.Errorf("after Close: %+v, want 100 written and the late line dropped", s)
	}
}

// A write that fails (a full disk, a closed descriptor) drops its lines and
// counts them as dropped, not written.
func TestFailedWriteCountsItsLinesDropped(t *testing.T) {
	out, err := Open(filepath.Join(t.TempDir(), "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	out.o.f.Close() // every write now fails
	l := New(nil)
	l.Use(out, Text)
	for range 3 {
		l.Send(sample)
	}
	l.Close()
	if s := l.Stats(); s.Written != 0 || s.Dropped != 3 || s.Errors == 0 {
		t.Errorf("after a failed write: %+v, want 3 dropped, none written, an error", s)
	}
}

// docs/operations.md explains every end a line can carry.
func TestDocsExplainEveryEnd(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range Ends() {
		if !strings.Contains(string(data), "| `"+e.String()+"` |") {
			t.Errorf("docs/operations.md has no row for end `%s`", e)
		}
	}
}
