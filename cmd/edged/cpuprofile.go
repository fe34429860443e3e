//go:build cpuprofile

package main

import (
	"log/slog"
	"os"
	"runtime/pprof"
)

// startCPUProfile starts a CPU profile into path; the returned function
// stops it and closes the file. Only in a binary built with
// -tags cpuprofile: runtime/pprof would add 130 KB to the Pi binary.
func startCPUProfile(path string) (func(*slog.Logger), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func(log *slog.Logger) {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Error("cpu profile not written", "file", path, "error", err)
		}
	}, nil
}
