package control

import (
	"testing"
	"testing/synctest"
	"time"
)

// Regression for a false "input stuck" at the low output limit (issue 9
// review): a warm room 5 °C above the setpoint, steady with the heater
// off, counted as stuck, and on_input_failure: fixed then heated it
// (0.2, or full on for hysteresis). A run only counts while the output
// at its limit pushes the input towards the setpoint.
func TestStuckAtLowLimitDoesNotHeat(t *testing.T) {
	hyst := guardOpts(FailFixed)
	hyst.PID, hyst.Hysteresis, hyst.FixedOutput = Gains{}, &Band{Below: 0.5, Above: 0.5}, f64(1)
	cooler := guardOpts(FailFixed)
	cooler.PID, cooler.CutoffAbove = Gains{Kp: -0.1}, nil
	for _, tc := range []struct {
		name string
		o    Opts
		v    float64
	}{
		{"pid", guardOpts(FailFixed), 25},
		{"hysteresis", hyst, 25},
		{"cooler", cooler, 15}, // a cool room below the setpoint, cooler off
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := startHarness(t, tc.o, "")
				for at := time.Duration(0); at <= 10*time.Minute; at += 5 * time.Second {
					h.advanceTo(h.at(at))
					h.read(tc.v)
					if s := h.l.State(); h.act.Level() != 0 || s.Fault != "" {
						t.Fatalf("at %v, reading %v steady (setpoint 20): state %+v, level %v", at, tc.v, s, h.act.Level())
					}
				}
			})
		})
	}
}

// TestStuckAtHighLimitDetected: the probe that fell out of the house
// still counts as stuck (heater flat out, input below the setpoint), and
// fixed_output applies, no harder than the stuck run.
func TestStuckAtHighLimitDetected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, guardOpts(FailFixed), "")
		for at := time.Duration(0); at <= 3*time.Minute; at += 5 * time.Second {
			h.advanceTo(h.at(at))
			h.read(5)
		}
		if s := h.l.State(); s.Applied != AppliedFixed || !near(s.Output, 0.2) {
			t.Errorf("probe stuck at 5 with the heater flat out: %+v", s)
		}
	})
}
