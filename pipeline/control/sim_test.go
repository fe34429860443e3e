package control

import (
	"context"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/edged/edged/drivers/sim"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

type shareMap map[string]any

func (m shareMap) Shared(key string, open func() (any, error)) (any, error) {
	if v, ok := m[key]; ok {
		return v, nil
	}
	v, err := open()
	if err != nil {
		return nil, err
	}
	m[key] = v
	return v, nil
}

// TestTracksSetpointSimPlant closes the loop over the simulated greenhouse
// of configs/examples/sim.yaml (12 °C outside, 20 min time constant, 30 s
// heater lag, 10 s dead time) with its gains, once with a proportional
// heater and once with the on/off relay on a 60 s cycle. It checks that
// the air reaches the setpoint, does not overshoot much and stays there.
func TestTracksSetpointSimPlant(t *testing.T) {
	cases := []struct {
		name     string
		relay    bool
		cycle    time.Duration
		overshot float64 // °C above the setpoint at most
		band     float64 // °C around the setpoint over the last hour
	}{
		{"pwm", false, 0, 0.3, 0.02},
		{"relay with cycle", true, time.Minute, 0.3, 0.1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				clk := sensorstest.NewClock(t0)
				share := shareMap{}
				co := sim.DefaultClimateOpts()
				co.DeadTime = 10 * time.Second
				climate, err := sim.NewClimate(clk, share, co)
				if err != nil {
					t.Fatal(err)
				}
				var act sensors.Actuator
				if tc.relay {
					act, err = sim.NewRelay(clk, share, sim.DefaultHeaterOpts())
				} else {
					act, err = sim.NewPWM(clk, share, sim.DefaultHeaterOpts())
				}
				if err != nil {
					t.Fatal(err)
				}
				o := testOpts()
				o.Setpoint, o.PID, o.Cycle = 22.5, Gains{Kp: 0.4, Ki: 0.002}, tc.cycle
				l, err := New(o, act, clk, nil, "edged/sim-01", "", nil)
				if err != nil {
					t.Fatal(err)
				}
				h := &harness{t: t, clk: clk, l: l}
				h.start()

				dst := make([]float64, 2)
				peak, lo, hi := math.Inf(-1), math.Inf(1), math.Inf(-1)
				for at := time.Duration(0); at <= 4*time.Hour; at += 5 * time.Second {
					h.advanceTo(t0.Add(at))
					if err := climate.Sense(context.Background(), dst); err != nil {
						t.Fatal(err)
					}
					h.read(dst[0])
					peak = max(peak, dst[0])
					if at >= 3*time.Hour {
						lo, hi = min(lo, dst[0]), max(hi, dst[0])
					}
				}
				t.Logf("peak %.3f °C, last hour %.3f..%.3f °C", peak, lo, hi)
				if peak > o.Setpoint+tc.overshot {
					t.Errorf("peak %.2f °C overshoots %.1f by more than %.2f", peak, o.Setpoint, tc.overshot)
				}
				if lo < o.Setpoint-tc.band || hi > o.Setpoint+tc.band {
					t.Errorf("last hour between %.3f and %.3f °C, want %.1f ± %.2f", lo, hi, o.Setpoint, tc.band)
				}
				if s := l.State(); s.Fault != "" || s.Mode != ModeAuto {
					t.Errorf("state %+v", s)
				}
			})
		})
	}
}

// TestCoolingWithNegativeGainsSimPlant pins issue 9's item that reverse
// action (cooling) worked with negative gains but was never tested: a
// room at 30 °C with a cooler that can take it 15 °C lower, held at 22 °C
// by a PID loop with negative gains, through a proportional cooler and a
// relay on a 60 s cycle.
func TestCoolingWithNegativeGainsSimPlant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, relay := range []bool{false, true} {
			clk := sensorstest.NewClock(t0)
			share := shareMap{}
			co := sim.DefaultClimateOpts()
			co.Ambient, co.HeaterGain, co.DeadTime = 30, -15, 10*time.Second
			climate, err := sim.NewClimate(clk, share, co)
			if err != nil {
				t.Fatal(err)
			}
			var act sensors.Actuator
			o := testOpts()
			o.Setpoint, o.PID = 22, Gains{Kp: -0.4, Ki: -0.002}
			if relay {
				act, err = sim.NewRelay(clk, share, sim.DefaultHeaterOpts())
				o.Cycle = time.Minute
			} else {
				act, err = sim.NewPWM(clk, share, sim.DefaultHeaterOpts())
			}
			if err != nil {
				t.Fatal(err)
			}
			l, err := New(o, act, clk, nil, "edged/sim-01", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			h := &harness{t: t, clk: clk, l: l}
			h.start()
			dst := make([]float64, 2)
			low, lo, hi := math.Inf(1), math.Inf(1), math.Inf(-1)
			for at := time.Duration(0); at <= 4*time.Hour; at += 5 * time.Second {
				h.advanceTo(t0.Add(at))
				if err := climate.Sense(context.Background(), dst); err != nil {
					t.Fatal(err)
				}
				h.read(dst[0])
				low = min(low, dst[0])
				if at >= 3*time.Hour {
					lo, hi = min(lo, dst[0]), max(hi, dst[0])
				}
			}
			t.Logf("relay %v: lowest %.3f °C, last hour %.3f..%.3f °C", relay, low, lo, hi)
			if low < o.Setpoint-0.4 { // measured: 0.32 (proportional), 0.30 (relay)
				t.Errorf("relay %v: cooled to %.2f °C, more than 0.4 below %v", relay, low, o.Setpoint)
			}
			if lo < o.Setpoint-0.1 || hi > o.Setpoint+0.1 {
				t.Errorf("relay %v: last hour between %.3f and %.3f °C, want %v ± 0.1", relay, lo, hi, o.Setpoint)
			}
			if err := h.stop(); err != nil {
				t.Error(err)
			}
		}
	})
}
