//go:build !edgedfailpoints

package main

import (
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/wallclock"
)

// systemClock is the real clock, the kernel's word on it and how often
// to check (0: wallclock's default); a build with -tags edgedfailpoints
// can fake them (clock_failpoint.go).
func systemClock() (sensors.Clock, wallclock.Kernel, time.Duration) {
	return sensors.SystemClock, wallclock.Adjtimex, 0
}
