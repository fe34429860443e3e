package wal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
)

func TestInspectBesideAnOpenLog(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Opts{Sync: SyncAlways, SegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	in, err := Inspect(OSFS, dir)
	if err != nil || in.Backlog != 0 || in.Segments != 1 {
		t.Fatalf("empty log: %+v, %v", in, err)
	}
	body := bytes.Repeat([]byte("x"), 100)
	for range 100 {
		if _, err := l.Append(body); err != nil {
			t.Fatal(err)
		}
	}
	l.Ack(30)
	// The log is open and holds the lock: Inspect must still work. The
	// writer writes the live marker soon after the Ack; wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		in, err = Inspect(OSFS, dir)
		if err != nil {
			t.Fatal(err)
		}
		if in.AckedSeq == 30 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	st := l.Stats()
	if in.Epoch != st.Epoch || in.LastSeq != 100 || in.AckedSeq != 30 || in.Backlog != 70 || in.Segments != st.Segments {
		t.Errorf("Inspect = %+v; log stats %+v", in, st)
	}
	if want := int64(70 * (frameHeaderSize + 100)); in.BacklogBytes != want {
		t.Errorf("backlog bytes %d, want %d", in.BacklogBytes, want)
	}
	if in.Oldest.IsZero() {
		t.Error("no oldest time")
	}
}

func TestInspectDamagedDirectory(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Opts{Sync: SyncAlways, SegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		if _, err := l.Append([]byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 4096)) // zero-filled tail: no phantom records
	f.Close()
	os.WriteFile(filepath.Join(dir, "00000000000000000099.wal"), []byte("garbage"), 0o644)
	in, err := Inspect(OSFS, dir)
	if err != nil {
		t.Fatal(err)
	}
	if in.LastSeq != 60 || in.Backlog != 60 || in.Skipped != 1 {
		t.Errorf("Inspect = %+v, want last 60, backlog 60, 1 skipped", in)
	}
	if _, err := Inspect(OSFS, filepath.Join(dir, "missing")); err == nil {
		t.Error("Inspect of a missing directory: no error")
	}
}

// Inspect reads through the FS like the rest of the log (issue 12: it
// used os directly), so it sees a buffer that exists only in a memFS.
func TestInspectThroughFS(t *testing.T) {
	m := newMemFS(1)
	l, err := Open("/buf", Opts{Sync: SyncInterval, FS: m, Clock: sensorstest.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)), SegmentBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := l.Append(body(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Ack(40)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	in, err := Inspect(m, "/buf")
	if err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if in.Epoch != st.Epoch || in.LastSeq != 100 || in.AckedSeq != 40 || in.Backlog != 60 || in.Segments != st.Segments || in.Skipped != 0 {
		t.Errorf("Inspect = %+v; log stats %+v", in, st)
	}
	if want := int64(60 * (frameHeaderSize + len(body(0)))); in.BacklogBytes != want {
		t.Errorf("backlog bytes %d, want %d", in.BacklogBytes, want)
	}
}
