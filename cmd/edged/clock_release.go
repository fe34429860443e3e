//go:build !edgedfailpoints

package main

import (
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/wallclock"
)

// systemClock is the real clock and the kernel's word on it; a build with
// -tags edgedfailpoints can fake both (clock_failpoint.go).
func systemClock() (sensors.Clock, wallclock.Kernel) {
	return sensors.SystemClock, wallclock.Adjtimex
}
