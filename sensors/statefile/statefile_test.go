package statefile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesAndLeavesNoTemp(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sub")
	path := filepath.Join(dir, "x.json")
	for _, body := range []string{"first\n", "second, longer than the first\n", "3\n"} {
		if err := Write(path, []byte(body)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != body {
			t.Fatalf("read back %q, wrote %q", got, body)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only x.json (a temp file was left)", len(ents))
	}
}

func TestWriteFailsInReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes into read-only directories")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	if err := Write(filepath.Join(dir, "x"), []byte("x")); err == nil {
		t.Fatal("Write into a read-only directory succeeded")
	}
}

// syncFails is the OS file system whose files fail to sync, as a full or
// failing SD card makes them.
type syncFails struct{ FS }

type failingFile struct{ File }

func (failingFile) Sync() error { return os.ErrDeadlineExceeded }

func (s syncFails) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := s.FS.OpenFile(name, flag, perm)
	return failingFile{f}, err
}

// A write whose fsync fails leaves the old file as it was.
func TestWriteFSKeepsOldFileOnFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lease")
	if err := WriteFS(OS, path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFS(syncFails{OS}, path, []byte("new"), 0o600); err == nil {
		t.Fatal("WriteFS succeeded though its fsync failed")
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("after a failed write the file holds %q, want the old %q", got, "old")
	}
}
