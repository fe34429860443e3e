package main

import (
	"log/slog"
	"testing"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/sensors/wallclock"
)

// TestOpenClockTrust: with clock.trust "kernel" the judge follows the
// kernel's word (adjtimex); with "always" it trusts a clock that reads
// after the build date even where the kernel says unsynchronised (a
// board with an RTC and no network, this CI machine).
func TestOpenClockTrust(t *testing.T) {
	kernel, err := wallclock.Adjtimex.Synced()
	if err != nil {
		t.Skipf("no adjtimex here: %v", err)
	}
	_, wc, err := openClock(configs.TrustKernel, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if wc.Synced() != kernel {
		t.Errorf("trust kernel: synced %v, the kernel says %v (%s)", wc.Synced(), kernel, wc.Reason())
	}
	_, wc, err = openClock(configs.TrustAlways, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if !wc.Synced() {
		t.Errorf("trust always: not synced: %s", wc.Reason())
	}
}
