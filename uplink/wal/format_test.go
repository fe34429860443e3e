package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
)

func TestDecodeFrame(t *testing.T) {
	good := appendFrame(nil, []byte("hello"), 1234)
	empty := appendFrame(nil, nil, 99)
	flipped := append([]byte(nil), good...)
	flipped[frameHeaderSize+1] ^= 1
	huge := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(huge, MaxRecordBytes+1)
	timeFlip := append([]byte(nil), good...)
	timeFlip[9] ^= 0x80
	cases := []struct {
		name string
		in   []byte
		body string
		time int64
		size int
		err  error
	}{
		{"record", good, "hello", 1234, frameHeaderSize + 5, nil},
		{"record then more", append(append([]byte(nil), good...), 1, 2, 3), "hello", 1234, frameHeaderSize + 5, nil},
		{"empty body", empty, "", 99, frameHeaderSize, nil},
		{"all zero header", make([]byte, frameHeaderSize), "", 0, 0, errChecksum},
		{"all zero 4KiB", make([]byte, 4096), "", 0, 0, errChecksum},
		{"short header", good[:frameHeaderSize-1], "", 0, 0, errShort},
		{"short body", good[:len(good)-1], "", 0, 0, errShort},
		{"body bit flip", flipped, "", 0, 0, errChecksum},
		{"time bit flip", timeFlip, "", 0, 0, errChecksum},
		{"length above cap", huge, "", 0, 0, errLength},
		{"nil", nil, "", 0, 0, errShort},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, tm, n, err := decodeFrame(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if string(b) != tc.body || tm != tc.time || n != tc.size {
				t.Fatalf("got %q %d %d, want %q %d %d", b, tm, n, tc.body, tc.time, tc.size)
			}
		})
	}
}

// The guarantee that a zero-filled tail never parses rests on this.
func TestZeroFrameNeverValid(t *testing.T) {
	var z [frameHeaderSize]byte
	if frameCRC(z[:], nil) == 0 {
		t.Fatal("the masked CRC of an all-zero empty frame is zero: zero fill would parse as records")
	}
}

func TestSegHeader(t *testing.T) {
	h := segHeader{epoch: 0xdeadbeef, first: 42, gapFrom: 7}
	b := appendSegHeader(nil, h)
	if len(b) != segHeaderSize {
		t.Fatalf("header is %d bytes", len(b))
	}
	got, _, err := decodeSegHeader(b)
	if err != nil || got != h {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, tc := range []struct {
		name string
		mut  func([]byte) []byte
		err  error
	}{
		{"short", func(b []byte) []byte { return b[:20] }, errShort},
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, errMagic},
		{"short alien", func(b []byte) []byte { return []byte("#!") }, errMagic},
		{"version", func(b []byte) []byte { b[8] = 2; return b }, errVersion},
		{"checksum", func(b []byte) []byte { b[25] ^= 1; return b }, errChecksum},
		{"zeros", func(b []byte) []byte { return make([]byte, segHeaderSize) }, errMagic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeSegHeader(tc.mut(append([]byte(nil), b...)))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
		})
	}
}

func TestMarker(t *testing.T) {
	b := encodeMarker(5, 77)
	e, a, err := decodeMarker(b)
	if err != nil || e != 5 || a != 77 {
		t.Fatalf("round trip: %d %d %v", e, a, err)
	}
	for i := range b {
		c := append([]byte(nil), b...)
		c[i] ^= 4
		if _, _, err := decodeMarker(c); err == nil {
			t.Fatalf("flip at byte %d accepted", i)
		}
	}
	if _, _, err := decodeMarker(b[:10]); err == nil {
		t.Fatal("short marker accepted")
	}
}

