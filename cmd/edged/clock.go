package main

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/wallclock"
)

// buildDate is set at build time with -ldflags "-X main.buildDate=..."
// (RFC 3339, or a date 2006-01-02). `edged version` prints it; here it
// is the floor below which the wall clock is never trusted.
var buildDate = ""

// sourceDate is the floor when neither buildDate nor the VCS time of
// the build is known: no clock that reads earlier than this source was
// written can be right.
var sourceDate = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// clockFloor is the binary's build date: buildDate, else the commit time
// go build stamped (vcs.time), else sourceDate.
func clockFloor() time.Time {
	for _, layout := range []string{time.RFC3339, time.DateOnly} {
		if t, err := time.Parse(layout, buildDate); err == nil {
			return t
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.time" {
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil && t.After(sourceDate) {
					return t
				}
			}
		}
	}
	return sourceDate
}

// openClock returns the clock `edged run` reads time from (the system's;
// a failpoint build may fake it, see clock_failpoint.go) and its judge,
// checked once so the first readings are judged (README "Clock").
func openClock(log *slog.Logger) (sensors.Clock, *wallclock.Clock, error) {
	clk, kern, every := systemClock()
	o := wallclock.Opts{Floor: clockFloor(), CheckEvery: every}
	boot, err := wallclock.ReadBootID(wallclock.BootIDFile)
	if err != nil {
		// Stamps still map within this process; across a restart they
		// cannot be told from another boot's, so they stay unsynced.
		log.Warn("no boot id: stamps taken before the clock is trusted cannot be corrected after a restart", "error", err)
	}
	o.Boot = boot
	if o.BootOffset, err = wallclock.SystemBootOffset(clk.(sensors.Monotonic)); err != nil {
		log.Warn("no time since boot: stamps are relative to edged's start", "error", err)
	}
	wc, err := wallclock.New(clk, kern, o, log)
	if err != nil {
		return nil, nil, fmt.Errorf("clock: %w", err)
	}
	wc.Check()
	return clk, wc, nil
}

// clockNotes is /readyz's informational line about the clock: an
// unsynchronised clock does not make edged unready (a Pi without network
// still samples, controls and serves the LAN), but the deploy that waits
// for it should see it.
func clockNotes(wc *wallclock.Clock) []string {
	if wc == nil || wc.Synced() {
		return nil
	}
	return []string{fmt.Sprintf("clock: not trusted, %s; readings are stamped \"clock\":\"unsynced\" and corrected once it is", wc.Reason())}
}

// runClock checks the clock every few seconds until ctx is done.
func (d *daemon) runClock(ctx context.Context) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.wall.Run(ctx)
	}()
}
