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

// simRig is the simulated greenhouse of configs/examples/sim.yaml (with
// 10 s of dead time) and a PWM heater in it, on a fake clock, with loops
// that can be stopped and started again on the same state dir as edged
// is on a restart.
type simRig struct {
	t       *testing.T
	clk     *sensorstest.Clock
	climate sensors.Sensor
	act     sensors.Actuator
	dir     string
	opts    Opts
	h       *harness // the running loop; nil while "edged" is down
	dst     []float64
}

func newSimRig(t *testing.T, o Opts) *simRig {
	t.Helper()
	clk := sensorstest.NewClock(t0)
	share := shareMap{}
	co := sim.DefaultClimateOpts()
	co.DeadTime = 10 * time.Second
	climate, err := sim.NewClimate(clk, share, co)
	if err != nil {
		t.Fatal(err)
	}
	var act sensors.Actuator
	if o.Cycle > 0 {
		act, err = sim.NewRelay(clk, share, sim.DefaultHeaterOpts())
	} else {
		act, err = sim.NewPWM(clk, share, sim.DefaultHeaterOpts())
	}
	if err != nil {
		t.Fatal(err)
	}
	return &simRig{t: t, clk: clk, climate: climate, act: act, dir: t.TempDir(), opts: o, dst: make([]float64, 2)}
}

// sense returns the air temperature now.
func (r *simRig) sense() float64 {
	r.t.Helper()
	if err := r.climate.Sense(context.Background(), r.dst); err != nil {
		r.t.Fatal(err)
	}
	return r.dst[0]
}

// start starts a new loop (a new edged process) on the rig's state dir.
func (r *simRig) start() *harness {
	r.t.Helper()
	l, err := New(r.opts, r.act, r.clk, nil, "edged/sim-01", r.dir, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	r.h = &harness{t: r.t, clk: r.clk, l: l}
	r.h.start()
	return r.h
}

// stop stops the running loop as a clean shutdown of edged does.
func (r *simRig) stop() {
	r.t.Helper()
	if err := r.h.stop(); err != nil {
		r.t.Fatal(err)
	}
	r.h = nil
}

// run samples the air every 5 s from now until d later, handing each
// reading to the running loop (if any and if feed says so), and returns
// the readings.
func (r *simRig) run(d time.Duration, feed func(at time.Duration) bool) []float64 {
	r.t.Helper()
	start := r.clk.Now()
	var got []float64
	for at := time.Duration(0); at < d; at += 5 * time.Second {
		if r.h != nil {
			r.h.advanceTo(start.Add(at))
		} else {
			r.clk.AdvanceTo(start.Add(at))
		}
		v := r.sense()
		got = append(got, v)
		if r.h != nil && (feed == nil || feed(at)) {
			r.h.read(v)
		}
	}
	return got
}

// disturbance is how far the air fell below the setpoint after an event
// and how long it took to settle back within ±0.1 °C for good.
type disturbance struct {
	dip    float64
	settle time.Duration
}

func measure(sp float64, temps []float64) disturbance {
	var d disturbance
	for i, v := range temps {
		d.dip = max(d.dip, sp-v)
		if math.Abs(v-sp) > 0.1 {
			d.settle = time.Duration(i+1) * 5 * time.Second
		}
	}
	return d
}

// TestRestartDipSimPlant measures, on the sim plant with the controller
// settings of each example, what a sensor silence costs (the loop keeps
// its integral, the heater is off for the 30 s after stale_after: 60 s
// for the sim example) and what a restart of edged with the heater off
// for the same 30 s costs. Issue 9: the restart started
// the integral from zero (as did off→auto), a dip of about 0.9 °C and 18
// minutes back within ±0.1 °C, against 0.2 °C for the silence. The
// integral is now saved and restored, and kept across off→auto, and
// neither may cost more than the silence.
func TestRestartDipSimPlant(t *testing.T) {
	for _, tc := range []struct {
		name         string
		setpoint     float64
		gains        Gains
		stale, cycle time.Duration
	}{
		{"sim example", 22.5, Gains{Kp: 0.4, Ki: 0.002}, 30 * time.Second, time.Minute},
		{"pi example", 18, Gains{Kp: 0.3, Ki: 0.001}, time.Minute, 2 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := testOpts()
				o.Setpoint, o.PID, o.StaleAfter, o.Cycle = tc.setpoint, tc.gains, tc.stale, tc.cycle
				r := newSimRig(t, o)
				r.start()
				r.run(4*time.Hour, nil)

				// A sensor silence: the heater is off for the 30 s after stale_after.
				silent := o.StaleAfter + 30*time.Second
				silence := measure(o.Setpoint, r.run(time.Hour, func(at time.Duration) bool { return at >= silent }))

				// A restart: edged stops (heater safe), is down 30 s, starts again.
				r.stop()
				down := r.run(30*time.Second, nil)
				r.start()
				restart := measure(o.Setpoint, append(down, r.run(time.Hour, nil)...))

				// An operator switches the heater off for 30 s and back to auto.
				r.run(time.Hour, nil)
				r.h.command(`{"mode":"off"}`)
				off := r.run(30*time.Second, nil)
				r.h.command(`{"mode":"auto"}`)
				offAuto := measure(o.Setpoint, append(off, r.run(time.Hour, nil)...))

				t.Logf("%v silence: dip %.3f °C, back within ±0.1 °C after %v", silent, silence.dip, silence.settle)
				t.Logf("restart:      dip %.3f °C, back within ±0.1 °C after %v", restart.dip, restart.settle)
				t.Logf("off 30 s, auto: dip %.3f °C, back within ±0.1 °C after %v", offAuto.dip, offAuto.settle)
				if restart.dip > silence.dip+0.005 {
					t.Errorf("a restart dips %.3f °C, more than a sensor silence (%.3f °C)", restart.dip, silence.dip)
				}
				// Back in auto, a relay may have to wait for the next window
				// (one pulse per window, issue 9's relay protection), so
				// off->auto is bounded by a figure, not by the silence: 0.9 °C
				// before the integral was kept, 0.11 and 0.15 °C now.
				if offAuto.dip > 0.2 {
					t.Errorf("off for 30 s and back to auto dips %.3f °C, want at most 0.2 °C", offAuto.dip)
				}
			})
		})
	}
}
