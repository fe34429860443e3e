package control

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestStateInputRounded: the state's input is rounded to 4 decimals as
// the sensor topics are (pipeline.AppendPayload), so 21.37 does not
// travel as 21.369999999999997 (issue 9).
func TestStateInputRounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, testOpts(), "")
		h.read(21.369999999999997)
		if s := h.l.State(); s.Input == nil || *s.Input != 21.37 {
			t.Errorf("state input %v, want 21.37", s.Input)
		}
		h.advanceTo(h.at(2 * time.Second))
		h.read(19.123456)
		msgs := h.pub.take()
		if len(msgs) == 0 || !strings.Contains(msgs[len(msgs)-1].payload, `"input":19.1235,`) {
			t.Errorf("last state message %v, want input 19.1235", msgs)
		}
	})
}

// TestDerivativeNoiseSimPlant holds the sim plant (PWM heater) at
// 22.5 °C with sensor noise (σ 0.05 °C, 5 s samples) and measures how
// much the output moves: the standard deviation of the output over the
// last hour of three, relative to PI alone. Issue 9: kd 20 unfiltered
// amplified the noise 13 times; derivative_filter (default 10s) cuts it.
func TestDerivativeNoiseSimPlant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		spread := func(kd float64, filter time.Duration) (std, band float64) {
			o := testOpts()
			o.Setpoint, o.PID, o.StaleAfter = 22.5, Gains{Kp: 0.4, Ki: 0.002, Kd: kd}, 30*time.Second
			o.DerivativeFilter = filter
			r := newSimRig(t, o)
			h := r.start()
			rng := rand.New(rand.NewPCG(9, 9))
			var sum, sum2, n float64
			lo, hi := math.Inf(1), math.Inf(-1)
			for at := time.Duration(0); at < 3*time.Hour; at += 5 * time.Second {
				h.advanceTo(t0.Add(at))
				v := r.sense()
				h.read(v + 0.05*rng.NormFloat64())
				if at >= 2*time.Hour {
					out := h.l.State().Output
					sum, sum2, n = sum+out, sum2+out*out, n+1
					lo, hi = min(lo, v), max(hi, v)
				}
			}
			r.stop()
			mean := sum / n
			return math.Sqrt(max(sum2/n-mean*mean, 0)), max(22.5-lo, hi-22.5)
		}
		pi, piBand := spread(0, 0)
		t.Logf("PI: output σ %.4f, air within ±%.3f °C", pi, piBand)
		var unfiltered float64
		for _, tc := range []struct {
			filter time.Duration
			max    float64 // amplification at most
		}{
			{0, 20}, {DefaultDerivativeFilter, 6}, {30 * time.Second, 3},
		} {
			std, band := spread(20, tc.filter)
			amp := std / pi
			t.Logf("kd 20, derivative_filter %v: output σ %.4f, %.1f times PI's; air within ±%.3f °C", tc.filter, std, amp, band)
			if tc.filter == 0 {
				unfiltered = amp
			} else if amp > unfiltered/2 {
				t.Errorf("filter %v: amplification %.1f, want at most half the unfiltered %.1f", tc.filter, amp, unfiltered)
			}
			if amp > tc.max {
				t.Errorf("filter %v: amplification %.1f, want at most %v", tc.filter, amp, tc.max)
			}
		}
	})
}

// TestSetpointRampLoop: setpoint_ramp is in input units per minute, and
// a setpoint command moves the effective setpoint at that rate from the
// readings' own time stamps.
func TestSetpointRampLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := testOpts()
		o.SetpointRamp = 6 // °C per minute: 0.1 °C per second
		h := startHarness(t, o, "")
		h.read(20)
		if s := h.command(`{"setpoint":25}`); s.Setpoint != 25 || s.Output != 0 {
			t.Errorf("state %+v right after the command, want setpoint 25 and output 0 (ramp at 20)", s)
		}
		h.advanceTo(h.at(10 * time.Second))
		h.read(20)
		if s := h.l.State(); !near(s.Output, 0.1) {
			t.Errorf("output %v after 10 s, want kp 0.1 × (21 - 20)", s.Output)
		}
		for at := 15 * time.Second; at <= time.Minute; at += 5 * time.Second {
			h.advanceTo(h.at(at))
			h.read(20)
		}
		if s := h.l.State(); !near(s.Output, 0.5) {
			t.Errorf("output %v after 1 min, want kp 0.1 × (25 - 20): the ramp arrived", s.Output)
		}
	})
}
