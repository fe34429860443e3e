package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
)

// testLogger sends the log's lines to t.Log and counts them, so tests can
// check that recovery logs one line per problem.
type logCounter struct {
	mu    sync.Mutex
	lines []string
}

func (c *logCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, strings.TrimSpace(string(p)))
	return len(p), nil
}

func (c *logCounter) warnings() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, l := range c.lines {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

func newLogger() (*slog.Logger, *logCounter) {
	c := &logCounter{}
	return slog.New(slog.NewTextHandler(c, nil)), c
}

// suiteConfig is one configuration the conformance suite runs against.
type suiteConfig struct {
	name string
	mode SyncMode
	fs   func(t *testing.T) (FS, string)
}

func osDir(t *testing.T) (FS, string) { return OSFS, t.TempDir() }
func memDir(t *testing.T) (FS, string) {
	return newMemFS(1), "/buf"
}

var suiteConfigs = []suiteConfig{
	{"always/os", SyncAlways, osDir},
	{"interval/os", SyncInterval, osDir},
	{"none/os", SyncNone, osDir},
	{"always/mem", SyncAlways, memDir},
	{"interval/mem", SyncInterval, memDir},
	{"none/mem", SyncNone, memDir},
}

// env is one test's log directory, clock and options; reopen closes
// nothing, so tests control Close.
type env struct {
	t     *testing.T
	fs    FS
	dir   string
	clock *sensorstest.Clock
	opts  Opts
	logs  *logCounter
}

func newEnv(t *testing.T, cfg suiteConfig) *env {
	fsys, dir := cfg.fs(t)
	lg, lc := newLogger()
	c := sensorstest.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	return &env{t: t, fs: fsys, dir: dir, clock: c, logs: lc, opts: Opts{
		Sync: cfg.mode, FS: fsys, Clock: c, Log: lg, SegmentBytes: 64 << 10,
	}}
}

func (e *env) open() *Log {
	e.t.Helper()
	l, err := Open(e.dir, e.opts)
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.t.Cleanup(func() { l.Close() })
	return l
}

func body(i int) []byte { return fmt.Appendf(nil, "record-%06d", i) }

func appendN(t *testing.T, l *Log, from, n int) []uint64 {
	t.Helper()
	seqs := make([]uint64, 0, n)
	for i := from; i < from+n; i++ {
		s, err := l.Append(body(i))
		if err != nil {
			t.Fatalf("Append(%d): %v", i, err)
		}
		seqs = append(seqs, s)
	}
	// Interval mode shows records to readers once synced; the suite
	// syncs explicitly instead of advancing time.
	if err := l.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return seqs
}

// readAll reads every record after `after` that is readable now. It uses
// a cancelled context: Read returns what is there and never blocks.
func readAll(t *testing.T, l *Log, after uint64) []Record {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out []Record
	for {
		recs, err := l.Read(ctx, after, 100, nil)
		if errors.Is(err, context.Canceled) {
			return out
		}
		if err != nil {
			t.Fatalf("Read(after %d): %v", after, err)
		}
		for _, r := range recs {
			if r.Seq <= after {
				t.Fatalf("Read(after %d) returned seq %d", after, r.Seq)
			}
			after = r.Seq
			out = append(out, Record{Seq: r.Seq, Body: append([]byte(nil), r.Body...), Time: r.Time})
		}
	}
}

func checkSeqs(t *testing.T, recs []Record, first uint64, bodyFrom int) {
	t.Helper()
	for i, r := range recs {
		if r.Seq != first+uint64(i) {
			t.Fatalf("record %d: seq %d, want %d", i, r.Seq, first+uint64(i))
		}
		if want := body(bodyFrom + i); !bytes.Equal(r.Body, want) {
			t.Fatalf("seq %d: body %q, want %q", r.Seq, r.Body, want)
		}
	}
}

func TestConformance(t *testing.T) {
	for _, cfg := range suiteConfigs {
		t.Run(cfg.name, func(t *testing.T) {
			t.Run("AppendReadAck", func(t *testing.T) { testAppendReadAck(t, cfg) })
			t.Run("ReopenContinuesSeq", func(t *testing.T) { testReopen(t, cfg) })
			t.Run("CloseReopenResumesAfterAcked", func(t *testing.T) { testResumeAfterAck(t, cfg) })
			t.Run("ConcurrentAppenders", func(t *testing.T) { testConcurrent(t, cfg) })
			t.Run("ReaderBlocksAndCancels", func(t *testing.T) { testReaderBlocks(t, cfg) })
			t.Run("Rotation", func(t *testing.T) { testRotation(t, cfg) })
			t.Run("ReclaimOnlyAcked", func(t *testing.T) { testReclaim(t, cfg) })
			t.Run("MaxBytesDropOldest", func(t *testing.T) { testDropOldest(t, cfg) })
			t.Run("MaxBytesRejectNew", func(t *testing.T) { testRejectNew(t, cfg) })
			t.Run("MaxAge", func(t *testing.T) { testMaxAge(t, cfg) })
			t.Run("MaxAgeClockSteps", func(t *testing.T) { testMaxAgeClockSteps(t, cfg) })
			t.Run("ClosedErrors", func(t *testing.T) { testClosed(t, cfg) })
		})
	}
}

func testAppendReadAck(t *testing.T, cfg suiteConfig) {
	e := newEnv(t, cfg)
	l := e.open()
	seqs := appendN(t, l, 0, 50)
	if seqs[0] != 1 || seqs[49] != 50 {
		t.Fatalf("seqs %d..%d, want 1..50", seqs[0], seqs[49])
	}
	recs := readAll(t, l, 0)
	if len(recs) != 50 {
		t.Fatalf("read %d records, want 50", len(recs))
	}
	checkSeqs(t, recs, 1, 0)
	if !recs[0].Time.Equal(e.clock.Now()) {
		t.Errorf("record time %v, want the clock's %v", recs[0].Time, e.clock.Now())
	}
	// Read from the middle.
	mid := readAll(t, l, 30)
	checkSeqs(t, mid, 31, 30)
	st := l.Stats()
	if st.Backlog != 50 || st.LastSeq != 50 || st.AckedSeq != 0 {
		t.Fatalf("stats before ack: %+v", st)
	}
	if !st.Oldest.Equal(recs[0].Time) {
		t.Errorf("Oldest %v, want %v", st.Oldest, recs[0].Time)
	}
	l.Ack(20)
	l.Ack(10) // going back is a no-op
	st = l.Stats()
	if st.AckedSeq != 20 || st.Backlog != 30 {
		t.Fatalf("after Ack(20): acked %d backlog %d", st.AckedSeq, st.Backlog)
	}
	l.Ack(1000) // beyond the end: clamps
	if st = l.Stats(); st.AckedSeq != 50 || st.Backlog != 0 || !st.Oldest.IsZero() {
		t.Fatalf("after Ack(1000): %+v", st)
	}
	if e := l.Epoch(); e == 0 || e != st.Epoch {
		t.Fatalf("epoch %x, stats %x", e, st.Epoch)
	}
}

func testReopen(t *testing.T, cfg suiteConfig) {
	e := newEnv(t, cfg)
	l := e.open()
	appendN(t, l, 0, 10)
	epoch := l.Epoch()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = e.open()
	if l.Epoch() != epoch {
		t.Fatalf("epoch changed across reopen: %x -> %x", epoch, l.Epoch())
	}
	seqs := appendN(t, l, 10, 10)
	if seqs[0] != 11 {
		t.Fatalf("first seq after reopen %d, want 11", seqs[0])
	}
	recs := readAll(t, l, 0)
	if len(recs) != 20 {
		t.Fatalf("read %d, want 20", len(recs))
	}
	checkSeqs(t, recs, 1, 0)
	if w := e.logs.warnings(); len(w) > 0 {
		t.Errorf("clean reopen logged warnings: %q", w)
	}
}

func testResumeAfterAck(t *testing.T, cfg suiteConfig) {
	e := newEnv(t, cfg)
	l := e.open()
	appendN(t, l, 0, 30)
	l.Ack(17)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = e.open()
	if st := l.Stats(); st.AckedSeq != 17 || st.Backlog != 13 {
		t.Fatalf("after reopen: acked %d backlog %d, want 17 and 13", st.AckedSeq, st.Backlog)
	}
	recs := readAll(t, l, l.Stats().AckedSeq)
	checkSeqs(t, recs, 18, 17)
	if len(recs) != 13 {
		t.Fatalf("read %d, want 13", len(recs))
	}
}

func testConcurrent(t *testing.T, cfg suiteConfig) {
	e := newEnv(t, cfg)
	e.opts.SegmentBytes = 4 << 10 // rotate under load too
	l := e.open()
	const producers, each = 8, 200
	got := make([][]uint64, producers)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				s, err := l.Append(body(p*each + i))
				if err != nil {
					t.Errorf("producer %d: %v", p, err)
					return
				}
				got[p] = append(got[p], s)
			}
		}()
	}
	wg.Wait()
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	bySeq := map[uint64]int{}
	for p, seqs := range got {
		for i, s := range seqs {
			if i > 0 && s <= seqs[i-1] {
				t.Fatalf("producer %d: seq %d after %d", p, s, seqs[i-1])
			}
			if _, dup := bySeq[s]; dup {
				t.Fatalf("seq %d handed out twice", s)
			}
			bySeq[s] = p*each + i
		}
	}
	recs := readAll(t, l, 0)
	if len(recs) != producers*each {
		t.Fatalf("read %d, want %d", len(recs), producers*each)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || !bytes.Equal(r.Body, body(bySeq[r.Seq])) {
			t.Fatalf("record %d: seq %d body %q, want seq %d body %q", i, r.Seq, r.Body, i+1, body(bySeq[r.Seq]))
		}
	}
}

