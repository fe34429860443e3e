// Package statefile writes the small files edged keeps in its state_dir
// (a control loop's setpoint and integral, what Home Assistant was told)
// so that a power cut leaves either the old file or the new one, never a
// torn mix. It owns that one rule for every package that keeps state.
//
// It only writes files; what they hold is the caller's business.
package statefile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces the file at path with data: a temporary file beside it,
// write, fsync, rename over path, fsync of the directory. The directory
// is created if it is missing.
func Write(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("statefile: %w", err)
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("statefile: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("statefile: write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("statefile: sync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("statefile: close %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("statefile: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("statefile: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("statefile: sync %s: %w", dir, err)
	}
	return nil
}
