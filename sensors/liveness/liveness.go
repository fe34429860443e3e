// Package liveness tells whether a daemon's loops still come round. Each
// loop says, every time round, by when it will be back (Expect), or that
// it waits for work with nothing due (Idle); Overdue says how late a loop
// is. /healthz and the systemd watchdog read the beats of every loop.
//
// It owns those deadlines and nothing else: it must not decide what is
// done about a stuck loop. Deadlines are on the monotonic clock, so a Pi
// without an RTC that steps its wall clock at NTP sync does not look
// stuck. A Beat costs one atomic store per round and allocates nothing.
package liveness

import (
	"sync/atomic"
	"time"
)

// StallEnv names the environment variable of the failpoint build: NAME@D
// (e.g. "control/heat@3s") makes the loop NAME block for ever in its first
// Expect at least D after start, as a loop stuck in a driver or on a disk
// would. Tests build edged with -tags edgedfailpoints to see what a stuck
// loop does to /healthz and the watchdog; release builds have no such
// code.
const StallEnv = "EDGED_STALL"

// epoch anchors the monotonic readings: time.Since uses the monotonic
// clock.
var epoch = time.Now()

func mono() int64 { return int64(time.Since(epoch)) }

// Beat is one loop's heartbeat. The zero value is not usable; a nil
// *Beat ignores every call, so a loop built without one needs no checks.
type Beat struct {
	name string
	due  atomic.Int64 // mono ns by which the loop must come round; 0: idle
}

// New returns the beat of the loop called name (e.g. "control/heat"),
// idle until its first Expect.
func New(name string) *Beat { return &Beat{name: name} }

// Name is the loop's name.
func (b *Beat) Name() string {
	if b == nil {
		return ""
	}
	return b.name
}

// Expect says the loop will come round again within d.
func (b *Beat) Expect(d time.Duration) {
	if b == nil {
		return
	}
	due := mono() + int64(d)
	if due == 0 {
		due = -1 // 0 is idle
	}
	b.due.Store(due)
	b.stall()
}

// Idle says the loop waits for work and nothing is due: an event loop
// between events.
func (b *Beat) Idle() {
	if b != nil {
		b.due.Store(0)
	}
}

// Overdue returns how long ago the loop should have come round; 0 when
// it is on time or idle.
func (b *Beat) Overdue() time.Duration {
	if b == nil {
		return 0
	}
	due := b.due.Load()
	if due == 0 {
		return 0
	}
	return time.Duration(max(mono()-due, 0))
}
