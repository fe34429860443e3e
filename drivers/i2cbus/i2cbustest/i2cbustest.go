// Package i2cbustest holds the fakes that I2C driver tests share: a clock
// whose conversion waits end at once (or never), and a bus whose every
// transaction fails. Byte-exact traffic is replayed with periph's
// i2ctest.Playback; these cover what Playback cannot.
package i2cbustest

import (
	"errors"
	"sync"
	"time"

	"periph.io/x/conn/v3/physic"

	"github.com/edged/edged/sensors"
)

// Clock is a sensors.Clock for driver tests. Its timers fire as soon as
// they are started, unless Block is set, in which case they never fire (to
// test that a wait honours its context). It records the requested
// durations without allocating, so benchmarks can use it too.
type Clock struct {
	mu    sync.Mutex
	Block bool
	waits int
	last  time.Duration
	total time.Duration
	now   time.Time
}

// Now returns a fixed instant advanced by every wait.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer implements sensors.Clock.
func (c *Clock) NewTimer(d time.Duration) sensors.Timer {
	t := &timer{c: c, ch: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

// Waits returns the number of timers started, the last duration and the
// sum of all durations.
func (c *Clock) Waits() (n int, last, total time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waits, c.last, c.total
}

type timer struct {
	c  *Clock
	ch chan time.Time
}

func (t *timer) C() <-chan time.Time { return t.ch }

func (t *timer) Stop() bool {
	select {
	case <-t.ch:
	default:
	}
	return false
}

func (t *timer) Reset(d time.Duration) bool {
	t.Stop()
	t.c.mu.Lock()
	t.c.waits++
	t.c.last = d
	t.c.total += d
	t.c.now = t.c.now.Add(d)
	now, block := t.c.now, t.c.Block
	t.c.mu.Unlock()
	if !block {
		t.ch <- now
	}
	return false
}

// ErrBus is what FailBus returns, like a NACK from an absent device.
var ErrBus = errors.New("i2cbustest: remote I/O error (NACK)")

// FailBus is an i2c.Bus whose every transaction fails with ErrBus.
type FailBus struct{ Calls int }

// String implements i2c.Bus.
func (b *FailBus) String() string { return "failbus" }

// Tx implements i2c.Bus.
func (b *FailBus) Tx(addr uint16, w, r []byte) error { b.Calls++; return ErrBus }

// SetSpeed implements i2c.Bus.
func (b *FailBus) SetSpeed(physic.Frequency) error { return nil }