func TestSegName(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first uint64
		ok    bool
	}{
		{"00000000000000000001.wal", 1, true},
		{segName(18446744073709551615), 18446744073709551615, true},
		{"00000000000000000001.wal.corrupt-17", 0, false},
		{"0000000000000000001.wal", 0, false},
		{"0000000000000000000x.wal", 0, false},
		{"99999999999999999999.wal", 0, false}, // overflows uint64
		{"ack", 0, false},
	} {
		first, ok := parseSegName(tc.name)
		if ok != tc.ok || first != tc.first {
			t.Errorf("parseSegName(%q) = %d, %v; want %d, %v", tc.name, first, ok, tc.first, tc.ok)
		}
	}
	if segName(1) != "00000000000000000001.wal" {
		t.Fatal(segName(1))
	}
}

func TestOptsValidate(t *testing.T) {
	ok := DefaultOpts()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	for _, tc := range []struct {
		field string
		mut   func(*Opts)
	}{
		{"segment_bytes", func(o *Opts) { o.SegmentBytes = 100 }},
		{"segment_bytes", func(o *Opts) { o.SegmentBytes = 512 << 20 }},
		{"max_bytes", func(o *Opts) { o.MaxBytes = o.SegmentBytes }},
		{"max_bytes", func(o *Opts) { o.MaxBytes = -1 }},
		{"max_age", func(o *Opts) { o.MaxAge = -time.Second }},
		{"sync", func(o *Opts) { o.Sync = 9 }},
		{"sync_interval", func(o *Opts) { o.SyncInterval = 0 }},
		{"sync_interval", func(o *Opts) { o.SyncInterval = 2 * time.Minute }},
		{"overflow", func(o *Opts) { o.Overflow = 7 }},
		{"ack_every", func(o *Opts) { o.AckEvery = 0 }},
		{"ack_interval", func(o *Opts) { o.AckInterval = 0 }},
	} {
		o := DefaultOpts()
		tc.mut(&o)
		var fe *sensors.FieldError
		if err := o.Validate(); !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: Validate() = %v", tc.field, err)
		}
	}
	// sync_interval only matters, and is only checked, in interval mode.
	o := DefaultOpts()
	o.Sync, o.SyncInterval = SyncAlways, time.Hour
	if err := o.Validate(); err != nil {
		t.Errorf("sync: always with an unused sync_interval: %v", err)
	}
	if _, err := Open(t.TempDir(), Opts{SegmentBytes: 10}); err == nil {
		t.Fatal("Open accepted invalid options")
	}
}

func TestModeText(t *testing.T) {
	for _, m := range []SyncMode{SyncAlways, SyncInterval, SyncNone} {
		b, err := m.MarshalText()
		var back SyncMode
		if err != nil || back.UnmarshalText(b) != nil || back != m {
			t.Errorf("sync mode %v does not round-trip: %q %v", m, b, err)
		}
	}
	for _, o := range []Overflow{DropOldest, RejectNew} {
		b, err := o.MarshalText()
		var back Overflow
		if err != nil || back.UnmarshalText(b) != nil || back != o {
			t.Errorf("overflow %v does not round-trip: %q %v", o, b, err)
		}
	}
	var m SyncMode
	if m.UnmarshalText([]byte("sometimes")) == nil {
		t.Error("accepted sync: sometimes")
	}
	var o Overflow
	if o.UnmarshalText([]byte("drop_newest")) == nil {
		t.Error("accepted overflow: drop_newest")
	}
}

