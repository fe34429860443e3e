package sim

import (
	"sync"
	"time"

	"github.com/edged/edged/sensors"
)

// fakeClock is a manual clock for these tests. It stands in for
// sensors/sensorstest.Clock, which was not in the tree when this package
// was written; switch to it once it is.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	// armed receives a value whenever a timer is started, so a test can
	// advance the clock only once a Sense is waiting on it.
	armed chan struct{}
}

var _ sensors.Clock = (*fakeClock)(nil)

func newFakeClock(t time.Time) *fakeClock {
	return &fakeClock{now: t, armed: make(chan struct{}, 64)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t, forwards or backwards, firing due timers.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	for _, tm := range c.timers {
		if tm.active && !tm.at.After(t) {
			tm.active = false
			select {
			case tm.ch <- t:
			default:
			}
		}
	}
}

// Advance moves the clock forward by d.
func (c *fakeClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

func (c *fakeClock) NewTimer(d time.Duration) sensors.Timer {
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1)}
	c.mu.Lock()
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	t.Reset(d)
	return t
}

type fakeTimer struct {
	c      *fakeClock
	ch     chan time.Time
	at     time.Time
	active bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.active = false
	t.drain()
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	was := t.active
	t.drain()
	t.at = t.c.now.Add(d)
	t.active = true
	t.c.mu.Unlock()
	select {
	case t.c.armed <- struct{}{}:
	default:
	}
	return was
}

func (t *fakeTimer) drain() {
	select {
	case <-t.ch:
	default:
	}
}

// shareMap is a single-goroutine Sharer, as drivers.Env is for one config.
type shareMap map[string]any

func (m shareMap) Shared(key string, open func() (any, error)) (any, error) {
	if v, ok := m[key]; ok {
		return v, nil
	}
	v, err := open()
	if err != nil {
		return nil, err
	}
	m[key] = v
	return v, nil
}
