// Package sensorstest holds test doubles for package sensors: the one fake
// Clock of the tree (time moves when a test advances it, or, for driver
// tests, at once to each timer's deadline), and a scripted fake Sensor.
//
// It exists so that tests of the Poller, of drivers and of pipeline code
// never sleep. It is imported by tests only; production code must not use
// it.
package sensorstest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edged/edged/sensors"
)

// Clock is a fake sensors.Clock. Time stands still until Advance moves it;
// timers fire only inside Advance (or at once when armed with d <= 0). An
// instant clock (NewInstantClock) instead fires every timer as it is
// armed, moving the time forward by its duration, so a driver's
// conversion waits end at once; a driver test that needs a wait that never
// ends uses a clock from NewClock and never advances it.
//
// Every clock counts the durations its timers are armed with (Waits, and
// the full list once RecordWaits is called).
//
// All methods are safe for concurrent use. Advance holds the clock's lock
// for its whole run, so goroutines woken by a timer see Now already at the
// end of the advance: the time a timer fired at is the value it sends.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	mono    time.Duration // moved by Advance, not by Step
	instant bool
	armed   []*Timer      // pending timers, unordered
	seq     uint64        // arm order, breaks ties between equal deadlines
	changed chan struct{} // made by a waiter, closed when armed changes

	waits       int // timers armed by NewTimer or Reset
	last, total time.Duration
	recording   bool
	record      []time.Duration
}

var (
	_ sensors.Clock     = (*Clock)(nil)
	_ sensors.Monotonic = (*Clock)(nil)
)

// NewClock returns a fake clock that reads t0.
func NewClock(t0 time.Time) *Clock { return &Clock{now: t0} }

// NewInstantClock returns a fake clock whose timers fire as soon as they
// are armed, the clock jumping to their deadline. It starts at midnight
// UTC on 1 January 2026.
func NewInstantClock() *Clock {
	return &Clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), instant: true}
}

// Waits returns the number of timers armed (by NewTimer or Reset), the
// last duration and the sum of all durations. Counting allocates nothing,
// so benchmarks and allocation tests can use any clock.
func (c *Clock) Waits() (n int, last, total time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waits, c.last, c.total
}

// RecordWaits makes the clock keep every duration a timer is armed with
// from now on, for TakeWaits. Recording allocates.
func (c *Clock) RecordWaits() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recording = true
}

// TakeWaits returns the durations recorded since RecordWaits or the last
// TakeWaits, in order, and starts a new list.
func (c *Clock) TakeWaits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.record
	c.record = nil
	return r
}

// Now returns the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Mono returns the fake monotonic time: the sum of every Advance (and of
// every instant timer's wait) since the clock was made. Step does not move
// it.
func (c *Clock) Mono() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mono
}

// Step moves the wall clock by d, forward or back, as NTP or `date -s`
// does: Now jumps, Mono does not, and no timer fires (each armed timer is
// still due after the same Advance, as real timers run on the monotonic
// clock).
func (c *Clock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.armed {
		t.when = t.when.Add(d)
	}
}

// NewTimer returns a timer that fires once the clock has advanced by d.
func (c *Clock) NewTimer(d time.Duration) sensors.Timer {
	t := &Timer{c: c, ch: make(chan time.Time, 1), idx: -1}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.countLocked(d)
	c.armLocked(t, d)
	return t
}

func (c *Clock) countLocked(d time.Duration) {
	c.waits++
	c.last = d
	c.total += d
	if c.recording {
		c.record = append(c.record, d)
	}
}

// Advance moves the clock forward by d, firing every timer that falls due
// on the way in deadline order (equal deadlines in the order they were
// armed). Each timer sends its own deadline. A d <= 0 fires only timers
// that are already due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	target := c.now
	if d > 0 {
		target = c.now.Add(d)
		c.mono += d
	}
	for {
		t := c.earliestLocked()
		if t == nil || t.when.After(target) {
			break
		}
		if t.when.After(c.now) {
			c.now = t.when
		}
		c.disarmLocked(t)
		t.fire(t.when)
	}
	c.now = target
}

// Pending returns the number of armed timers.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.armed)
}

// ArmedFor reports the number of armed timers and whether every one of
// them is due at t, in one look: with Pending and Next apart, a timer
// armed and stopped in between (code makes a stopped timer that way,
// NewTimer(time.Hour) then Stop) can make a busy set of goroutines look
// idle.
func (c *Clock) ArmedFor(t time.Time) (n int, all bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tm := range c.armed {
		if !tm.when.Equal(t) {
			return len(c.armed), false
		}
	}
	return len(c.armed), true
}

// Next returns the deadline of the earliest armed timer; ok is false when
// no timer is armed.
func (c *Clock) Next() (next time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.earliestLocked(); t != nil {
		return t.when, true
	}
	return time.Time{}, false
}

