package wal

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
)

// The running disk total and the backlog against the files and the
// records, through appends, acks, drops, expiry, clean and unclean
// restarts.
func TestRunningTotalsProperty(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		for _, ov := range []Overflow{DropOldest, RejectNew} {
			t.Run(fmt.Sprintf("%v/%d", ov, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 3))
				m := newMemFS(seed)
				clk := sensorstest.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
				lg, _ := newLogger()
				opts := Opts{Sync: SyncInterval, FS: m, Clock: clk, Log: lg, SegmentBytes: 1024, MaxBytes: 4096, Overflow: ov, MaxAge: time.Hour}
				l, err := Open("/buf", opts)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { l.Close() }()
				check := func(what string) {
					t.Helper()
					// Sync runs the housekeeping the clock made due.
					if err := l.Sync(); err != nil {
						t.Fatal(err)
					}
					var files int64
					for _, n := range m.names() {
						if _, ok := parseSegName(n); ok {
							b, _ := m.get("/buf/" + n)
							files += int64(len(b))
						}
					}
					l.mu.Lock()
					disk := l.disk
					l.mu.Unlock()
					if disk != files {
						t.Fatalf("%s: running total %d, segment files %d", what, disk, files)
					}
					st := l.Stats()
					if st.DiskBytes != files {
						t.Fatalf("%s: Stats.DiskBytes %d, files %d", what, st.DiskBytes, files)
					}
					recs := readAll(t, l, st.AckedSeq)
					if uint64(len(recs)) != st.Backlog {
						t.Fatalf("%s: Stats.Backlog %d, readable after acked %d: %d", what, st.Backlog, st.AckedSeq, len(recs))
					}
				}
				var after uint64
				for step := range 300 {
					op := rng.IntN(20)
					if testing.Verbose() {
						st := l.Stats()
						t.Logf("step %d op %d: %+v", step, op, st)
					}
					switch {
					case op < 12:
						_, err := l.Append([]byte(strings.Repeat("x", rng.IntN(200))))
						if err != nil && err != ErrFull {
							t.Fatal(err)
						}
					case op < 15:
						if err := l.Sync(); err != nil {
							t.Fatal(err)
						}
						recs := readAll(t, l, after)
						if len(recs) > 0 {
							k := rng.IntN(len(recs))
							after = recs[k].Seq
							l.Ack(after)
						}
					case op < 16:
						clk.Advance(time.Duration(rng.IntN(90)) * time.Minute)
					case op < 18:
						l.Close()
						l, err = Open("/buf", opts)
						if err != nil {
							t.Fatal(err)
						}
						after = l.Stats().AckedSeq
					case op < 19:
						m.mu.Lock()
						img := m.crashImage() // power cut
						m.mu.Unlock()
						l.Close()
						m = img
						opts.FS = m
						l, err = Open("/buf", opts)
						if err != nil {
							t.Fatal(err)
						}
						after = l.Stats().AckedSeq
					default:
						img := m.clone() // kill -9
						l.Close()
						m = img
						opts.FS = m
						l, err = Open("/buf", opts)
						if err != nil {
							t.Fatal(err)
						}
						after = l.Stats().AckedSeq
					}
					check(fmt.Sprintf("step %d", step))
				}
			})
		}
	}
}

// Close while producers append, a reader reads and acks: every Append
// returns; each one that succeeded is on disk after a reopen under its
// seq, seqs rise per goroutine, and the next seq follows without a gap.
func TestCloseDuringAppendsProperty(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncInterval, SyncNone} {
		for round := range 20 {
			t.Run(fmt.Sprintf("%v/%d", mode, round), func(t *testing.T) {
				m := newMemFS(uint64(round))
				lg, _ := newLogger()
				opts := Opts{Sync: mode, FS: m, Clock: sensorstest.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)), Log: lg, SegmentBytes: 2048, MaxBytes: 1 << 20}
				l, err := Open("/buf", opts)
				if err != nil {
					t.Fatal(err)
				}
				const producers = 6
				got := make([]map[uint64]string, producers)
				done := make(chan struct{})
				for p := range producers {
					got[p] = map[uint64]string{}
					go func() {
						defer func() { done <- struct{}{} }()
						var last uint64
						for i := 0; ; i++ {
							b := fmt.Sprintf("p%d-%d", p, i)
							s, err := l.Append([]byte(b))
							if err == ErrClosed {
								return
							}
							if err != nil {
								t.Errorf("Append: %v", err)
								return
							}
							if s <= last {
								t.Errorf("producer %d: seq %d after %d", p, s, last)
							}
							last = s
							got[p][s] = b
						}
					}()
				}
				rdone := make(chan struct{})
				go func() {
					defer close(rdone)
					var after uint64
					for {
						recs, err := l.Read(context.Background(), after, 50, nil)
						if err != nil {
							return
						}
						after = recs[len(recs)-1].Seq
						l.Ack(after - 1)
					}
				}()
				for l.Stats().LastSeq < uint64(50+round*10) {
					runtime.Gosched()
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				for range producers {
					<-done
				}
				<-rdone
				l, err = Open("/buf", opts)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				st := l.Stats()
				on := map[uint64]string{}
				for _, r := range readAll(t, l, 0) {
					on[r.Seq] = string(r.Body)
				}
				var max uint64
				for p := range producers {
					for s, b := range got[p] {
						max = maxU(max, s)
						if s > st.AckedSeq && on[s] != b {
							t.Fatalf("seq %d: %q after reopen, Append returned it for %q", s, on[s], b)
						}
					}
				}
				if st.LastSeq != max {
					t.Fatalf("last seq after a clean Close %d, the last Append returned %d", st.LastSeq, max)
				}
				s, err := l.Append([]byte("next"))
				if err != nil || s != max+1 {
					t.Fatalf("Append after a clean Close = %d, %v; want %d", s, err, max+1)
				}
			})
		}
	}
}

func maxU(a, b uint64) uint64 { return max(a, b) }
