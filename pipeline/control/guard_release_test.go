package control

import (
	"testing"
	"testing/synctest"
	"time"
)

// Regression for a cutoff without release hysteresis (issue 9 review):
// readings alternating 35.0/34.9 around cutoff_above 35 switched a relay
// on and off with pulses shorter than min_on and used up
// max_switches_per_hour. The cutoff now holds until the input is
// cutoffRelease inside it.
func TestCutoffReleaseBandStopsChatter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := guardOpts(FailSafe)
		o.Cycle = time.Minute
		h := startHarness(t, o, "")
		h.read(20)
		h.command(`{"mode":"manual","output":1}`)
		for i := 1; i < 12*60; i++ { // an hour of 5 s samples
			h.advanceTo(h.at(time.Duration(i) * 5 * time.Second))
			if i%2 == 1 {
				h.read(35)
			} else {
				h.read(34.9)
			}
		}
		calls := h.act.take()
		short, ons := 0, 0
		for i, c := range calls {
			if c.op == "set" && c.level == 1 {
				ons++
				if i+1 < len(calls) && calls[i+1].at-c.at < o.MinOn {
					short++
				}
			}
		}
		t.Logf("%d switch-ons, %d pulses shorter than min_on %v in an hour", ons, short, o.MinOn)
		if ons != 1 || short != 1 {
			// The first pulse, from 0 s, is cut at 5 s: a cutoff acts at once.
			t.Errorf("%d switch-ons and %d pulses shorter than min_on, want the first one only: %v", ons, short, calls[:min(12, len(calls))])
		}
	})
}

// TestCutoffRelease: the cutoff ends at the first trusted reading at or
// below cutoff_above - cutoffRelease, and relay protection then counts
// min_off from the cutoff and gives full pulses.
func TestCutoffRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := guardOpts(FailSafe)
		o.Cycle = time.Minute
		h := startHarness(t, o, "")
		h.read(20)
		h.command(`{"mode":"manual","output":0.5}`) // 30 s pulses
		h.advanceTo(h.at(2 * time.Second))
		h.read(36) // cutoff
		margin := cutoffRelease(35, o)
		if !near(margin, 0.175) {
			t.Fatalf("release margin %v for cutoff 35, want 0.175 (0.5%%)", margin)
		}
		h.advanceTo(h.at(4 * time.Second))
		h.read(34.83) // not yet
		if s := h.l.State(); s.Applied != AppliedCutoff {
			t.Errorf("at 34.83: %+v", s)
		}
		h.advanceTo(h.at(6 * time.Second))
		h.read(34.82) // inside the band: released; min_off (10 s) from 2 s
		if s := h.l.State(); s.Applied != AppliedManual || s.Fault != "" {
			t.Errorf("at 34.82: %+v", s)
		}
		h.advanceTo(h.at(3 * time.Minute))
		// From the cutoff at 2 s: min_off, then full pulses and gaps.
		calls := h.act.take()
		for len(calls) > 0 && calls[0].at < 2*time.Second {
			calls = calls[1:]
		}
		if len(calls) < 4 || calls[0] != (call{"set", 0, 2 * time.Second}) || calls[1] != (call{"set", 1, 12 * time.Second}) {
			t.Fatalf("calls from the cutoff %v, want off at 2s and on at 12s (min_off)", calls)
		}
		for i := 1; i+1 < len(calls); i++ {
			d, minD := calls[i+1].at-calls[i].at, o.MinOff
			if calls[i].level == 1 {
				minD = o.MinOn
			}
			if d < minD {
				t.Errorf("after the release: %v then %v, shorter than %v", calls[i], calls[i+1], minD)
			}
		}
		if n := h.logs.count("cutoff over"); n != 1 {
			t.Errorf("logged the end of the cutoff %d times, want once", n)
		}
	})
}

// TestCutoffReleaseBand pins the release band's rule.
func TestCutoffReleaseBand(t *testing.T) {
	pid := testOpts()
	hyst := testOpts()
	hyst.PID, hyst.Hysteresis = Gains{}, &Band{Below: 0.3, Above: 0.2}
	for _, tc := range []struct {
		cutoff float64
		o      Opts
		want   float64
	}{
		{35, pid, 0.175}, // 0.5 %
		{8, pid, 0.1},    // cutoffReleaseMin
		{-40, pid, 0.2},  // 0.5 % of the magnitude
		{35, hyst, 0.5},  // the hysteresis band
		{400, hyst, 2.0}, // 0.5 % is more
		{1000, pid, 5.0}, // e.g. ppm
	} {
		if got := cutoffRelease(tc.cutoff, tc.o); !near(got, tc.want) {
			t.Errorf("cutoffRelease(%v, hysteresis %v) = %v, want %v", tc.cutoff, tc.o.Hysteresis, got, tc.want)
		}
	}
}
