//go:build cpuprofile

package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// With -tags cpuprofile the profile is written when the stop function runs.
func TestStartCPUProfileWrites(t *testing.T) {
	out := filepath.Join(t.TempDir(), "cpu.prof")
	stop, err := startCPUProfile(out)
	if err != nil {
		t.Fatal(err)
	}
	stop(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() == 0 {
		t.Fatal("empty profile")
	}
}
