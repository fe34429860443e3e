package sim

import (
	"time"

	"github.com/edged/edged/sensors/sensorstest"
)

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

// jumpClock is a fake clock that can also be set back, as NTP may set
// back a Pi's clock; sensorstest.Clock only moves forward.
type jumpClock struct {
	*sensorstest.Clock
	shift time.Duration
}

func (c *jumpClock) Now() time.Time { return c.Clock.Now().Add(c.shift) }

// Jump moves the clock by d, which may be negative, without firing timers.
func (c *jumpClock) Jump(d time.Duration) { c.shift += d }

// waitTimeout bounds, in real time, how long a test waits for a Sense to
// arm its timer; it only matters when a bug would hang the test.
const waitTimeout = 10 * time.Second
