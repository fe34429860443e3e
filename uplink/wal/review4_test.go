package wal

import (
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// r4FailSyncFS is a memFS whose file Syncs fail (EIO) for the names bad
// accepts, as a failing card's fsync does.
type r4FailSyncFS struct {
	*memFS
	bad func(name string) bool
}

type r4File struct {
	File
	name string
	fs   *r4FailSyncFS
}

func (f r4File) Sync() error {
	if f.fs.bad(f.name) {
		return &fs.PathError{Op: "sync", Path: f.name, Err: syscall.EIO}
	}
	return f.File.Sync()
}

func (m *r4FailSyncFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := m.memFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return r4File{File: f, name: name, fs: m}, nil
}

// Recovery now fsyncs every segment it keeps (4741707), because after a
// kill -9 the sealed segments may be in the page cache only. But a failed
// fsync there is only logged (recover.go scanSegment, "sync segment"):
// the log still sets synced = nextSeq-1 (recover.go, end of recover), so
// Stats().SyncedSeq, a completed Sync() and a clean Close all claim the
// records of a segment whose fsync failed, and no later fsync covers it
// (it is neither active nor in l.sealed). After an fsync EIO Linux marks
// the pages clean: the data is gone from the disk's point of view.
func TestReview4RecoveryFsyncFailureStillClaimedSynced(t *testing.T) {
	m := newMemFS(1)
	opts := r3Opts(m)
	l, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100 // three lazy rotations, no interval fsync yet
	for i := range n {
		if _, err := l.Append(body(i)); err != nil {
			t.Fatal(err)
		}
	}
	pc := r3KillNine(m)
	l.Close()

	first := ""
	for _, nm := range pc.names() {
		if isSeg(nm) {
			first = nm
			break
		}
	}
	ffs := &r4FailSyncFS{memFS: pc}
	ffs.bad = func(name string) bool { return filepath.Base(name) == first }
	lg, lc := newLogger()
	opts.FS, opts.Log = ffs, lg
	l2, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	st := l2.Stats()
	syncErr := l2.Sync()
	closeErr := l2.Close()
	t.Logf("after Open: SyncedSeq %d, Err %v; Sync() %v; Close() %v; warnings %q", st.SyncedSeq, l2.Err(), syncErr, closeErr, lc.warnings())

	opts.FS, opts.Log = syncedImage(pc), nil
	opts.Log, _ = newLogger()
	l3, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Close()
	got := len(readAll(t, l3, 0))
	if got < n && st.SyncedSeq >= n && syncErr == nil && closeErr == nil {
		t.Errorf("SyncedSeq %d, Sync() and Close() returned nil, but a power cut then left %d of %d records (the fsync of %s failed at Open and was only logged)",
			st.SyncedSeq, got, n, first)
	}
}

// A failed lazy rotation (23dba53/4f58526, writer.go commit): under sync:
// interval the records written before the rotation in the same batch
// are no longer failed, but `pending = pending[:0]; break` drops them
// before showWritten, so they are neither published, nor leased, nor
// synced, yet their Appends return the seq with no error. That is the
// invariant showWritten's comment states ("no Append returns a seq that
// is neither leased nor synced") and the one the commit message says the
// change keeps ("share the batch's outcome"). The forwarder never sees
// them in this process (the log is failed: no interval fsync publishes
// them), and a power cut before the reopen hands their seq to another
// record.
func TestReview4FailedLazyRotationReturnsUnleasedUnsyncedInvisible(t *testing.T) {
	m := newMemFS(1)
	opts := r3Opts(m)
	opts.SyncInterval = time.Minute
	opts.leaseBlock = 4
	l, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r3FailLeaseWrites(m)
	rs := r3BatchAcrossRotation(t, l, m, func(uint64) {
		// The rotation's segment cannot be created (EMFILE, ENOSPC on the
		// directory's block, EIO).
		r3FailSegmentCreate(m)
	})
	for range 5 {
		l.poke()
		time.Sleep(10 * time.Millisecond)
	}
	l.mu.Lock()
	leased, synced, visible, failed := l.leased, l.synced, l.visible, l.failed
	l.mu.Unlock()
	t.Logf("results %+v; leased %d synced %d visible %d failed %v", rs, leased, synced, visible, failed)
	bad := 0
	for _, r := range rs {
		if r.err == nil && r.seq > leased && r.seq > synced {
			bad++
			t.Errorf("Append returned seq %d (%s) with no error, neither leased (%d) nor synced (%d), and never visible to readers (visible %d)",
				r.seq, r.body, leased, synced, visible)
		}
	}
	if bad == 0 {
		return
	}
	// The power cut: the kindest image. The returned seq goes to another
	// record.
	img := syncedImage(m)
	opts.FS = img
	l2, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	for k := range 4 {
		b := []byte("after-the-cut-" + string(rune('a'+k)))
		s, err := l2.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.err == nil && s == r.seq && l2.Epoch() == l.Epoch() {
				t.Errorf("(epoch %x, seq %d) returned by Append for %q, issued again after the power cut for %q", l2.Epoch(), s, r.body, b)
			}
		}
	}
}

