package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
)

// syncedImage is what a power cut leaves in the kindest case: every name
// as of the last directory sync, every file as of its last fsync.
func syncedImage(m *memFS) *memFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	img := newMemFS(2)
	for n, in := range m.durable {
		img.put(n, in.synced)
	}
	return img
}

// Records shown before their fsync, then a power cut that takes them and
// the lease file with them (fsck moved a damaged inode to lost+found, or
// someone deleted it): recovery cannot know how far the forwarder got, so
// it must skip as for an unreadable lease, never issue the shown seqs
// again for other records.
func TestMissingLeaseNoSeqReuse(t *testing.T) {
	for _, mode := range []SyncMode{SyncInterval, SyncNone} {
		t.Run(mode.String(), func(t *testing.T) {
			m := newMemFS(1)
			lg, _ := newLogger()
			opts := Opts{Sync: mode, FS: m, Clock: sensorstest.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)), Log: lg}
			l, err := Open("/buf", opts)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				if _, err := l.Append(body(i)); err != nil {
					t.Fatal(err)
				}
			}
			recs := readAll(t, l, 0)
			if len(recs) != 5 || l.Stats().SyncedSeq != 0 {
				t.Fatalf("read %d records with synced %d; want 5 shown before their fsync", len(recs), l.Stats().SyncedSeq)
			}
			epoch := l.Epoch()
			img := syncedImage(m) // the power goes here
			l.Close()
			if err := img.Remove(filepath.Join("/buf", leaseName)); err != nil {
				t.Fatal(err)
			}
			opts.FS = img
			l, err = Open("/buf", opts)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if l.Epoch() != epoch {
				t.Fatalf("epoch changed to %x: the segment's header was synced", l.Epoch())
			}
			s, err := l.Append([]byte("other"))
			if err != nil {
				t.Fatal(err)
			}
			if s <= recs[len(recs)-1].Seq {
				t.Fatalf("(epoch %x, seq %d) issued again for another record; the forwarder was shown %q under it", epoch, s, recs[s-1].Body)
			}
		})
	}
}

// ack.live is rewritten in place at offset 0. A longer file (damage, or a
// foreign file left there) must not stay unreadable for good: after the
// first Ack a kill -9 redelivers only what was in flight, not everything
// since the lazy fsynced marker.
func TestLiveMarkerLongerFileHeals(t *testing.T) {
	m := newMemFS(1)
	lg, _ := newLogger()
	opts := Opts{Sync: SyncInterval, FS: m, Clock: sensorstest.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)), Log: lg}
	m.put(filepath.Join("/buf", markerLive), make([]byte, 2*markerSize))
	l, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 10)
	l.Ack(10)
	opts.FS = m.clone() // kill -9: the page cache survives
	l.Close()
	l, err = Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if st := l.Stats(); st.AckedSeq != 10 {
		t.Fatalf("acked after kill -9 = %d, want 10 (ack.live was written after the Ack)", st.AckedSeq)
	}
}