// WaitTimers blocks until at least n timers are armed, so a test can wait
// for goroutines that arm timers before it advances the clock. It gives up
// after timeout of real time and returns an error, so a bug fails the test
// instead of hanging it.
func (c *Clock) WaitTimers(n int, timeout time.Duration) error {
	return c.waitFor(timeout, func() bool { return len(c.armed) >= n },
		func() string { return fmt.Sprintf("%d timers armed, want at least %d", len(c.armed), n) })
}

// WaitTimerAt blocks until some armed timer is due exactly at at, which
// both synchronises a test with the code under test and checks the
// schedule that code chose. Like WaitTimers it gives up after timeout of
// real time with an error that lists the armed deadlines.
func (c *Clock) WaitTimerAt(at time.Time, timeout time.Duration) error {
	return c.waitFor(timeout, func() bool {
		for _, t := range c.armed {
			if t.when.Equal(at) {
				return true
			}
		}
		return false
	}, func() string {
		return fmt.Sprintf("no timer due at %s (now %s; armed: %s)", at.Format(time.RFC3339Nano), c.now.Format(time.RFC3339Nano), c.describeLocked())
	})
}

// AdvanceTo advances the clock to at, which must not be before Now; an
// earlier at fires only the timers already due.
func (c *Clock) AdvanceTo(at time.Time) { c.Advance(at.Sub(c.Now())) }

func (c *Clock) waitFor(timeout time.Duration, cond func() bool, describe func() string) error {
	var deadline <-chan time.Time
	for {
		c.mu.Lock()
		if cond() {
			c.mu.Unlock()
			return nil
		}
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		changed := c.changed
		c.mu.Unlock()
		if deadline == nil {
			// Made only when the condition does not hold at once, so a
			// satisfied wait allocates nothing.
			tm := time.NewTimer(timeout)
			defer tm.Stop()
			deadline = tm.C
		}
		select {
		case <-changed:
		case <-deadline:
			c.mu.Lock()
			defer c.mu.Unlock()
			if cond() {
				return nil
			}
			return fmt.Errorf("sensorstest: after %v: %s", timeout, describe())
		}
	}
}

func (c *Clock) describeLocked() string {
	if len(c.armed) == 0 {
		return "none"
	}
	ts := make([]time.Time, 0, len(c.armed))
	for _, t := range c.armed {
		ts = append(ts, t.when)
	}
	slices.SortFunc(ts, time.Time.Compare)
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.Format(time.RFC3339Nano)
	}
	return strings.Join(s, ", ")
}

func (c *Clock) earliestLocked() *Timer {
	var e *Timer
	for _, t := range c.armed {
		if e == nil || t.when.Before(e.when) || (t.when.Equal(e.when) && t.seq < e.seq) {
			e = t
		}
	}
	return e
}

// armLocked arms t to fire after d; d <= 0 fires it at once, as a real
// timer would fire without delay. An instant clock moves to the deadline
// and fires at once.
func (c *Clock) armLocked(t *Timer, d time.Duration) {
	if c.instant && d > 0 {
		c.now = c.now.Add(d)
		c.mono += d
	}
	if d <= 0 || c.instant {
		t.fire(c.now)
		return
	}
	c.seq++
	t.when, t.seq = c.now.Add(d), c.seq
	t.idx = len(c.armed)
	c.armed = append(c.armed, t)
	c.notifyLocked()
}

func (c *Clock) disarmLocked(t *Timer) {
	i := t.idx
	last := len(c.armed) - 1
	c.armed[i] = c.armed[last]
	c.armed[i].idx = i
	c.armed[last] = nil
	c.armed = c.armed[:last]
	t.idx = -1
	c.notifyLocked()
}

func (c *Clock) notifyLocked() {
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// Timer is a timer of a fake Clock. It follows Go 1.23 time.Timer
// semantics: after Stop or Reset returns, no stale value is left in C.
type Timer struct {
	c    *Clock
	ch   chan time.Time
	when time.Time
	seq  uint64
	idx  int // index in c.armed, -1 when not armed
}

var _ sensors.Timer = (*Timer)(nil)

// C returns the channel the timer sends its deadline on.
func (t *Timer) C() <-chan time.Time { return t.ch }

// Stop disarms the timer. It reports whether it stopped a pending firing,
// counting a value fired but not yet received, as time.Timer does.
func (t *Timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return t.stopLocked()
}

// Reset re-arms the timer to fire after d; it reports what Stop would.
func (t *Timer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.stopLocked()
	t.c.countLocked(d)
	t.c.armLocked(t, d)
	return was
}

func (t *Timer) stopLocked() bool {
	was := false
	if t.idx >= 0 {
		t.c.disarmLocked(t)
		was = true
	}
	select {
	case <-t.ch:
		was = true
	default:
	}
	return was
}

// fire delivers at on the channel. The channel has room: a timer fires at
// most once per arming and every arming drains it first.
func (t *Timer) fire(at time.Time) {
	select {
	case t.ch <- at:
	default:
	}
}
