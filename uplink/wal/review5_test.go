package wal

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// SyncAlways (and SyncNone): a rotation inside a batch first fsyncs the
// records written so far (rotate: syncActive, which also publishes them
// to readers), then creates the next segment. When only the creation
// fails, commit fails the records it has just fsynced
// (writer.go commit: `if err = l.rotate(); err != nil && !lazy {
// fail(pending, err) }`): their Appends return an error, yet they are
// durable, already shown to readers, and delivered after a restart: the
// publisher resends them, a duplicate. The rotation's error only
// concerns the records after it.
func TestReview5StrictRotationFailureFailsFsyncedRecords(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncNone} {
		t.Run(syncNames[mode], func(t *testing.T) {
			m := newMemFS(1)
			opts := r3Opts(m)
			opts.Sync = mode
			l, err := Open("/buf", opts)
			if err != nil {
				t.Fatal(err)
			}
			rs := r3BatchAcrossRotation(t, l, m, func(next uint64) {
				newSeg := segName(next + 1)
				m.mu.Lock()
				m.failOpen = func(name string, flag int) error {
					if filepath.Base(name) == newSeg && flag&os.O_CREATE != 0 {
						return syscall.ENOSPC
					}
					return nil
				}
				m.mu.Unlock()
			})
			visible := r3Stored(t, l)
			l.Close()
			t.Logf("results %+v", rs)
			opts.FS = syncedImage(m)
			opts.Log, _ = newLogger()
			l2, err := Open("/buf", opts)
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			stored := r3Stored(t, l2)
			for _, r := range rs {
				if r.err == nil {
					continue
				}
				vs, vok := visible[r.body]
				ss, sok := stored[r.body]
				if vok || sok {
					t.Errorf("Append of %s returned %v, yet the record was shown to readers (%v, seq %d) and survives a power cut (%v, seq %d)",
						r.body, r.err, vok, vs, sok, ss)
				}
			}
		})
	}
}

// Recovery whose fsync of a segment fails lowers l.synced below it, but
// sets l.visible = nextSeq-1 first (recover.go, end of recover) and
// l.leased = nextSeq-1 in memory (recover.go, after readLease) without
// any lease on disk covering it: Open's own lease write may fail, and
// its error is ignored (wal.go Open). So readers are handed records that
// are neither durable (their fsync just failed) nor leased: the very
// thing the lease exists to prevent. A power cut then takes them, and
// the next process issues their seqs again for other records: the
// forwarder has already sent (epoch, seq) with the first body.
//
// The records get into that state when the previous process wrote them
// and failed before they were shown (here: SyncAlways, the lease cannot
// be written, the commit's fsync fails: Append returns an error).
func TestReview5RecoveryShowsUnsyncedUnleasedRecords(t *testing.T) {
	m := newMemFS(1)
	var bad bool
	ffs := &r4FailSyncFS{memFS: m, bad: func(name string) bool { return bad && isSeg(name) }}
	opts := r3Opts(m)
	opts.Sync, opts.FS = SyncAlways, ffs
	l1, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := l1.Append(body(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l1.Close(); err != nil { // the lease on disk is 3 now
		t.Fatal(err)
	}

	// Second process: the card fails (lease writes, then fsync).
	r3FailLeaseWrites(m)
	l2, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	bad = true
	if seq, err := l2.Append(body(100)); err == nil {
		t.Fatalf("Append with a failing fsync returned seq %d, no error", seq)
	}
	pc := r3KillNine(m) // the process dies; the page cache keeps the record
	l2.Close()

	// Third process, same failing card.
	r3FailLeaseWrites(pc)
	opts.FS = &r4FailSyncFS{memFS: pc, bad: isSeg}
	opts.Log, _ = newLogger()
	l3, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	shown := map[uint64]string{}
	for _, r := range readAll(t, l3, 0) {
		shown[r.Seq] = string(r.Body)
	}
	st := l3.Stats()
	t.Logf("process 3: SyncedSeq %d, shown %v", st.SyncedSeq, shown)
	img := syncedImage(pc) // power cut
	l3.Close()

	opts.FS = img
	opts.Log, _ = newLogger()
	l4, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l4.Close()
	seq, err := l4.Append([]byte("new record"))
	if err != nil {
		t.Fatal(err)
	}
	if old, ok := shown[seq]; ok {
		t.Errorf("seq %d was shown to readers as %q by the process before the power cut (SyncedSeq %d: not synced, and no lease on disk covers it); after it, Append issues it again for %q",
			seq, old, st.SyncedSeq, "new record")
	}
}

// recover.go:162: when the segment whose fsync failed cannot be reopened
// for the retry, the loop breaks before lowering l.synced (recover.go:165)
// for it: Stats().SyncedSeq claims its records synced although their
// fsync failed and none will retry it.
func TestReview5RecoveryReopenFailureStillClaimsSynced(t *testing.T) {
	m := newMemFS(1)
	opts := r3Opts(m)
	opts.Sync = SyncAlways
	l1, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := l1.Append(body(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l1.Close(); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.failOpen = func(name string, flag int) error {
		if isSeg(name) && flag == os.O_RDONLY {
			return syscall.EIO
		}
		return nil
	}
	m.mu.Unlock()
	opts.FS = &r4FailSyncFS{memFS: m, bad: isSeg}
	opts.Log, _ = newLogger()
	l2, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	st := l2.Stats()
	t.Logf("SyncedSeq %d, Err %v", st.SyncedSeq, l2.Err())
	if st.SyncedSeq >= 1 {
		t.Errorf("recovery's fsync of the segment holding seqs 1-3 failed, yet SyncedSeq is %d", st.SyncedSeq)
	}
}

// Under sync: interval, a disk-full batch that rotates after its first
// record: the new segment cannot be created (rotate sets l.failed) and
// the lease cannot be written (ENOSPC hits both). The record written
// before the rotation stays pending (writer.go:233), and showWritten's
// fallback fsync is refused because the log is failed (syncActive
// returns l.failed): commit fails it (writer.go:265). Yet it is in the
// old segment: after a plain Close and restart (no power cut, the disk
// has room again) it is delivered, while its publisher, told the Append
// failed, resends it: a duplicate. The rotation's failure does not taint
// the old segment; the fallback could fsync it (or the record could be
// reported written: the log is failed, but the record is stored).
func TestReview5FailedLazyRotationFailsStoredRecord(t *testing.T) {
	m := newMemFS(1)
	opts := r3Opts(m)
	opts.SyncInterval = time.Minute
	opts.leaseBlock = 4
	l, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	r3FailLeaseWrites(m)
	rs := r3BatchAcrossRotation(t, l, m, func(uint64) {
		r3FailSegmentCreate(m)
	})
	t.Logf("results %+v; log error %v", rs, l.Err())
	l.Close()
	m.mu.Lock()
	m.failOpen, m.failWrite, m.beforeWrite = nil, nil, nil
	m.mu.Unlock()
	opts.Log, _ = newLogger()
	l2, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	stored := r3Stored(t, l2)
	for _, r := range rs {
		if seq, ok := stored[r.body]; ok && r.err != nil {
			t.Errorf("Append of %s returned %v, yet after a clean restart the record is delivered at seq %d", r.body, r.err, seq)
		}
	}
}
