package control

import (
	"encoding/json"
	"math"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

// simStep is how the sim plant answers a setpoint step: the largest
// overshoot, and when the air was last outside ±band of the new setpoint.
type simStep struct {
	overshoot float64
	settle    time.Duration
}

func measureStep(sp, band float64, temps []float64) simStep {
	var s simStep
	for i, v := range temps {
		s.overshoot = max(s.overshoot, v-sp)
		if math.Abs(v-sp) > band {
			s.settle = time.Duration(i+1) * 5 * time.Second
		}
	}
	return s
}

// Settling test for the sim plant: a step of the setpoint from 22.5 to
// 24.5 °C must settle within ±stepBand for good within stepSettle, and
// overshoot by less than stepOvershoot.
const (
	stepFrom, stepTo = 22.5, 24.5
	stepBand         = 0.15
	stepSettle       = 15 * time.Minute
	stepOvershoot    = 0.2
)

// exampleSimOpts is the heat loop of configs/examples/sim.yaml on the
// relay with its 60 s cycle, and its hand-set gains.
func exampleSimOpts() Opts {
	o := testOpts()
	o.Setpoint, o.PID, o.StaleAfter, o.Cycle = stepFrom, Gains{Kp: 0.4, Ki: 0.002}, 30*time.Second, time.Minute
	return o
}

// runAutotune sends {"autotune": ...} and feeds the loop until the test
// ends (at most limit of sim time), and returns the state it ended with.
func runAutotune(t *testing.T, r *simRig, cmd string, limit time.Duration) *AutotuneState {
	t.Helper()
	s := r.h.command(cmd)
	if s.Autotune == nil || s.Autotune.Status != AutotuneRunning {
		t.Fatalf("state after %s: %+v", cmd, s.Autotune)
	}
	for at := time.Duration(0); at < limit; at += 5 * time.Second {
		r.h.advanceTo(r.clk.Now().Add(5 * time.Second))
		r.h.read(r.sense())
		if st := r.h.l.State().Autotune; st.Status != AutotuneRunning {
			t.Logf("autotune %s after %v: %+v", st.Status, at, *st)
			return st
		}
	}
	t.Fatalf("autotune still running after %v", limit)
	return nil
}

// TestAutotuneSimPlant runs the relay autotune on the sim plant of
// configs/examples/sim.yaml (the relay on its 60 s cycle, relay
// protection as configured) and checks that the gains it finds pass the
// settling test, comparing them with the example's hand-set gains. The
// gains must be applied and saved.
func TestAutotuneSimPlant(t *testing.T) {
	step := func(r *simRig) simStep {
		r.run(time.Hour, nil)
		r.h.command(`{"setpoint": 24.5}`)
		return measureStep(stepTo, stepBand, r.run(2*time.Hour, nil))
	}

	o := exampleSimOpts()
	var hand simStep
	synctest.Test(t, func(t *testing.T) {
		hr := newSimRig(t, o)
		hr.start()
		hr.run(3*time.Hour, nil)
		hand = step(hr)
		hr.stop()
	})

	for _, rule := range []string{"tl_pi", "zn_pi"} {
		t.Run(rule, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newSimRig(t, o)
				sw := &switchLog{Actuator: r.act, clk: r.clk}
				r.act = sw
				r.start()
				r.run(3*time.Hour, nil)
				start := r.clk.Now()
				st := runAutotune(t, r, `{"autotune": {"rule": "`+rule+`"}}`, 3*time.Hour)
				if st.Status != AutotuneDone || st.Gains == nil {
					t.Fatalf("autotune: %+v", *st)
				}
				// The relay oscillation went through the relay protection.
				end := r.clk.Now()
				f := figures(pulsesAfter(pulsesOf(sw.history(), end), start), start, end, 0)
				t.Logf("relay during the autotune: %v", f)
				if f.shortestPulse >= 0 && f.shortestPulse < o.MinOn || f.shortestGap >= 0 && f.shortestGap < o.MinOff || f.maxPerHour > o.MaxSwitchesPerHour {
					t.Errorf("relay protection broken during the autotune: %v", f)
				}
				g := r.h.l.State().Gains
				if g != *st.Gains {
					t.Errorf("gains in use %+v, autotune found %+v", g, *st.Gains)
				}
				found := step(r)
				t.Logf("hand-set gains %+v: overshoot %.3f °C, within ±%.2f °C after %v", o.PID, hand.overshoot, stepBand, hand.settle)
				t.Logf("%s gains %+v (Ku %.3f, Tu %.0f s, %d cycles): overshoot %.3f °C, within ±%.2f °C after %v",
					rule, g, st.Ku, st.PeriodS, st.Cycles, found.overshoot, stepBand, found.settle)
				if found.overshoot > stepOvershoot {
					t.Errorf("overshoot %.3f °C, want below %.2f", found.overshoot, stepOvershoot)
				}
				if found.settle > stepSettle {
					t.Errorf("settled within ±%.2f °C after %v, want within %v", stepBand, found.settle, stepSettle)
				}
				path := r.h.l.statePath
				r.stop()
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				var p persisted
				if err := json.Unmarshal(b, &p); err != nil || p.Gains == nil || *p.Gains != g {
					t.Errorf("state file %s (%v), want gains %+v", b, err, g)
				}
			})
		})
	}
}
