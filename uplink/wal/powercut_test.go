package wal

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// powerCutRun appends, reads and acks against a memFS that loses power at
// its crashAt-th sync, then checks what a reboot finds.
func powerCutRun(t *testing.T, mode SyncMode, seed uint64, crashAt int) (syncs int) {
	t.Helper()
	m := newMemFS(seed)
	m.crashAt = crashAt
	clk := newFakeClock()
	lg, _ := newLogger()
	opts := Opts{Sync: mode, FS: m, Clock: clk, Log: lg, SegmentBytes: 1024, AckEvery: 3, SyncInterval: time.Second}
	const dir = "/buf"

	var (
		mu       sync.Mutex
		returned = map[uint64]string{} // seq -> body, for Appends that returned nil
		tried    = map[string]bool{}
	)
	l, err := Open(dir, opts)
	if err == nil {
		const producers, rounds, each = 3, 8, 4
		var acked uint64
		for round := range rounds {
			var wg sync.WaitGroup
			for p := range producers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						b := fmt.Sprintf("p%d-r%d-i%d", p, round, i)
						mu.Lock()
						tried[b] = true
						mu.Unlock()
						s, err := l.Append([]byte(b))
						if err != nil {
							return
						}
						mu.Lock()
						returned[s] = b
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			// Interval: time passes, so the next commit syncs.
			clk.Advance(time.Second)
			// The forwarder acks part of what it can read.
			recs := readAll(t, l, acked)
			if len(recs) > 2 {
				acked = recs[len(recs)/2].Seq
				l.Ack(acked)
			}
		}
		cerr := l.Close()
		st := l.Stats() // what the log believed when the power went
		if !m.crashed {
			if cerr != nil {
				t.Fatalf("Close without a crash: %v", cerr)
			}
			return m.syncs
		}
		checkAfterCut(t, mode, m.image, opts, dir, st, returned, tried)
		return m.syncs
	}
	if !m.crashed {
		t.Fatalf("Open failed without a crash: %v", err)
	}
	checkAfterCut(t, mode, m.image, opts, dir, Stats{}, returned, tried)
	return m.syncs
}

func checkAfterCut(t *testing.T, mode SyncMode, img *memFS, opts Opts, dir string, before Stats, returned map[uint64]string, tried map[string]bool) {
	t.Helper()
	opts.FS = img
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open after power cut: %v", err)
	}
	defer l.Close()
	got := map[uint64]string{}
	var last uint64
	for _, r := range readAll(t, l, 0) {
		b := string(r.Body)
		if !tried[b] {
			t.Fatalf("phantom record seq %d: %q was never appended", r.Seq, b)
		}
		if want, ok := returned[r.Seq]; ok && want != b {
			t.Fatalf("seq %d holds %q, but Append returned it for %q", r.Seq, b, want)
		}
		got[r.Seq] = b
		last = r.Seq
	}
	// What must survive: Always, every returned Append; Interval, those
	// covered by a completed sync. Acked records may be reclaimed.
	for s, b := range returned {
		if s <= before.AckedSeq {
			continue
		}
		if mode == SyncInterval && s > before.SyncedSeq {
			continue
		}
		if got[s] != b {
			t.Errorf("%v: seq %d (%q) lost (acked %d, synced %d before the cut)", mode, s, b, before.AckedSeq, before.SyncedSeq)
		}
	}
	s, err := l.Append([]byte("after"))
	if err != nil {
		t.Fatalf("Append after power cut: %v", err)
	}
	if s <= last {
		t.Fatalf("Append after power cut got seq %d, not above the last record %d", s, last)
	}
}

func TestPowerCut(t *testing.T) {
	seeds := uint64(12)
	if testing.Short() {
		seeds = 3
	}
	for _, mode := range []SyncMode{SyncAlways, SyncInterval} {
		t.Run(mode.String(), func(t *testing.T) {
			// A run without a crash tells how many syncs there are.
			total := powerCutRun(t, mode, 0, 0)
			if total < 10 {
				t.Fatalf("only %d syncs in a run", total)
			}
			runs := 0
			for seed := uint64(1); seed <= seeds; seed++ {
				for k := 1; k <= total+2; k += 1 + int(seed%3) {
					t.Run(fmt.Sprintf("seed%d/sync%d", seed, k), func(t *testing.T) {
						powerCutRun(t, mode, seed, k)
					})
					runs++
				}
			}
			t.Logf("%d power cuts over %d syncs", runs, total)
		})
	}
}

// A failing write (disk full) fails only its batch: the segment is cut
// back, seqs stay dense and later Appends work.
func TestWriteErrorRollsBack(t *testing.T) {
	m := newMemFS(1)
	clk := newFakeClock()
	lg, _ := newLogger()
	l, err := Open("/buf", Opts{Sync: SyncAlways, FS: m, Clock: clk, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendN(t, l, 0, 3)
	full := errors.New("no space left on device")
	m.mu.Lock()
	m.failWrite = func(string) error { return full }
	m.mu.Unlock()
	if _, err := l.Append(body(3)); !errors.Is(err, full) {
		t.Fatalf("Append on a full disk: %v", err)
	}
	m.mu.Lock()
	m.failWrite = nil
	m.mu.Unlock()
	seqs := appendN(t, l, 3, 2)
	if seqs[0] != 4 {
		t.Fatalf("seq after a failed write %d, want 4", seqs[0])
	}
	recs := readAll(t, l, 0)
	checkSeqs(t, recs, 1, 0)
	if len(recs) != 5 {
		t.Fatalf("read %d, want 5", len(recs))
	}
}
