//go:build edgedfailpoints

package main

import (
	"os"
	"strings"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/wallclock"
)

// fakeClockEnv fakes a Pi without RTC in a failpoint build:
// EDGED_FAKE_CLOCK="step=-500000h,sync_after=4s" makes the wall clock read
// step off the truth, and the kernel say it is not synchronised, until
// sync_after has passed since the start; then the clock is stepped to the
// truth and the kernel says synchronised, as NTP's first sync does.
// Release builds have no such code.
const fakeClockEnv = "EDGED_FAKE_CLOCK"

func systemClock() (sensors.Clock, wallclock.Kernel) {
	v := os.Getenv(fakeClockEnv)
	if v == "" {
		return sensors.SystemClock, wallclock.Adjtimex
	}
	f := &fakeClock{}
	for _, kv := range strings.Split(v, ",") {
		k, val, _ := strings.Cut(kv, "=")
		d, _ := time.ParseDuration(val)
		switch k {
		case "step":
			f.step = d
		case "sync_after":
			f.syncAt = sensors.MonoOf(sensors.SystemClock) + d
		}
	}
	return f, wallclock.KernelFunc(func() (bool, error) { return f.synced(), nil })
}

// fakeClock is the system clock with its wall time stepped until syncAt.
// time.Now().Add keeps Go's monotonic reading, so schedules and timers run
// as on a real clock that NTP steps.
type fakeClock struct {
	step   time.Duration
	syncAt time.Duration // on SystemClock's Mono
}

func (f *fakeClock) synced() bool { return sensors.MonoOf(sensors.SystemClock) >= f.syncAt }

func (f *fakeClock) Now() time.Time {
	if f.synced() {
		return time.Now()
	}
	return time.Now().Add(f.step)
}

func (f *fakeClock) Mono() time.Duration { return sensors.MonoOf(sensors.SystemClock) }

func (f *fakeClock) NewTimer(d time.Duration) sensors.Timer { return sensors.SystemClock.NewTimer(d) }
