package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/wallclock"
)

// sourceDate is the floor when the build date is unknown: no clock that
// reads earlier than this source was written can be right.
var sourceDate = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// clockFloor is the binary's build date (the commit's time, as `edged
// version` prints it), or sourceDate when that is unknown or earlier: the
// wall clock is never trusted below it.
func clockFloor() time.Time {
	_, date := buildCommit()
	if t, err := time.Parse(time.RFC3339, date); err == nil && t.After(sourceDate) {
		return t
	}
	return sourceDate
}

// openClock returns the clock `edged run` reads time from (the system's;
// a failpoint build may fake it, see clock_failpoint.go) and its judge,
// checked once so the first readings are judged (README "Clock"). With
// trust "always" the kernel's word is not asked.
func openClock(trust string, log *slog.Logger) (sensors.Clock, *wallclock.Clock, error) {
	clk, kern, every := systemClock()
	if trust == configs.TrustAlways {
		kern = wallclock.KernelFunc(func() (bool, error) { return true, nil })
	}
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
