package uplink

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged/edged/uplink/wal"
)

// faultFS is the real file system with injectable fsync failures, as an
// SD card returning EIO would give.
type faultFS struct {
	failSyncs atomic.Int32 // the next n file Syncs fail
}

var errEIO = errors.New("input/output error")

func (f *faultFS) OpenFile(name string, flag int, perm fs.FileMode) (wal.File, error) {
	fl, err := wal.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return faultFile{File: fl, fs: f}, nil
}
func (f *faultFS) ReadDir(dir string) ([]string, error)        { return wal.OSFS.ReadDir(dir) }
func (f *faultFS) Rename(o, n string) error                    { return wal.OSFS.Rename(o, n) }
func (f *faultFS) Remove(name string) error                    { return wal.OSFS.Remove(name) }
func (f *faultFS) MkdirAll(dir string, perm fs.FileMode) error { return wal.OSFS.MkdirAll(dir, perm) }
func (f *faultFS) SyncDir(dir string) error                    { return wal.OSFS.SyncDir(dir) }
func (f *faultFS) Lock(dir string) (io.Closer, error)          { return wal.OSFS.(wal.Locker).Lock(dir) }

type faultFile struct {
	wal.File
	fs *faultFS
}

func (f faultFile) Sync() error {
	if f.fs.failSyncs.Add(-1) >= 0 {
		return errEIO
	}
	f.fs.failSyncs.Store(0)
	return f.File.Sync()
}

// TestBufferReopensAfterFsyncError is the regression test for a single
// fsync error stopping the gateway until a restart (review P1-2): the WAL's
// sticky failure never cleared and nothing reopened it, so every Capture
// failed forever. Now a Capture on a failed buffer returns ErrUnavailable,
// is counted, and the uplink reopens the buffer (recovery repairs it) so
// captures work again, with nothing accepted before lost.
func TestBufferReopensAfterFsyncError(t *testing.T) {
	o := testOpts("127.0.0.1:1")
	o.Buffer.Sync = wal.SyncAlways
	ffs := &faultFS{}
	u, err := newUplink(o, t.TempDir(), "gh-01", nil, nil, ffs)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close(context.Background())
	u.backoffBase, u.backoffMax = time.Millisecond, 10*time.Millisecond

	if _, err := u.Capture("t/a", []byte("before"), 1, false); err != nil {
		t.Fatal(err)
	}
	ffs.failSyncs.Store(1)
	if _, err := u.Capture("t/a", []byte("lost"), 1, false); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Capture at the fsync error: %v, want ErrUnavailable", err)
	}
	ws := u.buf()
	if st := u.Stats(); st.BufferError == "" || st.Dropped["unavailable"] != 1 {
		t.Fatalf("stats while failed: buffer_error %q, dropped %v", st.BufferError, st.Dropped)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.keepBuffer(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case <-ws.swapped:
	case <-time.After(10 * time.Second):
		t.Fatalf("buffer not reopened; stats %+v", u.Stats())
	}

	if _, err := u.Capture("t/a", []byte("after"), 1, false); err != nil {
		t.Fatalf("Capture after the reopen: %v", err)
	}
	st := u.Stats()
	if st.BufferError != "" || st.BufferReopens != 1 || st.Epoch != ws.epoch {
		t.Fatalf("stats after reopen: %+v", st)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	rcancel()
	recs, err := u.buf().log.Read(rctx, 0, 10, nil)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		m, err := decodeBody(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(m.Payload))
	}
	if len(got) < 2 || got[0] != "before" || got[len(got)-1] != "after" {
		t.Fatalf("buffer after reopen holds %q, want \"before\" first and \"after\" last", got)
	}
}
