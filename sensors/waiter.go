package sensors

import (
	"context"
	"time"
)

// Waiter waits on an injected clock for a time a device needs (a
// conversion, a power-up, a kernel creating a sysfs file). It
// reuses one timer, so a steady measurement loop does not allocate. Like
// the sensors it serves, it is not safe for concurrent use.
type Waiter struct {
	clock Clock
	t     Timer
}

// NewWaiter returns a Waiter on c; nil means the system clock.
func NewWaiter(c Clock) *Waiter {
	if c == nil {
		c = SystemClock
	}
	return &Waiter{clock: c}
}

// Wait returns after d, or earlier with ctx's error when ctx ends first.
func (w *Waiter) Wait(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.t == nil {
		w.t = w.clock.NewTimer(d)
	} else {
		w.t.Reset(d)
	}
	select {
	case <-w.t.C():
		return nil
	case <-ctx.Done():
		w.t.Stop()
		return ctx.Err()
	}
}

// Stop releases the timer; the Waiter may be used again afterwards.
func (w *Waiter) Stop() {
	if w.t != nil {
		w.t.Stop()
	}
}
