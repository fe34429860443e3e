//go:build edgedfailpoints

package wal

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
)

// crashPoint is the point and hit count CrashEnv asks for, read once.
// Unset or malformed: no point is due.
var crashPoint = sync.OnceValues(func() (string, int64) {
	name, n, err := ParseCrash(os.Getenv(CrashEnv))
	if err != nil {
		return "", 0
	}
	return name, n
})

var crashHits atomic.Int64

// due counts a hit of point and reports whether it is the one to die at.
func due(point string) bool {
	name, n := crashPoint()
	return name == point && crashHits.Add(1) == n
}

func die() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}

func crashAt(point string) {
	if due(point) {
		die()
	}
}

func crashTorn(point string, w File, b []byte) {
	if due(point) {
		_, _ = w.Write(b[:len(b)/2])
		die()
	}
}

func crashTornAt(point string, w File, b []byte) {
	if due(point) {
		_, _ = w.WriteAt(b[:len(b)/2], 0)
		die()
	}
}

// crashTornFile writes half of b to a fresh file name in dir, as a crash
// in the middle of writing it would leave it.
func crashTornFile(point string, fsys FS, dir, name string, b []byte) {
	if due(point) {
		if f, err := fsys.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640); err == nil {
			_, _ = f.Write(b[:len(b)/2])
		}
		die()
	}
}
