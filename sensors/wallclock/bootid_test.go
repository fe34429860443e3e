package wallclock_test

import (
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
	"github.com/edged/edged/sensors/wallclock"
)

// TestNoBootIDNeverCorrects: edged run keeps going when it cannot
// read the boot id ("stamps ... cannot be told from another boot's, so
// they stay unsynced", cmd/edged/clock.go). A record of an earlier boot
// (or process) carries the zero id too; it must not be mapped.
func TestNoBootIDNeverCorrects(t *testing.T) {
	clk := sensorstest.NewClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	wc, err := wallclock.New(clk, nil, wallclock.Opts{}, nil) // Boot: zero, as on a read error
	if err != nil {
		t.Fatal(err)
	}
	wc.Check()
	if !wc.Synced() {
		t.Fatal(wc.Reason())
	}
	if ts, ok := wc.Correct(wallclock.BootID{}, 12*time.Second); ok {
		t.Fatalf("a stamp with no boot id (of an unknown boot) was mapped to %s", ts)
	}
}