// Interval mode: Append returns before the fsync, readers see the
// records at once (under the lease Open took, without another fsync), and
// many appends share one fsync when the interval is up.
func TestIntervalSyncsOnTheClock(t *testing.T) {
	e := newEnv(t, suiteConfig{mode: SyncInterval, fs: memDir})
	l := e.open()
	before := l.Stats().Fsyncs
	for i := range 20 {
		if _, err := l.Append(body(i)); err != nil {
			t.Fatal(err)
		}
	}
	if st := l.Stats(); st.Fsyncs != before || st.SyncedSeq != 0 {
		t.Fatalf("synced before the interval: fsyncs %d -> %d, synced %d", before, st.Fsyncs, st.SyncedSeq)
	}
	if recs := readAll(t, l, 0); len(recs) != 20 {
		t.Fatalf("unsynced records readable: %d, want all 20", len(recs))
	}
	e.clock.Advance(time.Second) // fires the writer's timer
	deadline := time.Now().Add(10 * time.Second)
	for l.Stats().SyncedSeq != 20 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	st := l.Stats()
	if st.SyncedSeq != 20 || st.Fsyncs != before+1 {
		t.Fatalf("after the interval: synced %d, fsyncs %d -> %d; want 20 and one fsync", st.SyncedSeq, before, st.Fsyncs)
	}
}

// The marker is written lazily: not per Ack, but after AckEvery acks or
// AckInterval.
func TestAckMarkerIsLazy(t *testing.T) {
	e := newEnv(t, suiteConfig{mode: SyncAlways, fs: memDir})
	e.opts.AckEvery = 10
	e.opts.AckInterval = 5 * time.Second
	l := e.open()
	appendN(t, l, 0, 30)
	m := e.fs.(*memFS)
	marker := filepath.Join(e.dir, markerName)
	for i := uint64(1); i <= 9; i++ {
		l.Ack(i)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.get(marker); ok {
		t.Fatal("marker written before AckEvery acks")
	}
	l.Ack(10)
	if err := l.Sync(); err != nil { // the writer has seen the ack signal
		t.Fatal(err)
	}
	b, ok := m.get(marker)
	if !ok {
		t.Fatal("no marker after AckEvery acks")
	}
	if _, a, err := decodeMarker(b); err != nil || a != 10 {
		t.Fatalf("marker says %d (%v), want 10", a, err)
	}
	// Both acks before the clock moves: the housekeeper's timer, armed
	// for the marker's interval, may fire as soon as it does and write
	// the marker with what was acked then (it wrote 11, between an
	// Ack(11) before the Advance and an Ack(12) after it, in a -race
	// -count=3 run).
	l.Ack(11)
	l.Ack(12)
	e.clock.Advance(e.opts.AckInterval)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	b, _ = m.get(marker)
	if _, a, _ := decodeMarker(b); a != 12 {
		t.Fatalf("marker says %d after AckInterval, want 12", a)
	}
	l.Ack(13)
	l.Close()
	b, _ = m.get(marker)
	if _, a, _ := decodeMarker(b); a != 13 {
		t.Fatalf("marker says %d after Close, want 13", a)
	}
}

// Bytes in dst are reused, so a steady reader does not allocate bodies.
func TestReadReusesDst(t *testing.T) {
	e := newEnv(t, suiteConfig{mode: SyncAlways, fs: memDir})
	l := e.open()
	appendN(t, l, 0, 4)
	dst := make([]Record, 0, 4)
	recs, err := l.Read(context.Background(), 0, 2, dst)
	if err != nil || len(recs) != 2 {
		t.Fatal(err)
	}
	p := &recs[0].Body[:1][0]
	recs, err = l.Read(context.Background(), 2, 2, recs)
	if err != nil || len(recs) != 2 || recs[0].Seq != 3 {
		t.Fatal(recs, err)
	}
	if &recs[0].Body[:1][0] != p {
		t.Error("Read did not reuse the Body buffer of dst")
	}
	if !bytes.Equal(recs[0].Body, body(2)) {
		t.Fatalf("body %q", recs[0].Body)
	}
}

func TestOpenLocksDirectory(t *testing.T) {
	if _, ok := OSFS.(Locker); !ok {
		t.Skip("no directory locking on this OS")
	}
	dir := t.TempDir()
	l, err := Open(dir, Opts{Sync: SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Opts{Sync: SyncNone}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open of a directory in use: %v, want ErrLocked", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open(dir, Opts{Sync: SyncNone})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	l.Close()
}