// After an idle max_age (or reader-asked) rotation of a fully synced
// segment, rotate closes the old one at once and no fsync is due
// (armTimer/syncBehind: nothing unsynced, nothing sealed), so the new
// segment's header and name stay unsynced while the gateway is idle. A
// power cut then leaves a header of zeros with no records after it, and
// recovery (1985c73) says "its records were never fsynced and are lost"
// and counts CorruptRecovered, though the segment never held a record.
func TestReview4EmptyUnwrittenHeaderSaysRecordsLost(t *testing.T) {
	m := newMemFS(1)
	opts := r3Opts(m)
	l, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := l.Append(body(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// What the idle rotation leaves after the cut: a header-sized file
	// of zeros named after the next seq.
	m.put("/buf/"+segName(6), make([]byte, segHeaderSize))
	lg, lc := newLogger()
	opts.Log = lg
	l2, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	for _, w := range lc.warnings() {
		if strings.Contains(w, "records were never fsynced and are lost") {
			t.Errorf("a segment with no records is reported as losing records: %s", w)
		}
	}
	if got := len(readAll(t, l2, 0)); got != 5 {
		t.Errorf("%d records, want 5", got)
	}
}

// The other side of keeping records pending across a lazy rotation
// (4f58526, writer.go commit: `pending` is no longer cleared after a
// rotation under sync: interval): when the write after the rotation
// fails (ENOSPC: not sticky, the log goes on), fail(err) fails every
// pending record, including those the flush before the rotation wrote
// into the now sealed segment. writeActive takes back only the seqs of
// the failed write, so those records stay in the log and are delivered,
// while their Appends returned an error: the uplink refuses the publish
// (no PUBACK), the LAN publisher resends, the cloud gets it twice.
// Before 4f58526 only the records of the failed write failed.
func TestReview4WriteFailureAfterLazyRotationFailsStoredRecords(t *testing.T) {
	m := newMemFS(1)
	opts := r3Opts(m)
	opts.SyncInterval = time.Minute
	l, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rs := r3BatchAcrossRotation(t, l, m, func(next uint64) {
		// The batch's first record gets next, the rotation creates the
		// segment of next+1; its header goes in, the records' write fails.
		newSeg := segName(next + 1)
		writes := 0
		m.mu.Lock()
		m.failWrite = func(name string) error {
			if filepath.Base(name) == newSeg {
				writes++
				if writes == 2 {
					return syscall.ENOSPC
				}
			}
			return nil
		}
		m.mu.Unlock()
	})
	t.Logf("results %+v; log error %v", rs, l.Err())
	m.mu.Lock()
	m.failWrite, m.beforeWrite = nil, nil
	m.mu.Unlock()
	// The disk has room again; the next Append publishes what is below it.
	after, err := l.Append([]byte("after"))
	if err != nil {
		t.Fatal(err)
	}
	stored := r3Stored(t, l)
	t.Logf("next Append got seq %d", after)
	for _, r := range rs {
		if r.err != nil {
			if seq, ok := stored[r.body]; ok {
				t.Errorf("Append of %s returned %v, yet the record is in the log at seq %d and will be delivered", r.body, r.err, seq)
			}
		}
	}
}