func testReaderBlocks(t *testing.T, cfg suiteConfig) {
	e := newEnv(t, cfg)
	l := e.open()
	// Cancel while blocked.
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		_, err := l.Read(ctx, 0, 10, nil)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel: %v, want context.Canceled", err)
	}
	// A blocked reader wakes for a new record.
	type res struct {
		recs []Record
		err  error
	}
	rc := make(chan res)
	go func() {
		recs, err := l.Read(context.Background(), 0, 10, nil)
		rc <- res{recs, err}
	}()
	appendN(t, l, 0, 1)
	r := <-rc
	if r.err != nil || len(r.recs) != 1 || r.recs[0].Seq != 1 {
		t.Fatalf("woken Read: %v %v", r.recs, r.err)
	}
	// Close wakes a blocked reader with ErrClosed.
	go func() {
		_, err := l.Read(context.Background(), 1, 10, nil)
		errc <- err
	}()
	l.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Read across Close: %v, want ErrClosed", err)
	}
}

func segFiles(t *testing.T, e *env) []string {
	t.Helper()
	names, err := e.fs.ReadDir(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if _, ok := parseSegName(n); ok {
			out = append(out, n)
		}
	}
	return out
}

func testRotation(t *testing.T, cfg suiteConfig) {
	e := newEnv(t, cfg)
	e.opts.SegmentBytes = 1024
	l := e.open()
	appendN(t, l, 0, 300) // 29-byte frames: ~34 per segment
	files := segFiles(t, e)
	if len(files) < 8 {
		t.Fatalf("%d segment files after 300 records in 1 KiB segments", len(files))
	}
	if st := l.Stats(); st.Segments != len(files) {
		t.Fatalf("Stats.Segments %d, files %d", st.Segments, len(files))
	}
	l.Close()
	l = e.open()
	recs := readAll(t, l, 0)
	if len(recs) != 300 {
		t.Fatalf("read %d after reopen, want 300", len(recs))
	}
	checkSeqs(t, recs, 1, 0)
}

