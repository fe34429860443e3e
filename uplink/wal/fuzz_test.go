package wal

import (
	"bytes"
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
)

func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendFrame(nil, []byte("hello"), 1))
	f.Add(appendFrame(nil, nil, 0))
	f.Add(make([]byte, frameHeaderSize))
	f.Add(make([]byte, 100))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add(append(appendFrame(nil, []byte("a"), 5), 0xde, 0xad))
	f.Fuzz(func(t *testing.T, b []byte) {
		body, tm, n, err := decodeFrame(b)
		if err != nil {
			return
		}
		if n > len(b) || len(body) > MaxRecordBytes {
			t.Fatalf("size %d of %d bytes, body %d", n, len(b), len(body))
		}
		if re := appendFrame(nil, body, tm); !bytes.Equal(re, b[:n]) {
			t.Fatalf("decoded frame does not re-encode to its bytes")
		}
	})
}

// FuzzRecover opens a directory whose first segment holds arbitrary bytes
// (after a valid header or not). Open must succeed, return only frames
// that are really in the input, accept appends, and leave a directory the
// next Open finds clean.
func FuzzRecover(f *testing.F) {
	seg := appendSegHeader(nil, segHeader{epoch: 7, first: 1})
	for i := range 3 {
		seg = appendFrame(seg, body(i), int64(i))
	}
	f.Add(seg[segHeaderSize:], true)
	f.Add(append(append([]byte(nil), seg[segHeaderSize:]...), make([]byte, 4096)...), true)
	f.Add(append(append([]byte(nil), seg[segHeaderSize:]...), "garbage tail"...), true)
	f.Add(seg[segHeaderSize:len(seg)-3], true)
	f.Add([]byte{}, true)
	f.Add([]byte{}, false)
	f.Add(seg[:20], false)
	f.Add(seg, false)
	f.Add([]byte("not a segment at all"), false)
	f.Fuzz(func(t *testing.T, data []byte, withHeader bool) {
		file := data
		if withHeader {
			file = append(appendSegHeader(nil, segHeader{epoch: 7, first: 1}), data...)
		}
		m := newMemFS(1)
		m.put("/buf/"+segName(1), file)
		lg, lc := newLogger()
		opts := Opts{Sync: SyncAlways, FS: m, Clock: sensorstest.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)), Log: lg}
		l, err := Open("/buf", opts)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		var last uint64
		for _, r := range readAll(t, l, 0) {
			if !bytes.Contains(file, appendFrame(nil, r.Body, r.Time.UnixNano())) {
				t.Fatalf("record %d is not in the input", r.Seq)
			}
			last = r.Seq
		}
		s, err := l.Append([]byte("x"))
		if err != nil || s <= last {
			t.Fatalf("Append after recovery: seq %d err %v (last %d)", s, err, last)
		}
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		n := len(lc.warnings())
		l, err = Open("/buf", opts)
		if err != nil {
			t.Fatalf("second Open: %v", err)
		}
		defer l.Close()
		if w := lc.warnings()[n:]; len(w) > 0 {
			t.Fatalf("second Open still repairs: %q", w)
		}
	})
}
