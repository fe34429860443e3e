package wal

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func readFileFS(t *testing.T, fsys FS, p string) []byte {
	t.Helper()
	f, err := fsys.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFileFS(t *testing.T, fsys FS, p string, b []byte) {
	t.Helper()
	f, err := fsys.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// The corruption fixture: 150 records of 29-byte frames in 1032-byte segments
// (34 records each): seqs 1-34, 35-68, 69-102, 103-136, 137-150.
const (
	fixRecords  = 150
	fixFrame    = frameHeaderSize + 13
	fixPerSeg   = 34
	fixLastSeg  = "00000000000000000137.wal"
	fixMidSeg   = "00000000000000000069.wal"
	fixSecond   = "00000000000000000035.wal"
	fixFirstSeg = "00000000000000000001.wal"
)

func seqRange(lo, hi uint64) func(uint64) bool {
	return func(s uint64) bool { return s >= lo && s <= hi }
}

func TestRecoverCorruption(t *testing.T) {
	flip := func(name string, off int) func(t *testing.T, e *env) {
		return func(t *testing.T, e *env) {
			p := filepath.Join(e.dir, name)
			b := readFileFS(t, e.fs, p)
			b[off] ^= 0x10
			writeFileFS(t, e.fs, p, b)
		}
	}
	cut := func(name string, size int) func(t *testing.T, e *env) {
		return func(t *testing.T, e *env) {
			p := filepath.Join(e.dir, name)
			writeFileFS(t, e.fs, p, readFileFS(t, e.fs, p)[:size])
		}
	}
	appendTail := func(name string, tail []byte) func(t *testing.T, e *env) {
		return func(t *testing.T, e *env) {
			p := filepath.Join(e.dir, name)
			writeFileFS(t, e.fs, p, append(readFileFS(t, e.fs, p), tail...))
		}
	}
	garbage := make([]byte, 3000)
	for i := range garbage {
		garbage[i] = byte(rand.N(256))
	}
	lastRecOff := segHeaderSize + 13*fixFrame // seq 150 in the last segment
	cases := []struct {
		name    string
		damage  func(t *testing.T, e *env)
		lost    func(uint64) bool // seqs that may not come back
		warns   int               // WARN/ERROR lines Open logs
		corrupt uint64            // Stats.DroppedCorrupt
		minNext uint64            // lowest seq the next Append may get
		aside   string            // a file that must exist afterwards (prefix)
		acked   uint64            // AckedSeq after Open (the fixture acks 10)
	}{
		{"tail cut mid-header", cut(fixLastSeg, lastRecOff+5), seqRange(150, 150), 1, 0, 150, fixLastSeg + ".corrupt-", 10},
		{"tail cut mid-payload", cut(fixLastSeg, lastRecOff+20), seqRange(150, 150), 1, 0, 150, fixLastSeg + ".corrupt-", 10},
		{"zero-filled tail 4KiB", appendTail(fixLastSeg, make([]byte, 4<<10)), nil, 1, 0, 151, fixLastSeg + ".corrupt-", 10},
		{"zero-filled tail 64KiB", appendTail(fixLastSeg, make([]byte, 64<<10)), nil, 1, 0, 151, fixLastSeg + ".corrupt-", 10},
		{"random garbage tail", appendTail(fixLastSeg, garbage), nil, 1, 0, 151, fixLastSeg + ".corrupt-", 10},
		{"bit flip in older segment", flip(fixSecond, segHeaderSize+10*fixFrame+20), seqRange(45, 68), 1, 24, 151, fixSecond + ".corrupt-", 10},
		{"bit flip in length field", flip(fixSecond, segHeaderSize+10*fixFrame+2), seqRange(45, 68), 1, 24, 151, fixSecond + ".corrupt-", 10},
		{"missing middle segment", func(t *testing.T, e *env) {
			if err := e.fs.Remove(filepath.Join(e.dir, fixMidSeg)); err != nil {
				t.Fatal(err)
			}
		}, seqRange(69, 102), 1, 34, 151, "", 10},
		{"zero-length middle segment", cut(fixMidSeg, 0), seqRange(69, 102), 2, 34, 151, "", 10},
		{"zero-length newest segment", func(t *testing.T, e *env) {
			writeFileFS(t, e.fs, filepath.Join(e.dir, segName(151)), nil)
		}, nil, 1, 0, 151, "", 10},
		{"partial header of newest segment", cut(fixLastSeg, 10), seqRange(137, 150), 1, 0, 137, fixLastSeg + ".corrupt-", 10},
		{"bad magic", flip(fixFirstSeg, 0), seqRange(1, 34), 1, 0, 151, fixFirstSeg + ".alien-", 34},
		{"bad version", func(t *testing.T, e *env) {
			p := filepath.Join(e.dir, fixLastSeg)
			b := readFileFS(t, e.fs, p)
			binary.LittleEndian.PutUint32(b[8:], 9)
			writeFileFS(t, e.fs, p, b)
		}, seqRange(137, 150), 2, 0, 151, fixLastSeg + ".alien-", 10},
		{"header checksum", flip(fixMidSeg, 14), seqRange(69, 102), 2, 34, 151, fixMidSeg + ".corrupt-", 10},
		{"segment of another epoch", func(t *testing.T, e *env) {
			p := filepath.Join(e.dir, fixMidSeg)
			b := readFileFS(t, e.fs, p)
			copy(b, appendSegHeader(nil, segHeader{epoch: 42, first: 69}))
			writeFileFS(t, e.fs, p, b)
		}, seqRange(69, 102), 2, 34, 151, fixMidSeg + ".alien-", 10},
		{"alien file named like a segment", func(t *testing.T, e *env) {
			writeFileFS(t, e.fs, filepath.Join(e.dir, "00000000000000000050.wal"), []byte("#!/bin/sh\necho hello\n"))
		}, nil, 1, 0, 151, "00000000000000000050.wal.alien-", 10},
		// The fsynced marker damaged and the live one lost, as after a
		// power cut: everything on disk is redelivered.
		{"corrupt ack marker", func(t *testing.T, e *env) {
			writeFileFS(t, e.fs, filepath.Join(e.dir, markerName), bytes.Repeat([]byte{0xff}, markerSize))
			_ = e.fs.Remove(filepath.Join(e.dir, markerLive))
		}, nil, 1, 0, 151, "", 0},
		{"truncated ack marker", func(t *testing.T, e *env) {
			cut(markerName, 5)(t, e)
			_ = e.fs.Remove(filepath.Join(e.dir, markerLive))
		}, nil, 1, 0, 151, "", 0},
		// After a crash the live marker, written without fsync, is what
		// keeps redelivery down to the messages in flight.
		{"corrupt ack marker, live marker intact", func(t *testing.T, e *env) {
			writeFileFS(t, e.fs, filepath.Join(e.dir, markerName), bytes.Repeat([]byte{0xff}, markerSize))
		}, nil, 1, 0, 151, "", 10},
		{"torn live marker", func(t *testing.T, e *env) {
			writeFileFS(t, e.fs, filepath.Join(e.dir, markerLive), bytes.Repeat([]byte{0xff}, markerSize))
		}, nil, 0, 0, 151, "", 10},
		{"leftover marker temp file", func(t *testing.T, e *env) {
			writeFileFS(t, e.fs, filepath.Join(e.dir, markerTmp), []byte("half"))
		}, nil, 0, 0, 151, "", 10},
	}
	for _, fsc := range []struct {
		name string
		fs   func(t *testing.T) (FS, string)
	}{{"mem", memDir}, {"os", osDir}} {
		for _, tc := range cases {
			t.Run(fsc.name+"/"+tc.name, func(t *testing.T) {
				e := newEnv(t, suiteConfig{mode: SyncAlways, fs: fsc.fs})
				e.opts.SegmentBytes = 1032
				l := e.open()
				appendN(t, l, 0, fixRecords)
				l.Ack(10)
				if len(segFiles(t, e)) != 5 {
					t.Fatalf("fixture has %d segments, want 5", len(segFiles(t, e)))
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				tc.damage(t, e)
				before := len(e.logs.warnings())

				l = e.open()
				if got := len(e.logs.warnings()) - before; got != tc.warns {
					t.Errorf("Open logged %d warnings, want %d: %q", got, tc.warns, e.logs.warnings()[before:])
				}
				recs := readAll(t, l, 0)
				seen := map[uint64]bool{}
				for _, r := range recs {
					if !bytes.Equal(r.Body, body(int(r.Seq-1))) {
						t.Fatalf("phantom record: seq %d body %q", r.Seq, r.Body)
					}
					seen[r.Seq] = true
				}
				for s := uint64(1); s <= fixRecords; s++ {
					mayLose := tc.lost != nil && tc.lost(s)
					if !mayLose && !seen[s] {
						t.Errorf("seq %d lost", s)
					}
					if mayLose && seen[s] {
						t.Errorf("seq %d came back from damaged data", s)
					}
				}
				st := l.Stats()
				if st.AckedSeq != tc.acked {
					t.Errorf("AckedSeq %d, want %d", st.AckedSeq, tc.acked)
				}
				if st.DroppedCorrupt != tc.corrupt {
					t.Errorf("DroppedCorrupt %d, want %d", st.DroppedCorrupt, tc.corrupt)
				}
				if tc.warns > 0 && st.CorruptRecovered == 0 && st.DroppedCorrupt == 0 {
					t.Errorf("damage not counted: %+v", st)
				}
				s, err := l.Append([]byte("after"))
				if err != nil {
					t.Fatalf("Append after recovery: %v", err)
				}
				if s < tc.minNext {
					t.Errorf("next seq %d, want >= %d (no reuse of seqs that may have been sent)", s, tc.minNext)
				}
				if tc.aside != "" {
					names, _ := e.fs.ReadDir(e.dir)
					sort.Strings(names)
					found := false
					for _, n := range names {
						found = found || strings.HasPrefix(n, tc.aside)
					}
					if !found {
						t.Errorf("no %s* kept; dir: %v", tc.aside, names)
					}
				}
				// A second Open finds nothing more to repair.
				l.Close()
				before = len(e.logs.warnings())
				e.open()
				// Only a gap between segments is reported again (and
				// only until the forwarder moves past it).
				want := 0
				if tc.corrupt > 0 {
					want = 1
				}
				if w := e.logs.warnings()[before:]; len(w) != want {
					t.Errorf("second Open logged %d warnings, want %d: %q", len(w), want, w)
				}
			})
		}
	}
}

// The damaged-tail copy holds exactly the bytes cut off.
func TestRecoverKeepsCorruptCopy(t *testing.T) {
	e := newEnv(t, suiteConfig{mode: SyncAlways, fs: memDir})
	l := e.open()
	appendN(t, l, 0, 3)
	l.Close()
	tail := []byte("garbage after the last record")
	p := filepath.Join(e.dir, segName(1))
	writeFileFS(t, e.fs, p, append(readFileFS(t, e.fs, p), tail...))
	e.open()
	var copyName string
	for _, n := range e.fs.(*memFS).names() {
		if strings.HasPrefix(n, segName(1)+".corrupt-") {
			copyName = n
		}
	}
	if copyName == "" {
		t.Fatal("no .corrupt copy")
	}
	if got := readFileFS(t, e.fs, filepath.Join(e.dir, copyName)); !bytes.Equal(got, tail) {
		t.Fatalf("copy holds %q, want %q", got, tail)
	}
	if got := len(readFileFS(t, e.fs, p)); got != segHeaderSize+3*fixFrame {
		t.Fatalf("segment is %d bytes after repair, want %d", got, segHeaderSize+3*fixFrame)
	}
}

// Damage that appears after Open (bit rot under a running gateway) is
// found by Read: the rest of that segment is skipped and counted, the
// reader goes on with the next segment, and nothing damaged is returned.
func TestReadSkipsDamageFoundLate(t *testing.T) {
	e := newEnv(t, suiteConfig{mode: SyncAlways, fs: memDir})
	e.opts.SegmentBytes = 1032
	l := e.open()
	appendN(t, l, 0, fixRecords)
	m := e.fs.(*memFS)
	m.mu.Lock()
	m.files[filepath.Join(e.dir, fixSecond)].data[segHeaderSize+10*fixFrame+20] ^= 1 // seq 45
	m.mu.Unlock()
	recs := readAll(t, l, 0)
	for _, r := range recs {
		if !bytes.Equal(r.Body, body(int(r.Seq-1))) {
			t.Fatalf("seq %d: damaged body %q returned", r.Seq, r.Body)
		}
		if r.Seq >= 45 && r.Seq <= 68 {
			t.Fatalf("seq %d from the damaged part returned", r.Seq)
		}
	}
	if want := fixRecords - 24; len(recs) != want {
		t.Fatalf("read %d records, want %d", len(recs), want)
	}
	if st := l.Stats(); st.DroppedCorrupt != 24 || st.CorruptRecovered != 1 {
		t.Fatalf("DroppedCorrupt %d CorruptRecovered %d, want 24 and 1", st.DroppedCorrupt, st.CorruptRecovered)
	}
}

// Late damage in the active segment seals it, so new records go to a
// fresh segment that readers can reach.
func TestReadDamageInActiveSegment(t *testing.T) {
	e := newEnv(t, suiteConfig{mode: SyncAlways, fs: memDir})
	e.opts.SegmentBytes = 1032
	l := e.open()
	appendN(t, l, 0, fixRecords)
	m := e.fs.(*memFS)
	m.mu.Lock()
	m.files[filepath.Join(e.dir, fixLastSeg)].data[segHeaderSize+3*fixFrame+20] ^= 1 // seq 140
	m.mu.Unlock()
	recs := readAll(t, l, 0)
	if last := recs[len(recs)-1].Seq; last != 139 {
		t.Fatalf("read up to %d, want 139", last)
	}
	s, err := l.Append(body(int(fixRecords)))
	if err != nil || s != fixRecords+1 {
		t.Fatalf("Append: %d %v", s, err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	more := readAll(t, l, 139)
	if len(more) != 1 || more[0].Seq != fixRecords+1 {
		t.Fatalf("after the damaged segment read %v", more)
	}
	if st := l.Stats(); st.DroppedCorrupt != 11 {
		t.Fatalf("DroppedCorrupt %d, want 11", st.DroppedCorrupt)
	}
}

// TestNoSeqReuseAfterDamagedTail is the regression test for seq reuse after
// a restart (review P1-1): a record in the active segment damaged after it
// was synced and handed to a reader (and PUBACKed) made recovery truncate
// there and issue the lost seqs again in the same epoch, so the cloud
// deduplicated the new messages by (gw, epoch, seq) and they were lost. The
// next seq must be above every seq ever handed to a reader, whether the
// live ack marker says so or not.
func TestNoSeqReuseAfterDamagedTail(t *testing.T) {
	// cut: the segment ends cleanly after seq 5 (SyncNone and a power
	// cut); only ack.live knows seqs up to 10 went out.
	for _, tc := range []struct{ live, cut bool }{{true, false}, {false, false}, {true, true}} {
		live := tc.live
		t.Run(fmt.Sprintf("live=%v,cut=%v", live, tc.cut), func(t *testing.T) {
			e := newEnv(t, suiteConfig{mode: SyncAlways, fs: memDir})
			l, err := Open(e.dir, e.opts)
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, l, 0, 10)
			recs := readAll(t, l, 0)
			handed := recs[len(recs)-1].Seq
			if handed != 10 {
				t.Fatalf("read up to %d, want 10", handed)
			}
			epoch := l.Stats().Epoch
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			// The state a crash leaves: ack.live (no fsync) says all
			// ten were PUBACKed, the fsynced marker is behind.
			_ = e.fs.Remove(filepath.Join(e.dir, markerName))
			if live {
				writeFileFS(t, e.fs, filepath.Join(e.dir, markerLive), encodeMarker(epoch, 10))
			}
			m := e.fs.(*memFS)
			m.mu.Lock()
			f := m.files[filepath.Join(e.dir, segName(1))]
			if tc.cut {
				f.data = f.data[:segHeaderSize+5*(frameHeaderSize+len(body(0)))]
			} else {
				f.data[segHeaderSize+5*(frameHeaderSize+len(body(0)))+frameHeaderSize] ^= 0xff // seq 6's body
			}
			m.mu.Unlock()

			l2 := e.open()
			if st := l2.Stats(); st.Epoch != epoch {
				t.Fatalf("epoch changed: %x, was %x", st.Epoch, epoch)
			}
			s, err := l2.Append([]byte("new"))
			if err != nil {
				t.Fatal(err)
			}
			if s <= handed {
				t.Fatalf("new record got seq %d; seqs up to %d were already handed to a reader in this epoch", s, handed)
			}
			if err := l2.Sync(); err != nil {
				t.Fatal(err)
			}
			got := readAll(t, l2, 0)
			if len(got) == 0 || got[len(got)-1].Seq != s || string(got[len(got)-1].Body) != "new" {
				t.Fatalf("the new record is not readable after the gap: %v", got)
			}
		})
	}
}

// A power cut before the interval fsync after a rotation can leave the
// sealed segment without its tail (see rotate): recovery cuts it off,
// counts the seqs up to the next segment as lost and says it was a power
// cut, not damage; damage in the same place is still called damage.
func TestRecoverTornSealedSegment(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
		says   string
	}{
		{"cut mid-frame", func(b []byte) []byte { return b[:segHeaderSize+10*fixFrame+20] }, "unfinished tail of a sealed segment (a power cut before its fsync)"},
		{"zeroed", func(b []byte) []byte {
			clear(b[segHeaderSize+10*fixFrame:])
			return b
		}, "unfinished tail of a sealed segment (a power cut before its fsync)"},
		{"bit flip", func(b []byte) []byte {
			b[segHeaderSize+10*fixFrame+20] ^= 0x10
			return b
		}, "truncated damaged segment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, suiteConfig{mode: SyncInterval, fs: memDir})
			e.opts.SegmentBytes = 1032
			l := e.open()
			appendN(t, l, 0, fixRecords)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(e.dir, fixSecond)
			writeFileFS(t, e.fs, p, tc.damage(readFileFS(t, e.fs, p)))
			before := len(e.logs.warnings())
			l = e.open()
			defer l.Close()
			w := e.logs.warnings()[before:]
			if len(w) != 1 || !strings.Contains(w[0], tc.says) || !strings.Contains(w[0], "first_lost=45") {
				t.Errorf("Open logged %q, want one line saying %q from seq 45", w, tc.says)
			}
			if st := l.Stats(); st.DroppedCorrupt != 24 {
				t.Errorf("DroppedCorrupt %d, want 24 (seqs 45-68)", st.DroppedCorrupt)
			}
			if recs := readAll(t, l, 0); len(recs) != fixRecords-24 {
				t.Errorf("%d records after recovery, want %d", len(recs), fixRecords-24)
			}
		})
	}
}
