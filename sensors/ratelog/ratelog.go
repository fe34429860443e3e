// Package ratelog keeps the warnings that somebody else can trigger (a
// LAN client, a command sender, a flaky peer) from flooding the journal:
// at most one line per key per interval, and at most a few lines per
// interval over all keys, so that varying the key (a new client id or
// source address each time) does not get around it. What was held back
// is counted and reported on the next line that is let through.
//
// It owns no logger policy beyond that; callers choose keys ("kind" or
// "kind|address") and levels.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/edged/edged/sensors"
)

// maxKeys bounds the memory a key flood can take; past it the oldest
// keys are forgotten (their next line is let through by the per-key
// rule but still counts against the overall budget).
const maxKeys = 1024

// Limiter decides which lines are written. The zero value is not usable;
// call New.
type Limiter struct {
	every  time.Duration
	burst  int // lines per interval over all keys
	clock  sensors.Clock
	mu     sync.Mutex
	keys   map[string]*entry
	window time.Time // start of the current overall interval
	used   int       // lines written in it
	held   int       // lines held back by the overall budget, not yet reported
}

type entry struct {
	last time.Time
	held int
}

// New returns a limiter that lets through one line per key every
// interval and at most burst lines per interval in all. A nil clock is
// the system clock.
func New(every time.Duration, burst int, clock sensors.Clock) *Limiter {
	if clock == nil {
		clock = sensors.SystemClock
	}
	if burst < 1 {
		burst = 1
	}
	return &Limiter{every: every, burst: burst, clock: clock, keys: map[string]*entry{}}
}

// Allow reports whether a line for key may be written now and, when it
// may, how many lines were held back since the last one let through
// (for this key, plus those the overall budget held back).
func (l *Limiter) Allow(key string) (ok bool, held int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	e := l.keys[key]
	if e != nil && now.Sub(e.last) < l.every {
		e.held++
		return false, 0
	}
	if now.Sub(l.window) >= l.every {
		l.window, l.used = now, 0
	}
	if l.used >= l.burst {
		l.held++
		if e != nil {
			e.held++
		}
		return false, 0
	}
	l.used++
	if e == nil {
		if len(l.keys) >= maxKeys {
			l.forget(now)
		}
		e = &entry{}
		l.keys[key] = e
	}
	held = e.held + l.held
	e.last, e.held, l.held = now, 0, 0
	return true, held
}

// forget drops keys idle for a whole interval, or all of them when none
// is (a flood of fresh keys).
func (l *Limiter) forget(now time.Time) {
	for k, e := range l.keys {
		if now.Sub(e.last) >= l.every {
			delete(l.keys, k)
		}
	}
	if len(l.keys) >= maxKeys {
		clear(l.keys)
	}
}

// Log writes msg at level through log when Allow(key) lets it, adding
// "suppressed": N when lines were held back.
func (l *Limiter) Log(log *slog.Logger, level slog.Level, key, msg string, args ...any) {
	ok, held := l.Allow(key)
	if !ok {
		return
	}
	if held > 0 {
		args = append(args, "suppressed", held)
	}
	log.Log(context.Background(), level, msg, args...)
}
