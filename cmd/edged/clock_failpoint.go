//go:build edgedfailpoints

package main

import (
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/wallclock"
)

// fakeClockEnv fakes a Pi without RTC in a failpoint build:
// EDGED_FAKE_CLOCK="step=-500000h,sync_file=/tmp/x,check=500ms" makes the
// wall clock read step off the truth, and the kernel say it is not
// synchronised, until the file sync_file exists (looked for at each
// check); then the clock is stepped to the truth and the kernel says
// synchronised, as NTP's first sync does. check sets how often the clock
// is judged (default 5s). Release builds have no such code.
const fakeClockEnv = "EDGED_FAKE_CLOCK"

func systemClock() (sensors.Clock, wallclock.Kernel, time.Duration) {
	v := os.Getenv(fakeClockEnv)
	if v == "" {
		return sensors.SystemClock, wallclock.Adjtimex, 0
	}
	f := &fakeClock{}
	var check time.Duration
	for _, kv := range strings.Split(v, ",") {
		k, val, _ := strings.Cut(kv, "=")
		d, _ := time.ParseDuration(val)
		switch k {
		case "step":
			f.step = d
		case "sync_file":
			f.file = val
		case "check":
			check = d
		}
	}
	return f, wallclock.KernelFunc(f.kernel), check
}

// fakeClock is the system clock with its wall time stepped until the
// sync file appears; its timers send its own time, as a real timer sends
// the (stepped) wall clock's. One thing differs from a real step:
// time.Time.Add moves Go's monotonic reading with the wall, so at the
// sync a schedule sees its clock jump and skips the slots in between
// (edged_sensor_skipped_slots_total leaps); a real step leaves the
// monotonic clock, and the schedules, alone.
type fakeClock struct {
	step   time.Duration
	file   string
	synced atomic.Bool
}

// kernel is the fake adjtimex: it looks for the file once per check, so
// reading the time costs no system call.
func (f *fakeClock) kernel() (bool, error) {
	if !f.synced.Load() {
		if _, err := os.Stat(f.file); err == nil {
			f.synced.Store(true)
		}
	}
	return f.synced.Load(), nil
}

func (f *fakeClock) Now() time.Time {
	if f.synced.Load() {
		return time.Now()
	}
	return time.Now().Add(f.step)
}

func (f *fakeClock) Mono() time.Duration { return sensors.MonoOf(sensors.SystemClock) }

func (f *fakeClock) NewTimer(d time.Duration) sensors.Timer {
	t := &fakeTimer{f: f, ch: make(chan time.Time, 1)}
	t.t = time.AfterFunc(d, t.fire)
	return t
}

type fakeTimer struct {
	f  *fakeClock
	t  *time.Timer
	ch chan time.Time
}

func (t *fakeTimer) fire() {
	select {
	case t.ch <- t.f.Now():
	default:
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	was := t.t.Stop()
	select {
	case <-t.ch:
		was = true
	default:
	}
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	was := t.Stop()
	t.t.Reset(d)
	return was
}