// A lease that cannot be written (disk full, EIO) costs latency, never
// safety, says writeLease. Under sync: none nothing else ever fsyncs
// before a rotation, so the forwarder must not wait for one: a few
// records would sit unsent for as long as a segment takes to fill.
func TestLeaseFailureDoesNotStallSyncNone(t *testing.T) {
	m := newMemFS(1)
	lg, _ := newLogger()
	clk := sensorstest.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	full := errors.New("no space left on device")
	m.failWrite = func(name string) error {
		if filepath.Base(name) == leaseTmp {
			return full
		}
		return nil
	}
	l, err := Open("/buf", Opts{Sync: SyncNone, FS: m, Clock: clk, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 3 {
		if _, err := l.Append(body(i)); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Hour)
	recs := readAll(t, l, 0)
	if len(recs) != 3 {
		t.Fatalf("the forwarder sees %d of 3 records an hour after their Append (the lease cannot be written)", len(recs))
	}
	checkSeqs(t, recs, 1, 0)
}

// A segment that cannot be opened for a moment (EMFILE: every descriptor
// taken) is not damage: Read must not skip its records, which would drop
// accepted messages for good (the forwarder acks past them).
func TestReadOpenFailureIsNotDamage(t *testing.T) {
	m := newMemFS(1)
	lg, _ := newLogger()
	clk := sensorstest.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	l, err := Open("/buf", Opts{Sync: SyncAlways, FS: m, Clock: clk, Log: lg, SegmentBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendN(t, l, 0, 100) // several segments
	if st := l.Stats(); st.Segments < 3 {
		t.Fatalf("%d segments, want several", st.Segments)
	}
	fails := 0
	m.mu.Lock()
	m.failOpen = func(name string, flag int) error {
		if _, ok := parseSegName(filepath.Base(name)); ok && flag == os.O_RDONLY && fails < 3 {
			fails++
			return syscall.EMFILE
		}
		return nil
	}
	m.mu.Unlock()
	type result struct {
		recs []Record
		err  error
	}
	got := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		recs, err := l.Read(ctx, 0, 1000, nil)
		got <- result{recs, err}
	}()
	var r result
	for i := 0; ; i++ {
		select {
		case r = <-got:
		case <-time.After(10 * time.Millisecond):
			if i < 500 {
				clk.Advance(time.Second) // a retry may wait on the clock
				continue
			}
			t.Fatal("Read did not return")
		}
		break
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.recs) == 0 || r.recs[0].Seq != 1 {
		t.Fatalf("Read after a failed open returned %d records from seq %v; want from seq 1", len(r.recs), r.recs)
	}
	checkSeqs(t, r.recs, 1, 0)
	if st := l.Stats(); st.DroppedCorrupt != 0 || st.CorruptRecovered != 0 {
		t.Fatalf("a failed open counted as damage: %+v", st)
	}
	all := readAll(t, l, 0)
	checkSeqs(t, all, 1, 0)
	if len(all) != 100 {
		t.Fatalf("read %d of 100 records after the failed opens", len(all))
	}
}

// Recovery cuts a damaged tail off the last segment. If that truncate
// fails, the segment must not take new records: appended after the
// damaged bytes, they would be read as damage and lost.
func TestRecoverTruncateFailureKeepsNewRecords(t *testing.T) {
	for _, n := range []int{5, 0} {
		t.Run(fmt.Sprintf("records=%d", n), func(t *testing.T) { testTruncateFailure(t, n) })
	}
}

func testTruncateFailure(t *testing.T, n int) {
	m := newMemFS(1)
	lg, _ := newLogger()
	opts := Opts{Sync: SyncAlways, FS: m, Clock: sensorstest.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)), Log: lg}
	l, err := Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		appendN(t, l, 0, n)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join("/buf", segName(1))
	m.mu.Lock()
	m.files[seg].data = append(m.files[seg].data, make([]byte, 7)...) // an unfinished frame
	m.failTruncate = func(string) error { return syscall.EIO }
	m.mu.Unlock()
	l, err = Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.failTruncate = nil
	m.mu.Unlock()
	s, err := l.Append([]byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, l, 0)
	if len(recs) != n+1 || recs[n].Seq != s || string(recs[n].Body) != "new" {
		t.Fatalf("the record appended after a failed repair is not readable: %d records, stats %+v", len(recs), l.Stats())
	}
	checkSeqs(t, recs[:n], 1, 0)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open("/buf", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	recs = readAll(t, l, 0)
	if len(recs) != n+1 || recs[n].Seq != s || string(recs[n].Body) != "new" {
		t.Fatalf("after a restart: %d records, want %d and %q", len(recs), n, "new")
	}
}

// readWith decides the active segment is damaged and asks for a rotation
// under two separate holds of mu; a rotation can run between them, so
// needRotate can be set while the new active segment is still empty. The
// next Append must not rotate onto that segment's own name: that failed
// the log for good (ErrFailed) until a reopen.
func TestNeedRotateOnEmptyActiveSegment(t *testing.T) {
	m := newMemFS(1)
	lg, _ := newLogger()
	l, err := Open("/buf", Opts{Sync: SyncInterval, FS: m, Clock: sensorstest.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)), Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.mu.Lock()
	l.needRotate = true // what the race leaves: the active segment has no record
	l.mu.Unlock()
	if _, err := l.Append(body(0)); err != nil {
		t.Fatalf("Append with a rotation asked for an empty segment: %v", err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, readAll(t, l, 0), 1, 0)
}

// OnVisible is how the forwarder learns of records without waiting in
// Read: it is called, with no lock held, by whichever goroutine made
// records readable. An Append under a lease does so before it returns;
// with the lease failing, the Append fsyncs what the lease does not cover
// (it used to wait for the interval fsync, up to a second) and does so
// too.
func TestOnVisibleEveryWayRecordsBecomeReadable(t *testing.T) {
	for _, leaseFails := range []bool{false, true} {
		t.Run(fmt.Sprintf("leaseFails=%v", leaseFails), func(t *testing.T) {
			m := newMemFS(1)
			lg, _ := newLogger()
			clk := sensorstest.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
			if leaseFails {
				m.failWrite = func(name string) error {
					if filepath.Base(name) == leaseTmp {
						return errors.New("no space left on device")
					}
					return nil
				}
			}
			l, err := Open("/buf", Opts{Sync: SyncInterval, SyncInterval: time.Second, FS: m, Clock: clk, Log: lg})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			told := make(chan int, 16)
			l.OnVisible(func() {
				recs, err := l.ReadReady(0, 10, nil) // allowed from within
				if err != nil {
					t.Error(err)
				}
				told <- len(recs)
			})
			for i := range 3 {
				if _, err := l.Append(body(i)); err != nil {
					t.Fatal(err)
				}
				if n := len(told); n != i+1 {
					t.Fatalf("told %d times after %d Appends, want %d", n, i+1, i+1)
				}
			}
			for i := range 3 {
				if n := <-told; n != i+1 {
					t.Fatalf("told with %d records readable after Append %d", n, i+1)
				}
			}
			synced := l.Stats().SyncedSeq
			if leaseFails && synced != 3 {
				t.Fatalf("synced seq %d with the lease failing, want 3: each Append fsyncs what the lease does not cover", synced)
			}
			if !leaseFails && synced != 0 {
				t.Fatalf("synced seq %d under a lease before the interval, want 0", synced)
			}
		})
	}
}

// A reader that has caught up gets each new record from the copy of the
// last write the writer keeps, not from the file: a live message costs
// no pread. A reader behind that write reads the file.
func TestCaughtUpReadNeedsNoFileRead(t *testing.T) {
	m := newMemFS(1)
	lg, _ := newLogger()
	l, err := Open("/buf", Opts{Sync: SyncInterval, FS: m, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	reads := func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.reads
	}
	for i := range 20 {
		if _, err := l.Append(body(i)); err != nil {
			t.Fatal(err)
		}
		before := reads()
		recs, err := l.ReadReady(uint64(i), 10, nil)
		if err != nil || len(recs) != 1 || recs[0].Seq != uint64(i+1) || !bytes.Equal(recs[0].Body, body(i)) {
			t.Fatalf("record %d: %d records, %v", i+1, len(recs), err)
		}
		if i > 0 && reads() != before { // the first opens the segment (its header)
			t.Fatalf("record %d: %d file reads, want none", i+1, reads()-before)
		}
	}
	before := reads()
	recs, err := l.ReadReady(0, 20, nil)
	if err != nil || len(recs) != 20 {
		t.Fatalf("reading all again: %d records, %v", len(recs), err)
	}
	checkSeqs(t, recs, 1, 0)
	if reads() == before {
		t.Fatal("records behind the last write came from memory")
	}
}

// A reader draining a backlog one record per call (a PUBACK frees one
// slot of the window) reads the file a buffer at a time, not once per
// call: before, each call reset the reader and read up to 64 KiB again
// for one 100-byte record.
func TestDrainOneAtATimeReadsFileOncePerBuffer(t *testing.T) {
	m := newMemFS(1)
	lg, _ := newLogger()
	l, err := Open("/buf", Opts{Sync: SyncAlways, FS: m, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := range n {
		if _, err := l.Append(body(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened, nothing is in the writer's copy: every record comes
	// from the file.
	if l, err = Open("/buf", Opts{Sync: SyncAlways, FS: m, Log: lg}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	m.mu.Lock()
	m.reads = 0
	m.mu.Unlock()
	var recs []Record
	for i := range n {
		recs, err = l.ReadReady(uint64(i), 1, recs)
		if err != nil || len(recs) != 1 || recs[0].Seq != uint64(i+1) || !bytes.Equal(recs[0].Body, body(i)) {
			t.Fatalf("record %d: %d records, %v", i+1, len(recs), err)
		}
	}
	m.mu.Lock()
	reads := m.reads
	m.mu.Unlock()
	// 2,000 frames of about 40 bytes fit in two 64 KiB reads; allow
	// for the segment header and a few more.
	if reads > 10 {
		t.Fatalf("%d file reads to drain %d records one at a time, want a few", reads, n)
	}
}
