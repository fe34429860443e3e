package uplink

import (
	"errors"
	"time"
)

// retry is the forwarder's policy between sessions: how long to wait
// before the next connect, and which message to dead-letter because it
// fails every session. It does no I/O and reads no clock of its own, so
// its decisions are tested as plain logic.
type retry struct {
	base, max   time.Duration // full-jitter backoff: uniform in [0, min(base x 2^attempt, max)]
	stormWindow time.Duration // whatever the jitter, at most stormMax connects per stormWindow
	stormMax    int
	poisonAfter int                 // sessions failing on one message before it is dead-lettered
	randN       func(n int64) int64 // uniform in [0, n)

	attempt int         // failed connects or sessions since the last progress
	now     bool        // the last session ended on edged's side: reconnect without backoff
	recent  []time.Time // connect attempts within stormWindow, oldest first
	stuck   uint64      // a message failing session after session
	stuckN  int
	skip    uint64 // the message to dead-letter in the next session; 0 if none
}

// wait returns how long to wait at time t before the next connect.
func (r *retry) wait(t time.Time) time.Duration {
	var d time.Duration
	if !r.now {
		d = r.backoff()
	}
	if len(r.recent) >= r.stormMax {
		d = max(d, r.recent[len(r.recent)-r.stormMax].Add(r.stormWindow).Sub(t))
	}
	return d
}

// backoff draws the wait before connect attempt number attempt+1.
func (r *retry) backoff() time.Duration {
	ceil := r.max
	if r.attempt < 30 {
		ceil = min(r.base<<r.attempt, r.max)
	}
	return time.Duration(r.randN(int64(ceil) + 1))
}

// connecting records a connect attempt at t for the storm guard.
func (r *retry) connecting(t time.Time) {
	r.now = false
	r.recent = append(r.recent, t)
	i := 0
	for i < len(r.recent) && t.Sub(r.recent[i]) > r.stormWindow {
		i++
	}
	r.recent = append(r.recent[:0], r.recent[i:]...)
}

// dialFailed records a connect that did not get a CONNACK.
func (r *retry) dialFailed() { r.attempt++ }

// ended records how a session ended and decides what the next one does.
func (r *retry) ended(end sessionEnd, err error) {
	if r.skip != 0 && end.acked >= r.skip {
		r.skip = 0
	}
	if errors.Is(err, errReopened) {
		r.attempt, r.now = 0, true
		return
	}
	// A message the cloud refuses or cuts the connection over, session
	// after session with no progress, would block the queue forever:
	// dead-letter it.
	switch {
	case end.progressed || end.culprit == 0 || !errors.Is(err, errRefused) && !errors.Is(err, errCut):
		r.stuck, r.stuckN = 0, 0
	case end.culprit == r.stuck:
		r.stuckN++
	default:
		r.stuck, r.stuckN = end.culprit, 1
	}
	poisoned := false
	if r.stuckN >= r.poisonAfter {
		r.skip, r.stuck, r.stuckN = r.stuck, 0, 0
		poisoned = true
	}
	if end.progressed && !errors.Is(err, errRefused) {
		r.attempt = 0
	} else {
		r.attempt++
	}
	// Causes on edged's side need no backoff: a missing PUBACK is
	// resolved by resending on a new connection, and a message just
	// marked for dead-lettering no longer blocks the queue. The storm
	// guard still applies.
	r.now = poisoned || errors.Is(err, errNoPuback)
}
