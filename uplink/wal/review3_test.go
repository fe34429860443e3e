package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
)

// r3KillNine is what a kill -9 leaves: the page cache (every file's
// current bytes) and what the disk holds (synced bytes, durable names),
// both as they were; the dead process's goroutines touch it no more.
func r3KillNine(m *memFS) *memFS { return m.clone() }

// r3Undurable lists the segments of m whose bytes or name a power cut
// may take: not every byte synced, or the name not durable.
func r3Undurable(m *memFS) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var bad []string
	for name, in := range m.files {
		if isSeg(name) && (m.durable[name] != in || string(in.synced) != string(in.data)) {
			bad = append(bad, filepath.Base(name))
		}
	}
	return bad
}

func r3Opts(m *memFS) Opts {
	lg, _ := newLogger()
	clk := sensorstest.NewClock(time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC))
	return Opts{Sync: SyncInterval, SyncInterval: time.Second, SegmentBytes: 1024, FS: m, Clock: clk, Log: lg}
}

// Under sync: interval a process crash (kill -9) before the interval
// fsync leaves the segments the crashed process sealed in the page cache
// only: rotate no longer fsyncs them. Recovery fsyncs only the last
// segment, yet reports every recovered record synced (SyncedSeq), and no
// later fsync of the new process (interval, Sync(), Close) covers the
// old sealed segments: a power cut at any later time loses records that
// SyncedSeq, a completed Sync() and a clean Close all said were durable.
// Before c176724 every sealed segment was fsynced at its rotation, so
// recovery's fsync of the last segment was enough.
func TestReview3KillNineLeavesSealedSegmentsUnsynced(t *testing.T) {
	m := newMemFS(1)
	opts := r3Opts(m)
	l, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100 // about 3 KiB: three rotations, no interval fsync yet
	for i := range n {
		if _, err := l.Append(body(i)); err != nil {
			t.Fatal(err)
		}
	}
	pc := r3KillNine(m)
	l.Close() // the dead process; pc is independent of m

	opts.FS = pc
	l2, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := l2.Stats().SyncedSeq; got < n {
		t.Fatalf("after recovery SyncedSeq %d, want at least %d", got, n)
	}
	if bad := r3Undurable(pc); len(bad) > 0 {
		t.Errorf("after recovery SyncedSeq=%d, but segments %v are not durable (bytes or name)", l2.Stats().SyncedSeq, bad)
	}
	// Sync promises "every appended record durable now"; Close syncs too.
	if err := l2.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	if bad := r3Undurable(pc); len(bad) > 0 {
		t.Errorf("after Sync() and a clean Close, segments %v are still not durable", bad)
	}
	// The kindest power cut now: every name as of its last directory
	// sync, every file as of its last fsync.
	opts.FS = syncedImage(pc)
	l3, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Close()
	if recs := readAll(t, l3, 0); len(recs) != n {
		t.Errorf("a power cut after Sync() and a clean Close left %d of %d records", len(recs), n)
	}
}

// r3FailLeaseWrites makes every lease write fail, as on a full disk.
func r3FailLeaseWrites(m *memFS) {
	full := errors.New("no space left on device")
	m.mu.Lock()
	m.failWrite = func(name string) error {
		if filepath.Base(name) == leaseTmp {
			return full
		}
		return nil
	}
	m.mu.Unlock()
}

// r3FailSegmentCreate makes creating a segment fail, as ENOSPC on the
// directory's block (or EMFILE, EIO) does.
func r3FailSegmentCreate(m *memFS) {
	m.mu.Lock()
	m.failOpen = func(name string, flag int) error {
		if isSeg(name) && flag&os.O_CREATE != 0 {
			return syscall.ENOSPC
		}
		return nil
	}
	m.mu.Unlock()
}

// r3Stored maps the body of each record l holds to its seq.
func r3Stored(t *testing.T, l *Log) map[string]uint64 {
	t.Helper()
	stored := map[string]uint64{}
	for _, r := range readAll(t, l, 0) {
		stored[string(r.Body)] = r.Seq
	}
	return stored
}