func testReclaim(t *testing.T, cfg suiteConfig) {
	e := newEnv(t, cfg)
	e.opts.SegmentBytes = 1024
	e.opts.AckEvery = 1
	l := e.open()
	appendN(t, l, 0, 300)
	before := segFiles(t, e)
	firstEnd := uint64(0)
	l.mu.Lock()
	firstEnd = l.segs[0].end()
	l.mu.Unlock()
	// One record short of the first segment: nothing may go.
	l.Ack(firstEnd - 2)
	if err := l.Sync(); err != nil { // a writer round trip: housekeeping ran
		t.Fatal(err)
	}
	if got := segFiles(t, e); len(got) != len(before) {
		t.Fatalf("acking part of a segment deleted files: %d -> %d", len(before), len(got))
	}
	l.Ack(150)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	for _, s := range l.segs[:len(l.segs)-1] {
		if s.end() <= 151 {
			t.Errorf("segment %s (seqs %d..%d) is fully acked but kept", s.name, s.first, s.end()-1)
		}
	}
	first := l.segs[0].first
	l.mu.Unlock()
	if first > 151 {
		t.Fatalf("first kept seq %d: an unacked record was deleted", first)
	}
	recs := readAll(t, l, 150)
	checkSeqs(t, recs, 151, 150)
	if len(recs) != 150 {
		t.Fatalf("read %d, want 150", len(recs))
	}
	if st := l.Stats(); st.DroppedOverflow+st.DroppedAge+st.DroppedCorrupt != 0 {
		t.Fatalf("reclaim counted drops: %+v", st)
	}
}

