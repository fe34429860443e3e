package wal

import (
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
)

// TestReviewMaxAgeFakeHwclockRestart: a Pi with fake-hwclock (Raspberry
// Pi OS's default) boots after a 3-day power cut at the time it saved at
// shutdown (after the build date, so above ClockFloor) with no NTP yet.
// edged buffers for 10 minutes, NTP steps the clock 3 days forward, and
// edged restarts (kill -9, OOM, a restart-needing reload) 5 minutes later.
// The records are 15 minutes old; max_age is 24 h. They must survive.
func TestReviewMaxAgeFakeHwclockRestart(t *testing.T) {
	cfg := suiteConfigs[0]
	floor := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	saved := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC) // fake-hwclock at shutdown
	e := newEnv(t, cfg)
	e.opts.MaxAge = 24 * time.Hour
	e.opts.ClockFloor = floor
	l := e.openWith(t, saved)
	appendN(t, l, 0, 20)
	e.clock.Advance(10 * time.Minute)
	e.clock.Step(3 * 24 * time.Hour) // NTP's first sync after the outage
	e.clock.Advance(5 * time.Minute)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := newEnv(t, cfg)
	e2.dir, e2.fs = e.dir, e.fs
	e2.opts = e.opts
	now := e.clock.Now()
	e2.clock = sensorstest.NewClock(now)
	e2.opts.Clock = e2.clock
	l = e2.open()
	appendN(t, l, 20, 1) // the append runs the age scan
	if st := l.Stats(); st.DroppedAge != 0 {
		t.Fatalf("max_age 24h expired %d records captured 15 minutes ago (their fake-hwclock stamp is 3 days behind)", st.DroppedAge)
	}
}
