package sensors

import "time"

// Clock is the time source of everything whose behaviour depends on time:
// schedules, retries, staleness, simulated physics. Tests inject a fake one
// (sensorstest.Clock) so they never sleep.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer that edged uses.
type Timer interface {
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
	// Reset makes the timer fire after d, as time.Timer.Reset (Go 1.23+
	// semantics: no stale value is left in C).
	Reset(d time.Duration) bool
}

// Monotonic is an optional capability of a Clock: time that no step of the
// wall clock moves (NTP, `date -s`), since an origin fixed for the clock's
// life. Ages, ordering and the correction of stamps taken before the wall
// clock could be trusted are measured on it (README "Clock").
type Monotonic interface {
	Mono() time.Duration
}

// MonoOf returns c's monotonic time, or 0 when c has none.
func MonoOf(c Clock) time.Duration {
	if m, ok := c.(Monotonic); ok {
		return m.Mono()
	}
	return 0
}

// SystemClock is the real clock. Its Mono is the time since the process
// started, from Go's monotonic clock (no system call).
var SystemClock Clock = systemClock{}

var processStart = time.Now()

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) Mono() time.Duration { return time.Since(processStart) }

func (systemClock) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time        { return t.t.C }
func (t sysTimer) Stop() bool                 { return t.t.Stop() }
func (t sysTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }
