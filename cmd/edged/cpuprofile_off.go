//go:build !cpuprofile

package main

import (
	"errors"
	"log/slog"
)

// startCPUProfile refuses: this binary was built without -tags cpuprofile.
func startCPUProfile(string) (func(*slog.Logger), error) {
	return nil, errors.New("this binary was built without profiling (go build -tags cpuprofile ./cmd/edged)")
}