// r3Res is one Append's outcome.
type r3Res struct {
	seq  uint64
	body string
	err  error
}

// r3BatchAcrossRotation fills l's active segment until three more records
// need a rotation, then has four Appends commit so that the last three
// go as one batch that rotates after its first record: the first Append
// (body 1000) leads, and its write is held until the three others
// (1001-1003) have queued behind it. ready, called before the held write
// goes on, arms what the test breaks; next is the seq the batch's first
// record gets. It returns the four outcomes.
func r3BatchAcrossRotation(t *testing.T, l *Log, m *memFS, ready func(next uint64)) []r3Res {
	t.Helper()
	fsz := int64(frameHeaderSize + len(body(0)))
	for i := 0; ; i++ {
		act := l.activeSeg()
		l.mu.Lock()
		size := act.size
		l.mu.Unlock()
		if size+3*fsz > l.opts.SegmentBytes {
			break
		}
		if _, err := l.Append(body(i)); err != nil {
			t.Fatal(err)
		}
	}
	gate := make(chan struct{})
	var once sync.Once
	armed := make(chan struct{})
	m.mu.Lock()
	m.beforeWrite = func(name string) {
		if isSeg(name) {
			once.Do(func() { close(armed); <-gate })
		}
	}
	m.mu.Unlock()
	out := make(chan r3Res, 4)
	app := func(b []byte) {
		s, err := l.Append(b)
		out <- r3Res{s, string(b), err}
	}
	go app(body(1000))
	<-armed
	l.mu.Lock()
	next := l.nextSeq // the leader has its seq already
	l.mu.Unlock()
	for k := 1; k <= 3; k++ {
		go app(body(1000 + k))
	}
	waitFor(t, "three queued Appends", func() bool {
		l.qmu.Lock()
		defer l.qmu.Unlock()
		return len(l.queue) == 3
	})
	ready(next)
	close(gate)
	var rs []r3Res
	for range 4 {
		rs = append(rs, <-out)
	}
	return rs
}

// The lease-failure fallback (showWritten fsyncs what the lease does not
// cover) fails with the fsync, and commit fails only the records written
// after the batch's rotation: those before it were dropped from pending
// because "rotate synced them", which it no longer does under sync:
// interval. So an Append returns a seq that is neither leased nor synced
// (showWritten's own invariant), and after the power cut that failed the
// fsync the seq is issued again for another record.
func TestReview3RotationInBatchWithFailedFallbackFsync(t *testing.T) {
	m := newMemFS(1)
	opts := r3Opts(m)
	opts.SyncInterval = time.Minute // no interval fsync: only the fallback's
	opts.leaseBlock = 4
	l, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r3FailLeaseWrites(m)
	rs := r3BatchAcrossRotation(t, l, m, func(uint64) {
		// The leader's commit makes one fsync (the fallback's); the
		// batch's first fsync is the power cut.
		m.mu.Lock()
		m.crashAt = m.syncs + 2
		m.mu.Unlock()
	})
	img := syncedImage(m) // the kindest case of the cut
	synced := l.Stats().SyncedSeq
	l.mu.Lock()
	leased := l.leased
	l.mu.Unlock()
	var exposed []r3Res
	for _, r := range rs {
		if r.err == nil && r.seq > leased && r.seq > synced {
			exposed = append(exposed, r)
			t.Errorf("Append returned seq %d (%s) with no error, neither leased (%d) nor synced (%d)", r.seq, r.body, leased, synced)
		}
	}
	if len(exposed) == 0 {
		t.Logf("results: %+v (leased %d synced %d)", rs, leased, synced)
		return
	}
	opts.FS = img
	l2, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	m2 := img
	m2.mu.Lock()
	m2.failWrite = nil
	m2.mu.Unlock()
	for k := range 8 {
		b := []byte("after-the-cut-" + string(rune('a'+k)))
		s, err := l2.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range exposed {
			if s == r.seq && l2.Epoch() == l.Epoch() {
				t.Errorf("(epoch %x, seq %d) issued again after the power cut: %q, earlier %q", l2.Epoch(), s, b, r.body)
			}
		}
	}
}

