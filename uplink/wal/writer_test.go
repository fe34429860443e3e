package wal

import (
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
	"github.com/edged/edged/sensors/statefile"
)

// blockSyncs makes every fsync of a file match accepts wait until
// release is called once hold is set, as a slow SD card's fsync does
// (tens of milliseconds, seconds when the card is busy). entered receives
// the file's name as each blocked fsync begins. release lets every held
// fsync go and holds no more; it may be called again (deferred before a
// Close, which waits for a held fsync).
func blockSyncs(m *memFS, match func(name string) bool) (hold *atomic.Bool, entered chan string, release func()) {
	hold = new(atomic.Bool)
	entered = make(chan string, 16)
	gate := make(chan struct{})
	var once sync.Once
	m.beforeSync = func(name string) {
		if hold.Load() && match(name) {
			entered <- name
			<-gate
		}
	}
	return hold, entered, func() {
		once.Do(func() {
			hold.Store(false)
			close(gate)
		})
	}
}

func isSeg(name string) bool { return strings.HasSuffix(name, segSuffix) }

// waitFor polls cond for up to 10 s of real time, for state another
// goroutine sets.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s within 10 s", what)
}

// Under sync: interval, the interval fsync does not hold Appends up.
// Before, the one Append a sync_interval that found the fsync due made
// it inline, and the housekeeper's made it holding the writer lock: every
// capture (a LAN publisher's PUBACK, a sensor's reading) waited for the
// card. Now Appends go on being written and shown to the forwarder while
// the fsync runs, and the fsync covers what was written before it began.
func TestIntervalFsyncDoesNotHoldAppends(t *testing.T) {
	m := newMemFS(1)
	hold, entered, release := blockSyncs(m, isSeg)
	lg, _ := newLogger()
	clk := sensorstest.NewClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	l, err := Open("/buf", Opts{Sync: SyncInterval, SyncInterval: time.Second, FS: m, Clock: clk, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	defer release() // before Close, which waits for the fsync
	if _, err := l.Append(body(0)); err != nil {
		t.Fatal(err)
	}
	before := l.Stats()
	hold.Store(true)
	// The fsync falls due: the housekeeper's timer fires (the poke:
	// it may have armed the timer from a Now read before the Advance).
	// Before, the next Append made it inline, or waited for the
	// housekeeper's.
	clk.Advance(2 * time.Second)
	l.poke()
	appended := make(chan error, 1)
	go func() {
		for i := 1; i <= 3; i++ {
			if _, err := l.Append(body(i)); err != nil {
				appended <- err
				return
			}
		}
		appended <- nil
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no interval fsync began")
	}
	select {
	case err := <-appended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Appends waited for the interval fsync")
	}
	if recs, err := l.ReadReady(0, 10, nil); err != nil || len(recs) != 4 {
		t.Fatalf("during the fsync the forwarder sees %d records (%v), want 4", len(recs), err)
	}
	if st := l.Stats(); st.SyncedSeq != 0 || st.Fsyncs != before.Fsyncs {
		t.Fatalf("during the fsync: synced %d, fsyncs %d; want 0, %d", st.SyncedSeq, st.Fsyncs, before.Fsyncs)
	}
	hold.Store(false)
	release()
	waitFor(t, "fsync counted", func() bool { return l.Stats().Fsyncs > before.Fsyncs })
	if st := l.Stats(); st.SyncedSeq < 1 {
		t.Fatalf("after the fsync synced seq %d, want at least 1 (written before it began)", st.SyncedSeq)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.SyncedSeq != 4 {
		t.Fatalf("after Close synced seq %d, want 4", st.SyncedSeq)
	}
}

// Under sync: interval an Append that fills the segment rotates it
// without waiting for any fsync, also while the interval fsync runs: the
// sealed segments, the new one and the directory are fsynced by the next
// interval sync, which reports nothing synced before all of them are.
// Before, the rotating Append made three fsyncs (the sealed segment, the
// new one's header, the directory) and first waited for a running
// interval fsync: on an SD card tens of milliseconds, seconds when it is
// busy, for one capture in every 4 MiB.
func TestRotationWaitsForNoFsync(t *testing.T) {
	m := newMemFS(1)
	hold, entered, release := blockSyncs(m, func(string) bool { return true })
	lg, _ := newLogger()
	clk := sensorstest.NewClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	l, err := Open("/buf", Opts{Sync: SyncInterval, SyncInterval: time.Second, SegmentBytes: 1024, FS: m, Clock: clk, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	defer release() // before Close, which waits for a held fsync
	if _, err := l.Append(body(0)); err != nil {
		t.Fatal(err)
	}
	hold.Store(true)
	clk.Advance(2 * time.Second)
	l.poke() // the timer may have been armed from a Now before the Advance
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no interval fsync began")
	}
	before := l.Stats()
	const n = 100 // about 3 KiB: rotates at least twice
	appended := make(chan error, 1)
	go func() {
		for i := 1; i < n; i++ {
			if _, err := l.Append(body(i)); err != nil {
				appended <- err
				return
			}
		}
		appended <- nil
	}()
	select {
	case err := <-appended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Appends that rotate the segment waited for an fsync")
	}
	st := l.Stats()
	if st.Segments < before.Segments+2 || st.Fsyncs != before.Fsyncs || st.SyncedSeq != before.SyncedSeq {
		t.Fatalf("while every fsync is held: %d segments, %d fsyncs, synced seq %d; want at least %d, %d, %d",
			st.Segments, st.Fsyncs, st.SyncedSeq, before.Segments+2, before.Fsyncs, before.SyncedSeq)
	}
	if recs, err := l.ReadReady(0, 2*n, nil); err != nil || len(recs) != n {
		t.Fatalf("the forwarder sees %d records (%v), want %d", len(recs), err, n)
	}
	release()
	clk.Advance(2 * time.Second)
	l.poke()
	waitFor(t, "interval fsync of everything", func() bool { return l.Stats().SyncedSeq == n })
	// Synced means durable: every segment's name and bytes.
	m.mu.Lock()
	for name, in := range m.files {
		if isSeg(name) && (m.durable[name] != in || string(in.synced) != string(in.data)) {
			t.Errorf("synced seq %d, but segment %s is not durable (name %v, %d of %d bytes)",
				n, name, m.durable[name] == in, len(in.synced), len(in.data))
		}
	}
	m.mu.Unlock()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open("/buf", Opts{Sync: SyncInterval, FS: m, Clock: clk, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	recs, err := l.ReadReady(0, 2*n, nil)
	if err != nil || len(recs) != n {
		t.Fatalf("after reopening %d records (%v), want %d", len(recs), err, n)
	}
	for i, r := range recs {
		if string(r.Body) != string(body(i)) {
			t.Fatalf("record %d is %q, want %q", i, r.Body, body(i))
		}
	}
}

// The housekeeper's other durable writes, the lease (every half lease
// block of appends) and the ack marker (every AckEvery acks or
// AckInterval), fsync twice each (the file and the directory); they hold
// no Append up either.
func TestLeaseAndMarkerWritesDoNotHoldAppends(t *testing.T) {
	for _, tc := range []struct {
		file string
		mode SyncMode
	}{{leaseName, SyncInterval}, {markerName, SyncInterval}, {leaseName, SyncNone}, {leaseName, SyncAlways}} {
		file := tc.file
		t.Run(file+"/"+tc.mode.String(), func(t *testing.T) {
			m := newMemFS(1)
			tmp := file + statefile.TempSuffix
			hold, entered, release := blockSyncs(m, func(name string) bool { return filepath.Base(name) == tmp })
			lg, _ := newLogger()
			clk := sensorstest.NewClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
			const block = 16
			l, err := Open("/buf", Opts{Sync: tc.mode, SyncInterval: time.Second, AckEvery: 4, FS: m, Clock: clk, Log: lg, leaseBlock: block})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			defer release() // before Close, which waits for the write
			hold.Store(true)
			// Appends (and for the marker, acks) until the write falls
			// due (the lease: half a block left); it blocks, and under
			// the old code so did an Append. The Appends after it stay
			// within the lease (a burst past it waits for the write:
			// no Append returns a seq the lease does not cover).
			triggered := make(chan error, 1)
			go func() {
				for i := range block/2 + 1 {
					if _, err := l.Append(body(i)); err != nil {
						triggered <- err
						return
					}
					if file == markerName {
						l.Ack(uint64(i + 1)) // AckEvery: the marker falls due
					}
				}
				triggered <- nil
			}()
			select {
			case <-entered:
			case <-time.After(10 * time.Second):
				t.Fatalf("no %s write began", file)
			}
			appended := make(chan error, 1)
			go func() {
				for i := range 4 {
					if _, err := l.Append(body(100 + i)); err != nil {
						appended <- err
						return
					}
				}
				appended <- nil
			}()
			select {
			case err := <-appended:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("Appends waited for the %s write", file)
			}
			hold.Store(false)
			release()
			if err := <-triggered; err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Acks that come while the ack marker is being written count towards the
// next one: the write covers the acked seq it began with, and AckEvery
// more acks make the marker due again at once, not AckInterval later.
// (The write reset the count when it ended, forgetting them; it takes
// tens of milliseconds on an SD card, and runs beside Acks.)
func TestAcksDuringMarkerWriteCount(t *testing.T) {
	m := newMemFS(1)
	tmp := markerName + statefile.TempSuffix
	hold, entered, release := blockSyncs(m, func(name string) bool { return filepath.Base(name) == tmp })
	lg, _ := newLogger()
	clk := sensorstest.NewClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	l, err := Open("/buf", Opts{Sync: SyncInterval, AckEvery: 4, AckInterval: time.Hour, FS: m, Clock: clk, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	defer release() // before Close, which waits for the write
	for i := range 12 {
		if _, err := l.Append(body(i)); err != nil {
			t.Fatal(err)
		}
	}
	hold.Store(true)
	for s := uint64(1); s <= 4; s++ {
		l.Ack(s)
	}
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no marker write began after AckEvery acks")
	}
	hold.Store(false)
	for s := uint64(5); s <= 12; s++ { // twice AckEvery, during the write
		l.Ack(s)
	}
	release()
	marker := func() uint64 {
		b, ok := m.get(filepath.Join("/buf", markerName))
		if !ok {
			return 0
		}
		_, acked, err := decodeMarker(b)
		if err != nil {
			return 0
		}
		return acked
	}
	waitFor(t, "marker with the acks made during the first write", func() bool { return marker() == 12 })
}

// Once the interval fsync has failed, the housekeeper does not spin.
// The sync it could no longer make stayed due, so it armed its timer at
// zero, woke, found nothing it could do and armed it again: a core at
// 100% until the uplink reopened the log (up to 5 s without captures).
func TestFailedIntervalFsyncDoesNotSpin(t *testing.T) {
	m := newMemFS(1)
	lg, _ := newLogger()
	clk := sensorstest.NewClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	l, err := Open("/buf", Opts{Sync: SyncInterval, SyncInterval: time.Second, FS: m, Clock: clk, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(body(0)); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.crashAt = m.syncs + 1 // the interval fsync fails
	m.mu.Unlock()
	clk.Advance(2 * time.Second)
	waitFor(t, "the interval fsync to fail", func() bool { return l.Err() != nil })
	// Every arm from here is after the failure (the housekeeper arms
	// before it syncs); a poke makes sure there is one. It is for the
	// next deadline (none but the hourly one), not at once.
	n0, _, _ := clk.Waits()
	l.poke()
	waitFor(t, "the timer armed after the failure", func() bool { n, _, _ := clk.Waits(); return n > n0 })
	if _, last, _ := clk.Waits(); last <= 0 {
		t.Fatalf("after the failed fsync the housekeeper arms its timer for %v: it spins", last)
	}
}
