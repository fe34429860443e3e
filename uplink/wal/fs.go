package wal

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// FS is the file system the log runs on. OSFS is the real one; tests inject
// a fault layer that loses, keeps or tears unsynced data at a simulated
// power cut. Paths are joined with filepath.Join by the log.
type FS interface {
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// ReadDir returns the names in dir, in any order.
	ReadDir(dir string) ([]string, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	MkdirAll(dir string, perm fs.FileMode) error
	// SyncDir makes creations, renames and removals in dir durable.
	SyncDir(dir string) error
}

// Locker is an optional FS capability: an exclusive lock on a directory,
// held until the returned Closer is closed. Open takes it when the FS has
// it; OSFS has it on Unix.
type Locker interface {
	Lock(dir string) (io.Closer, error)
}

// File is an open file of an FS. Sync may run while another goroutine
// calls Write or Truncate on the same file (the log's interval fsync runs
// beside appends); it must make durable at least what was written before
// it began.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Closer
	Sync() error
	Truncate(size int64) error
	Size() (int64, error)
}

// OSFS is the operating system's file system.
var OSFS FS = osFS{}

type osFS struct{}

type osFile struct{ *os.File }

func (f osFile) Size() (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) ReadDir(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = e.Name()
	}
	return names, nil
}

func (osFS) Rename(o, n string) error                    { return os.Rename(o, n) }
func (osFS) Remove(name string) error                    { return os.Remove(name) }
func (osFS) MkdirAll(dir string, perm fs.FileMode) error { return os.MkdirAll(dir, perm) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(filepath.Clean(dir))
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