// Property: in a live process, whatever Stats().SyncedSeq claims is in
// the kindest power-cut image (names as of the last directory sync,
// files as of their last fsync), while Appends rotate segments, the
// interval fsync runs slowly beside them, the lease fails on and off
// (so commits fsync beside the interval fsync) and Sync is called.
func TestReview3LiveSyncedSeqIsDurable(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(string(rune('a'+seed)), func(t *testing.T) { r3LiveSynced(t, seed) })
	}
}

func r3LiveSynced(t *testing.T, seed uint64) {
	m := newMemFS(seed)
	opts := r3Opts(m)
	opts.SyncInterval = 10 * time.Millisecond
	opts.leaseBlock = 8
	clk := opts.Clock.(*sensorstest.Clock)
	var leaseBad sync.Mutex
	bad := false
	m.failWrite = func(name string) error {
		leaseBad.Lock()
		defer leaseBad.Unlock()
		if bad && filepath.Base(name) == leaseTmp {
			return errors.New("no space left on device")
		}
		return nil
	}
	var n int
	m.beforeSync = func(name string) {
		leaseBad.Lock()
		n++
		d := time.Duration(n%5) * time.Millisecond
		leaseBad.Unlock()
		time.Sleep(d)
	}
	l, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var mu sync.Mutex
	returned := map[uint64]string{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				b := string(body(p*100000 + i))
				s, err := l.Append([]byte(b))
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				returned[s] = b
				mu.Unlock()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			clk.Advance(5 * time.Millisecond)
			l.poke()
			leaseBad.Lock()
			bad = i%7 < 3
			leaseBad.Unlock()
			if i%11 == 0 {
				_ = l.Sync()
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for round := 0; round < 15; round++ {
		time.Sleep(20 * time.Millisecond)
		synced := l.Stats().SyncedSeq
		img := syncedImage(m)
		mu.Lock()
		want := map[uint64]string{}
		for s, b := range returned {
			if s <= synced {
				want[s] = b
			}
		}
		mu.Unlock()
		o := opts
		o.FS = img
		o.Log, _ = newLogger()
		l2, err := Open("/buf", o)
		if err != nil {
			t.Fatal(err)
		}
		got := map[uint64]string{}
		for _, r := range readAll(t, l2, 0) {
			got[r.Seq] = string(r.Body)
		}
		l2.Close()
		missing := 0
		first := uint64(0)
		for s, b := range want {
			if got[s] != b {
				missing++
				if first == 0 || s < first {
					first = s
				}
			}
		}
		if missing > 0 {
			t.Errorf("round %d: SyncedSeq %d, but %d of those records are not in the synced image (first seq %d)", round, synced, missing, first)
			break
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d records, %d segments, %d fsyncs", l.Stats().LastSeq, l.Stats().Segments, l.Stats().Fsyncs)
}

func r3OpenFDs(t *testing.T) int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(es)
}

// Descriptors after many lazy rotations on the real file system: the
// sealed segments are closed once an fsync covered them, and all at Close.
func TestReview3NoFDLeakAfterManyRotations(t *testing.T) {
	dir := t.TempDir()
	base := r3OpenFDs(t)
	l, err := Open(dir, Opts{Sync: SyncInterval, SyncInterval: 10 * time.Millisecond, SegmentBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		if _, err := l.Append(body(i)); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if st := l.Stats(); st.Segments < 80 {
		t.Fatalf("only %d segments", st.Segments)
	}
	waitFor(t, "everything synced", func() bool { st := l.Stats(); return st.SyncedSeq == st.LastSeq })
	l.poke()
	time.Sleep(50 * time.Millisecond)
	if n := r3OpenFDs(t) - base; n > 6 {
		t.Errorf("%d descriptors open beyond the baseline after all was synced", n)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := r3OpenFDs(t) - base; n > 0 {
		t.Errorf("%d descriptors left open after Close", n)
	}
}

// r3DeletedOpen counts descriptors of this process on deleted files
// under dir.
func r3DeletedOpen(t *testing.T, dir string) []string {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	var out []string
	for _, e := range es {
		p, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.HasPrefix(p, dir) && strings.HasSuffix(p, " (deleted)") {
			out = append(out, p)
		}
	}
	return out
}

// max_age seals an idle, fully synced active segment and deletes it:
// under sync: interval the sealed file stays open in l.sealed until an
// fsync covers it, but with nothing unsynced no interval fsync is ever
// due (syncBehind: written > synced), so the deleted segment's blocks
// stay allocated for as long as no record is appended (an idle gateway).
func TestReview3ExpiredSegmentStaysOpenWhileIdle(t *testing.T) {
	dir := t.TempDir()
	clk := sensorstest.NewClock(time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC))
	l, err := Open(dir, Opts{Sync: SyncInterval, SyncInterval: time.Second, MaxAge: time.Minute, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 10 {
		if _, err := l.Append(body(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		clk.Advance(time.Minute)
		l.poke()
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, "the expired records dropped", func() bool { return l.Stats().DroppedAge == 10 })
	for range 5 {
		clk.Advance(time.Minute)
		l.poke()
		time.Sleep(20 * time.Millisecond)
	}
	if d := r3DeletedOpen(t, dir); len(d) > 0 {
		t.Errorf("idle after max_age dropped the segment: still open, deleted: %v", d)
	}
}

// A power cut at each sync from an interval fsync that runs while two
// rotations happen beside it, through the next interval fsync (which
// covers two sealed segments, the active one and the directory) and
// Close: what SyncedSeq claimed survives, no seq that left the log is
// issued again, the log opens.
func TestReview3PowerCutAcrossLazyRotations(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		for k := 1; k <= 30; k++ {
			t.Run(fmt.Sprintf("seed%d/sync%d", seed, k), func(t *testing.T) {
				// 70 records: two rotations at 1 KiB
				powerCutDuringIntervalFsync(t, seed, k, cutRun{before: 5, beside: 70, segBytes: 1024, leaseBlock: 64})
			})
		}
	}
}

// A power cut between a lazy rotation and the next interval fsync can
// leave the new segment with its header sector zeroed or garbage (it was
// never fsynced; crashImage's modes 0, 2, 3, and a real file system's
// allocated-but-unwritten block). Recovery then calls it an alien file
// ("is not an edged buffer segment ... does not belong in the buffer
// directory; move it elsewhere") and leaves a .alien file for the
// operator, though it is the ordinary outcome of the power cut the
// commit's own comment describes. Before c176724 the header was fsynced
// before any record went in, so only damage got there.
func TestReview3TornNewSegmentHeaderCalledAlien(t *testing.T) {
	m := newMemFS(1)
	opts := r3Opts(m)
	l, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 { // one rotation
		if _, err := l.Append(body(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The cut: the new segment's first sector as it was on disk (zeros).
	img := m.clone()
	l.Close()
	names := img.names()
	last := "/buf/" + names[len(slices.DeleteFunc(names, func(n string) bool { return !isSeg(n) }))-1]
	img.mu.Lock()
	in := img.files[last]
	clear(in.data[:segHeaderSize])
	in.synced = append([]byte(nil), in.data...)
	img.mu.Unlock()
	lg, lc := newLogger()
	opts.FS, opts.Log = img, lg
	l2, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	named := false
	for _, w := range lc.warnings() {
		if strings.Contains(w, "not an edged buffer segment") {
			t.Errorf("a power cut's torn segment header is reported as a foreign file: %s", w)
		}
		named = named || strings.Contains(w, "has an unwritten header") && strings.Contains(w, ".corrupt-")
	}
	if !named {
		t.Errorf("no warning names the unwritten header and its .corrupt copy: %q", lc.warnings())
	}
}