func diskBytes(t *testing.T, e *env) int64 {
	var n int64
	for _, name := range segFiles(t, e) {
		f, err := e.fs.OpenFile(filepath.Join(e.dir, name), os.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		sz, _ := f.Size()
		f.Close()
		n += sz
	}
	return n
}

func testDropOldest(t *testing.T, cfg suiteConfig) {
	e := newEnv(t, cfg)
	e.opts.SegmentBytes = 1024
	e.opts.MaxBytes = 4096
	l := e.open()
	for i := range 500 {
		if _, err := l.Append(body(i)); err != nil {
			t.Fatal(err)
		}
		d := diskBytes(t, e)
		if d > e.opts.MaxBytes+e.opts.SegmentBytes {
			t.Fatalf("after %d appends disk use %d > max_bytes + one segment (%d)", i+1, d, e.opts.MaxBytes+e.opts.SegmentBytes)
		}
		// The running total the cap is checked against is the files'.
		if got := l.diskBytes(); got != d {
			t.Fatalf("after %d appends the log counts %d disk bytes, the files hold %d", i+1, got, d)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	recs := readAll(t, l, 0)
	if len(recs) == 0 || recs[len(recs)-1].Seq != 500 {
		t.Fatalf("newest record missing: read %d", len(recs))
	}
	first := recs[0].Seq
	checkSeqs(t, recs, first, int(first-1)) // the kept ones are the newest, contiguous
	if st.DroppedOverflow != first-1 {
		t.Fatalf("DroppedOverflow %d, but seqs 1..%d are missing", st.DroppedOverflow, first-1)
	}
	if st.DroppedOverflow == 0 {
		t.Fatal("nothing dropped: the test did not reach max_bytes")
	}
}

func testRejectNew(t *testing.T, cfg suiteConfig) {
	e := newEnv(t, cfg)
	e.opts.SegmentBytes = 1024
	e.opts.MaxBytes = 4096
	e.opts.Overflow = RejectNew
	l := e.open()
	var n int
	for ; n < 1000; n++ {
		_, err := l.Append(body(n))
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n == 1000 {
		t.Fatal("never got ErrFull")
	}
	if d := diskBytes(t, e); d > e.opts.MaxBytes {
		t.Fatalf("disk use %d above max_bytes %d under reject_new", d, e.opts.MaxBytes)
	}
	if st := l.Stats(); st.Rejected != 1 || st.DroppedOverflow != 0 {
		t.Fatalf("Rejected %d DroppedOverflow %d, want 1 and 0", st.Rejected, st.DroppedOverflow)
	}
	// Acking frees whole segments; appends work again and nothing was lost.
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, l, 0)
	checkSeqs(t, recs, 1, 0)
	if len(recs) != n {
		t.Fatalf("read %d, want %d", len(recs), n)
	}
	l.Ack(uint64(n))
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if s, err := l.Append(body(n)); err != nil || s != uint64(n+1) {
		t.Fatalf("Append after ack: seq %d err %v, want %d", s, err, n+1)
	}
}

func testMaxAge(t *testing.T, cfg suiteConfig) {
	e := newEnv(t, cfg)
	e.opts.SegmentBytes = 1024
	e.opts.MaxAge = time.Hour
	l := e.open()
	appendN(t, l, 0, 100) // several segments, all at t0
	e.clock.Advance(30 * time.Minute)
	appendN(t, l, 100, 10) // young
	e.clock.Advance(31 * time.Minute)
	appendN(t, l, 110, 1) // the append runs the age scan
	st := l.Stats()
	if st.DroppedAge == 0 {
		t.Fatal("nothing expired")
	}
	recs := readAll(t, l, 0)
	first := recs[0].Seq
	if first-1 != st.DroppedAge {
		t.Fatalf("first kept %d but DroppedAge %d", first, st.DroppedAge)
	}
	if first > 101 {
		t.Fatalf("a young record was dropped: first kept %d", first)
	}
	checkSeqs(t, recs, first, int(first-1))
	for _, r := range recs {
		if r.Seq <= 100 && r.Time.Before(e.clock.Now().Add(-time.Hour)) {
			// Old records may stay only inside a segment that also
			// holds a young one.
			l.mu.Lock()
			seg, _ := l.findSeg(r.Seq)
			young := seg.lastTime >= e.clock.Now().Add(-time.Hour).UnixNano()
			l.mu.Unlock()
			if !young {
				t.Fatalf("seq %d is expired and its segment too", r.Seq)
			}
		}
	}
}

// testMaxAgeClockSteps: max_age is not fooled by a step of the wall
// clock. A Pi captures in 1970, NTP steps it to 2026: nothing is 56
// years old. Stepped back, old records still expire on time. Across a
// reopen, a record stamped before ClockFloor is kept, its age unknown.
func testMaxAgeClockSteps(t *testing.T, cfg suiteConfig) {
	e := newEnv(t, cfg)
	e.clock = sensorstest.NewClock(time.Unix(0, 0).UTC())
	e.opts.Clock = e.clock
	e.opts.SegmentBytes = 1024
	e.opts.MaxAge = time.Hour
	e.opts.ClockFloor = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	l := e.open()
	appendN(t, l, 0, 100) // several segments, in 1970
	e.clock.Advance(time.Minute)
	e.clock.Step(56 * 365 * 24 * time.Hour) // NTP
	e.clock.Advance(time.Minute)
	if st := l.Stats(); st.OldestAge != 2*time.Minute {
		t.Errorf("OldestAge after a forward step = %v, want 2m (not 56 years)", st.OldestAge)
	}
	appendN(t, l, 100, 1) // the append runs the age scan
	if st := l.Stats(); st.DroppedAge != 0 {
		t.Fatalf("a forward step expired %d records two minutes old", st.DroppedAge)
	}
	e.clock.Step(-2 * time.Hour) // back: by wall time everything is young
	e.clock.Advance(57 * time.Minute)
	if st := l.Stats(); st.OldestAge != 59*time.Minute {
		t.Errorf("OldestAge after a step back = %v, want 59m", st.OldestAge)
	}
	appendN(t, l, 101, 1)
	if st := l.Stats(); st.DroppedAge != 0 {
		t.Fatalf("expired %d records 59 minutes old by the monotonic clock", st.DroppedAge)
	}
	e.clock.Advance(2 * time.Minute) // the 1970 records are 61 min old now
	appendN(t, l, 102, 1)
	if st := l.Stats(); st.DroppedAge == 0 {
		t.Fatal("records older than max_age by the monotonic clock were kept after a step back")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// A new process on the same disk: records stamped in 1970 (before the
	// floor) are kept, and expire an hour after the open.
	e2 := newEnv(t, cfg)
	e2.dir, e2.fs = e.dir, e.fs
	e2.opts = e.opts
	e2.opts.SegmentBytes = 1024
	l = e2.openWith(t, time.Unix(0, 0).UTC().Add(time.Hour)) // rebooted, still 1970
	appendN(t, l, 200, 50)
	e2.clock.Step(56 * 365 * 24 * time.Hour)
	e2.clock.Advance(30 * time.Minute)
	appendN(t, l, 250, 1)
	if st := l.Stats(); st.DroppedAge != 0 {
		t.Fatalf("after a reopen and a step: %d expired", st.DroppedAge)
	}
	e2.clock.Advance(31 * time.Minute)
	appendN(t, l, 251, 1)
	if st := l.Stats(); st.DroppedAge == 0 {
		t.Fatal("nothing expired an hour after the open")
	}
}

// openWith opens the log on a fresh fake clock at t0.
func (e *env) openWith(t *testing.T, t0 time.Time) *Log {
	e.clock = sensorstest.NewClock(t0)
	e.opts.Clock = e.clock
	return e.open()
}

func testClosed(t *testing.T, cfg suiteConfig) {
	e := newEnv(t, cfg)
	l := e.open()
	appendN(t, l, 0, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Append([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if _, err := l.Read(context.Background(), 0, 1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if err := l.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close: %v", err)
	}
	if _, err := l.Append(make([]byte, MaxRecordBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized Append: %v", err)
	}
	// The uplink reports Stats of a log it closed to reopen it.
	if st := l.Stats(); st.Backlog != 3 || st.LastSeq != 3 {
		t.Fatalf("Stats after Close: %+v", st)
	}
}
