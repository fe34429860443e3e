// Package statefile writes the small files edged keeps so that a power
// cut leaves either the old file or the new one, never a torn mix: a
// control loop's setpoint and integral, what Home Assistant was told, the
// uplink buffer's ack marker and seq lease. It owns that one rule for
// every package that keeps state.
//
// It only writes files; what they hold is the caller's business.
package statefile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// FS is what WriteFS needs of a file system; OS is the real one. The
// uplink buffer passes its own (its tests simulate power cuts in memory).
type FS interface {
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	Rename(oldpath, newpath string) error
	// SyncDir makes creations and renames in dir durable.
	SyncDir(dir string) error
}

// File is what WriteFS needs of an open file.
type File interface {
	io.Writer
	io.Closer
	Sync() error
}

// OS is the operating system's file system.
var OS FS = osFS{}

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	return os.OpenFile(name, flag, perm)
}

func (osFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// TempSuffix is appended to a file's name for the temporary file WriteFS
// writes first; whoever reads the directory may ignore or remove such a
// leftover (a crash before the rename).
const TempSuffix = ".tmp"

// Write replaces the file at path with data (see WriteFS), creating its
// directory if it is missing.
func Write(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("statefile: %w", err)
	}
	return WriteFS(OS, path, data, 0o600)
}

// WriteFS replaces the file at path with data: path+TempSuffix is
// written and fsynced, renamed over path, and the directory fsynced. A
// file has one writer at a time (the temporary name is fixed). On error
// the old file stands.
func WriteFS(fsys FS, path string, data []byte, perm fs.FileMode) error {
	tmp := path + TempSuffix
	f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("statefile: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("statefile: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("statefile: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("statefile: close %s: %w", tmp, err)
	}
	if err := fsys.Rename(tmp, path); err != nil {
		return fmt.Errorf("statefile: %w", err)
	}
	if err := fsys.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("statefile: sync %s: %w", filepath.Dir(path), err)
	}
	return nil
}
