package uplink

import (
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
)

func TestBackoffFullJitterCappedWithStormGuard(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	clk := sensorstest.NewClock(t0)
	u := &Uplink{clock: clk, backoffBase: time.Second, backoffMax: 60 * time.Second, stormWindow: time.Minute, stormMax: 20}
	tests := []struct {
		attempt int
		ceil    time.Duration
	}{{0, time.Second}, {1, 2 * time.Second}, {3, 8 * time.Second}, {6, 60 * time.Second}, {40, 60 * time.Second}, {1000, 60 * time.Second}}
	for _, tt := range tests {
		var maxSeen time.Duration
		for range 2000 {
			d := u.backoff(tt.attempt, nil)
			if d < 0 || d > tt.ceil {
				t.Fatalf("attempt %d: %v outside [0, %v]", tt.attempt, d, tt.ceil)
			}
			maxSeen = max(maxSeen, d)
		}
		// Full jitter spreads over the whole range, not just near 0.
		if maxSeen < tt.ceil/2 {
			t.Errorf("attempt %d: largest of 2000 waits %v, want spread up to %v", tt.attempt, maxSeen, tt.ceil)
		}
	}
	// Twenty attempts in the last minute: the next waits until the
	// oldest of them is a minute old, however small the jitter.
	var recent []time.Time
	for i := range 20 {
		recent = append(recent, t0.Add(time.Duration(i)*time.Second))
	}
	clk.AdvanceTo(t0.Add(20 * time.Second))
	for range 100 {
		if d := u.backoff(0, recent); d < 40*time.Second {
			t.Fatalf("storm guard: waited %v, want at least 40s", d)
		}
	}
	if d := u.backoff(0, recent[1:]); d > time.Second {
		t.Errorf("19 attempts in the window: %v, want the plain backoff", d)
	}
}
