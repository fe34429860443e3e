package control

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// Regression for the cutoff that let go when the probe failed (issue 9
// review): the cutoff only counted while the input was trusted, so when
// the probe went silent after reading beyond cutoff_above, manual
// output, fixed_output or a safe_state: on relay turned the heater back
// on. The cutoff now holds until a trusted reading comes back inside it.
func TestCutoffHeldWhenTheProbeDies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action string
		manual bool
		safeOn bool
	}{
		{"manual", FailSafe, true, false},
		{"fixed", FailFixed, false, false},
		{"hold", FailHold, false, false},
		{"safe_state on", FailSafe, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, guardOpts(tc.action), "")
				if tc.safeOn {
					h.l.out = safeOnActuator{h.act}
				}
				h.start()
				h.read(5) // output 1
				if tc.manual {
					h.command(`{"mode":"manual","output":1}`)
				}
				h.advanceTo(h.at(5 * time.Second))
				h.read(40) // beyond cutoff_above 35
				if s := h.l.State(); s.Applied != AppliedCutoff || h.act.Level() != 0 {
					t.Fatalf("at 40: state %+v, level %v", s, h.act.Level())
				}
				// The probe goes silent: stale after 30 s, then hold_for (5m)
				// runs out.
				for at := 10 * time.Second; at <= 10*time.Minute; at += 10 * time.Second {
					h.advanceTo(h.at(at))
					if s := h.l.State(); h.act.Level() != 0 || s.Applied != AppliedCutoff || !strings.Contains(s.Fault, faultCutoff) {
						t.Fatalf("at %v with the last trusted reading 40 above cutoff 35: state %+v, level %v", at, s, h.act.Level())
					}
				}
				// A trusted reading inside the cutoff's release band ends it.
				h.read(20)
				if s := h.l.State(); s.Applied == AppliedCutoff || strings.Contains(s.Fault, faultCutoff) {
					t.Errorf("after a reading of 20: %+v", s)
				}
			})
		})
	}
}

// Regression for the cutoff released by a reading above input_max (issue
// 9 review): a probe that fails high, or air that really is hotter than
// input_max, turned the failure action (fixed_output) on. For a heater a
// reading above input_max is beyond cutoff_above; for a cooler a reading
// below input_min is beyond cutoff_below.
func TestCutoffHeldByReadingBeyondInputRange(t *testing.T) {
	t.Run("heater", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := startHarness(t, guardOpts(FailFixed), "")
			h.read(20)
			h.advanceTo(h.at(5 * time.Second))
			h.read(40)
			h.advanceTo(h.at(10 * time.Second))
			h.read(70) // above input_max 60
			if s := h.l.State(); h.act.Level() != 0 || s.Applied != AppliedCutoff || !strings.HasPrefix(s.Fault, faultImplausible) {
				t.Errorf("after 40 then 70 (cutoff 35, input_max 60): state %+v, level %v", s, h.act.Level())
			}
		})
	})
	t.Run("heater, first reading above input_max", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := startHarness(t, guardOpts(FailFixed), "")
			h.read(20)
			h.advanceTo(h.at(5 * time.Second))
			h.read(70)
			if s := h.l.State(); h.act.Level() != 0 || s.Applied != AppliedCutoff {
				t.Errorf("after 70: state %+v, level %v", s, h.act.Level())
			}
		})
	})
	t.Run("cooler", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			o := guardOpts(FailFixed)
			o.PID = Gains{Kp: -0.1}
			o.CutoffAbove, o.CutoffBelow = nil, f64(2)
			h := startHarness(t, o, "")
			h.read(30) // output 1
			h.advanceTo(h.at(5 * time.Second))
			h.read(-3) // below input_min 0
			if s := h.l.State(); h.act.Level() != 0 || s.Applied != AppliedCutoff {
				t.Errorf("cooler after -3 (cutoff_below 2, input_min 0): state %+v, level %v", s, h.act.Level())
			}
		})
	})
}
