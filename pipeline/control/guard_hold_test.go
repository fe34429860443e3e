package control

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// Regression for hold after a stuck input (issue 9 review): hold kept
// the output the stuck run saturated (heater at 100 %) for hold_for, so
// the runaway the guard had just found went on. hold is for a silent or
// offline sensor; a stuck or implausible input goes to the safe state.
func TestHoldDoesNotKeepAStuckOutput(t *testing.T) {
	for _, tc := range []struct {
		name   string
		v      float64
		prefix string
	}{
		{"stuck", 5, faultStuck},              // probe fell out: reads 5 while the house heats
		{"implausible", -5, faultImplausible}, // below input_min 0
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := startHarness(t, guardOpts(FailHold), "")
				for at := time.Duration(0); at <= 5*time.Minute; at += 5 * time.Second {
					h.advanceTo(h.at(at))
					if at < time.Minute {
						h.read(19) // healthy: output 0.1
					} else {
						h.read(tc.v)
					}
				}
				s := h.l.State()
				if !strings.HasPrefix(s.Fault, tc.prefix) || s.Applied != AppliedSafe || h.act.Level() != 0 {
					t.Errorf("after 4 min of %v from a healthy start: state %+v, level %v; want the safe state", tc.v, s, h.act.Level())
				}
				if n := h.logs.count("output to safe state"); n != 1 {
					t.Errorf("logged the action %d times, want once as safe state:\n%s", n, h.logs)
				}
			})
		})
	}
}
