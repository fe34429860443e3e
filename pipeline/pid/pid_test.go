package pid

import (
	"errors"
	"math"
	"testing"
	"time"
)

type step struct {
	sp, in       float64
	dt           time.Duration
	reset        *float64 // Reset(*reset) before this step
	out, integra float64
}

func ptr(v float64) *float64 { return &v }

// TestUpdate checks sequences of updates against values worked out by hand
// in the comments.
func TestUpdate(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	cases := []struct {
		name     string
		g        Gains
		min, max float64
		steps    []step
	}{
		{"proportional", Gains{Kp: 2}, -10, 10, []step{
			{sp: 5, in: 3, dt: time.Second, out: 4},      // 2·2
			{sp: 5, in: 8, dt: time.Second, out: -6},     // 2·-3
			{sp: 5, in: -3, dt: time.Second, out: 10},    // 16 clamped
			{sp: 5, in: 20, dt: time.Second, out: -10},   // -30 clamped
			{sp: 0, in: 0.25, dt: time.Second, out: -.5}, // 2·-0.25
		}},
		{"integral in output units", Gains{Ki: 0.5}, -10, 10, []step{
			{sp: 5, in: 3, dt: time.Second, out: 1, integra: 1},                  // 0.5·2·1
			{sp: 5, in: 3, dt: 2 * time.Second, out: 3, integra: 3},              // + 0.5·2·2
			{sp: 5, in: 6, dt: 500 * time.Millisecond, out: 2.75, integra: 2.75}, // + 0.5·-1·0.5
		}},
		{"derivative on measurement", Gains{Kd: 1}, -10, 10, []step{
			{sp: 0, in: 1, dt: time.Second, out: 0},      // first sample: no rate yet
			{sp: 0, in: 3, dt: 2 * time.Second, out: -1}, // -1·(3-1)/2
			{sp: 9, in: 3, dt: time.Second, out: 0},      // setpoint moved, input did not
			{sp: 9, in: 2, dt: 4 * time.Second, out: 0.25},
		}},
		{"no kick on setpoint step", Gains{Kp: 1, Kd: 5}, -100, 100, []step{
			{sp: 0, in: 0, dt: time.Second, out: 0},
			{sp: 0, in: 0, dt: time.Second, out: 0},
			{sp: 10, in: 0, dt: time.Second, out: 10}, // error-derivative would add 50
			{sp: 10, in: 1, dt: time.Second, out: 4},  // 9 - 5·1
		}},
		{"anti-windup stops at the limit", Gains{Kp: 1, Ki: 1}, 0, 1, []step{
			// p=10, integral would be 10: held at max(0, 1-10) = 0.
			{sp: 10, in: 0, dt: time.Second, out: 1, integra: 0},
			{sp: 10, in: 0, dt: time.Hour, out: 1, integra: 0},
			// Setpoint below input: p=-0.5, integral can only fall to
			// min(0, 0+0.5), so the output leaves saturation at once.
			{sp: 0, in: 0.5, dt: time.Second, out: 0, integra: 0},
		}},
		{"partial integration up to the limit", Gains{Ki: 1}, 0, 1, []step{
			{sp: 0.4, in: 0, dt: time.Second, out: 0.4, integra: 0.4},
			{sp: 1, in: 0, dt: time.Second, out: 1, integra: 1}, // 0.4+1 cut to 1
			{sp: 0, in: 0.25, dt: time.Second, out: 0.75, integra: 0.75},
		}},
		{"integral leaves negative saturation", Gains{Kp: 0.5, Ki: 0.5}, 0, 1, []step{
			// p=-1: integral could fall to -1 but stays at min(0, 0+1)=0.
			{sp: 0, in: 2, dt: time.Second, out: 0, integra: 0},
			{sp: 1, in: 0.5, dt: time.Second, out: 0.5, integra: 0.25}, // 0.25 + 0.25
		}},
		{"dt zero or negative is a new start", Gains{Kp: 1, Ki: 1, Kd: 1}, -100, 100, []step{
			{sp: 2, in: 0, dt: 0, out: 2},
			{sp: 2, in: 1, dt: -time.Second, out: 1}, // no rate over a negative dt
			{sp: 2, in: 1, dt: time.Second, out: 2, integra: 1},
			{sp: 2, in: 5, dt: 0, out: -2, integra: 1}, // p=-3, integral held, no D
			{sp: 2, in: 5, dt: time.Second, out: -5, integra: -2},
		}},
		{"NaN and Inf are ignored", Gains{Kp: 1, Kd: 1}, -100, 100, []step{
			{sp: 1, in: 0, dt: time.Second, out: 1},
			{sp: 1, in: nan, dt: time.Second, out: 1},
			{sp: 1, in: inf, dt: time.Second, out: 1},
			{sp: nan, in: 0, dt: time.Second, out: 1},
			{sp: 1, in: 0.5, dt: time.Second, out: 0}, // rate from the last valid input: 0.5 - 0.5
		}},
		{"bumpless reset", Gains{Kp: 0.5, Ki: 0.1}, 0, 1, []step{
			// p=0.25: integral set to 0.6-0.25 so the output stays 0.6.
			{reset: ptr(0.6), sp: 20, in: 19.5, dt: 5 * time.Second, out: 0.6, integra: 0.35},
			{sp: 20, in: 19.5, dt: 5 * time.Second, out: 0.85, integra: 0.6}, // + 0.1·0.5·5
		}},
		{"reset limited by the integral's range", Gains{Kp: 0.5, Ki: 0.1}, 0, 1, []step{
			// p=0.5 would need integral -0.2; it is held at 0.
			{reset: ptr(0.3), sp: 20, in: 19, dt: 5 * time.Second, out: 0.5, integra: 0},
		}},
		{"reset forgets the derivative", Gains{Kd: 2}, -10, 10, []step{
			{sp: 0, in: 0, dt: time.Second, out: 0},
			{reset: ptr(1), sp: 0, in: 5, dt: time.Second, out: 1, integra: 1},
			{sp: 0, in: 6, dt: time.Second, out: -1, integra: 1}, // 1 - 2·1
		}},
		{"reset clamps its output", Gains{Kp: 1}, 0, 1, []step{
			{reset: ptr(7), sp: 0, in: 0, dt: time.Second, out: 1, integra: 1},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.g, tc.min, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tc.steps {
				if s.reset != nil {
					c.Reset(*s.reset)
				}
				got := c.Update(s.sp, s.in, s.dt)
				if !near(got, s.out) || !near(c.Output(), s.out) {
					t.Errorf("step %d: Update(%v, %v, %v) = %v (Output %v), want %v", i, s.sp, s.in, s.dt, got, c.Output(), s.out)
				}
				if !near(c.Integral(), s.integra) {
					t.Errorf("step %d: integral = %v, want %v", i, c.Integral(), s.integra)
				}
			}
		})
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestNewRejects(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		name     string
		g        Gains
		min, max float64
		limits   bool
	}{
		{"min equals max", Gains{Kp: 1}, 1, 1, true},
		{"min above max", Gains{Kp: 1}, 1, 0, true},
		{"NaN limit", Gains{Kp: 1}, nan, 1, true},
		{"infinite limit", Gains{Kp: 1}, 0, math.Inf(1), true},
		{"NaN gain", Gains{Kp: nan}, 0, 1, false},
		{"infinite gain", Gains{Kd: math.Inf(-1)}, 0, 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.g, tc.min, tc.max)
			if err == nil {
				t.Fatal("New succeeded")
			}
			if errors.Is(err, ErrLimits) != tc.limits {
				t.Errorf("errors.Is(%v, ErrLimits) = %v, want %v", err, !tc.limits, tc.limits)
			}
		})
	}
	c, err := New(Gains{Kp: 1}, 0.2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if c.Output() != 0.2 {
		t.Errorf("initial output = %v, want min 0.2", c.Output())
	}
}

// firstOrder is a thermal plant: T relaxes to ambient + gain·u with time
// constant tau, integrated exactly for a constant u over each step.
type firstOrder struct {
	temp, ambient, gain float64
	tau                 time.Duration
}

func (p *firstOrder) step(u float64, dt time.Duration) {
	target := p.ambient + p.gain*u
	p.temp = target + (p.temp-target)*math.Exp(-dt.Seconds()/p.tau.Seconds())
}

// TestClosedLoop drives a first-order plant from cold to a setpoint that
// needs two thirds of the heater, starting in saturation: without
// anti-windup the integral gathered while saturated overshoots by 1.9 °C.
func TestClosedLoop(t *testing.T) {
	cases := []struct {
		name         string
		g            Gains
		dt           time.Duration
		maxOvershoot float64
	}{
		// Ki = Kp/tau cancels the plant's pole (IMC tuning).
		{"PI", Gains{Kp: 0.4, Ki: 0.4 / 600}, 5 * time.Second, 0.15},
		{"PID", Gains{Kp: 0.4, Ki: 0.4 / 600, Kd: 2}, 5 * time.Second, 0.15},
		{"PI slow samples", Gains{Kp: 0.4, Ki: 0.4 / 600}, 30 * time.Second, 0.3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &firstOrder{temp: 12, ambient: 12, gain: 15, tau: 10 * time.Minute}
			c, err := New(tc.g, 0, 1)
			if err != nil {
				t.Fatal(err)
			}
			const sp = 22.0
			peak := p.temp
			var dt time.Duration // first sample: no previous one
			for elapsed := time.Duration(0); elapsed < 2*time.Hour; elapsed += tc.dt {
				u := c.Update(sp, p.temp, dt)
				if u < 0 || u > 1 || math.IsNaN(u) {
					t.Fatalf("at %v: output %v outside 0..1", elapsed, u)
				}
				p.step(u, tc.dt)
				peak = max(peak, p.temp)
				dt = tc.dt
			}
			t.Logf("overshoot %.4f °C, final %.4f °C", peak-sp, p.temp)
			if over := peak - sp; over > tc.maxOvershoot {
				t.Errorf("overshoot %.3f °C, want at most %.2f", over, tc.maxOvershoot)
			}
			if math.Abs(p.temp-sp) > 0.02 {
				t.Errorf("after 2h the plant is at %.3f °C, want %.1f ± 0.02", p.temp, sp)
			}
			// At rest the integral carries the whole output: 10/15.
			if math.Abs(c.Integral()-10.0/15) > 0.01 {
				t.Errorf("integral %.4f, want about %.4f", c.Integral(), 10.0/15)
			}
		})
	}
}

// TestUpdateDoesNotAllocate pins the benchmark's figure as a rule: the
// control loop runs for months on a Pi.
func TestUpdateDoesNotAllocate(t *testing.T) {
	c, err := New(Gains{Kp: 0.4, Ki: 0.01, Kd: 1}, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	x := 20.0
	if n := testing.AllocsPerRun(100, func() {
		x += 0.01
		c.Update(22, x, time.Second)
	}); n != 0 {
		t.Errorf("Update allocates %v times per call", n)
	}
}

func BenchmarkUpdate(b *testing.B) {
	c, err := New(Gains{Kp: 0.4, Ki: 0.01, Kd: 1}, 0, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	x := 20.0
	for i := 0; b.Loop(); i++ {
		x += float64(i&7-3) * 0.01
		c.Update(22, x, 5*time.Second)
	}
}

// FuzzUpdate checks that no input sequence makes the output leave its
// limits or become NaN.
func FuzzUpdate(f *testing.F) {
	f.Add(0.4, 0.01, 1.0, 22.0, 20.0, int64(time.Second), 0.5, 21.0)
	f.Add(1e300, 1e300, 1e300, 1e300, -1e300, int64(1), -3.0, 1e-300)
	f.Add(-2.0, 0.0, 0.0, 0.0, 5.0, int64(-1), 2.0, math.Inf(1))
	f.Fuzz(func(t *testing.T, kp, ki, kd, sp, in float64, dt int64, reset, in2 float64) {
		c, err := New(Gains{kp, ki, kd}, 0, 1)
		if err != nil {
			return
		}
		if dt%2 == 0 {
			// The optional terms, with values the config would allow
			// and some it would not.
			c.DerivativeFilter = time.Duration(dt) % time.Hour
			c.SetpointRamp = math.Abs(reset)
			c.Deadband = math.Abs(in2 - in)
		}
		check := func(v float64) {
			if math.IsNaN(v) || v < 0 || v > 1 || math.IsNaN(c.Integral()) || c.Integral() < 0 || c.Integral() > 1 {
				t.Fatalf("output %v, integral %v: outside 0..1", v, c.Integral())
			}
		}
		check(c.Update(sp, in, time.Duration(dt)))
		check(c.Update(sp, in2, time.Duration(dt)))
		c.Reset(reset)
		check(c.Output())
		check(c.Update(sp, in2, time.Duration(dt)))
		check(c.Update(in, sp, time.Duration(dt)))
		c.Restart()
		check(c.Update(sp, in, time.Duration(dt)))
		c.SetIntegral(in2)
		check(c.Update(sp, in2, time.Duration(dt)))
	})
}

// TestSetpointRamp checks the effective setpoint against values worked
// out by hand: Kp 1 and no other term, so the output is the effective
// setpoint minus the input.
func TestSetpointRamp(t *testing.T) {
	c, err := New(Gains{Kp: 1}, -100, 100)
	if err != nil {
		t.Fatal(err)
	}
	c.SetpointRamp = 0.5 // units per second
	steps := []struct {
		sp, in  float64
		dt      time.Duration
		restart bool // Restart before this step
		out     float64
	}{
		{sp: 30, in: 20, dt: 0, out: 0},                         // starts from the measurement
		{sp: 30, in: 20, dt: 4 * time.Second, out: 2},           // 20 + 0.5·4
		{sp: 30, in: 20, dt: 0, out: 2},                         // dt 0 moves nothing
		{sp: 30, in: 21, dt: 10 * time.Second, out: 6},          // 27 - 21
		{sp: 30, in: 21, dt: 10 * time.Second, out: 9},          // reached 30, held there
		{sp: 29.8, in: 21, dt: time.Second, out: 8.8},           // a step within 0.5·1: at once
		{sp: 10, in: 21, dt: 2 * time.Second, out: 7.8},         // 29.8 - 1 = 28.8
		{sp: 10, in: 21, dt: -time.Second, out: 7.8},            // a negative dt moves nothing
		{sp: 10, in: 18, dt: 0, restart: true, out: 0},          // Restart: from the measurement again
		{sp: 10, in: 18, dt: time.Minute, out: -8},              // 18 - 30 passes 10: held at 10
		{sp: math.NaN(), in: 18, dt: time.Minute, out: -8},      // ignored
		{sp: 10, in: 9.5, dt: 500 * time.Millisecond, out: 0.5}, // the ramp stays at 10
	}
	for i, s := range steps {
		if s.restart {
			c.Restart()
		}
		if got := c.Update(s.sp, s.in, s.dt); !near(got, s.out) {
			t.Errorf("step %d: Update(%v, %v, %v) = %v, want %v", i, s.sp, s.in, s.dt, got, s.out)
		}
	}

	// Reset (bumpless from manual) restarts the ramp too.
	c.Reset(0)
	if got := c.Update(25, 15, time.Second); !near(got, 0) {
		t.Errorf("first update after Reset(0) = %v, want 0 (ramp from the measurement)", got)
	}
	if got := c.Update(25, 15, 2*time.Second); !near(got, 1) {
		t.Errorf("2 s later = %v, want 1", got)
	}
}

// TestDeadband: within ±Deadband the error counts as zero for P and I;
// outside it counts in full. The derivative still acts.
func TestDeadband(t *testing.T) {
	c, err := New(Gains{Kp: 1, Ki: 0.1}, -100, 100)
	if err != nil {
		t.Fatal(err)
	}
	c.Deadband = 0.2
	steps := []struct {
		sp, in, out, integral float64
	}{
		{sp: 20, in: 19.9, out: 0, integral: 0},          // inside
		{sp: 20, in: 20.2, out: 0, integral: 0},          // on the edge counts as inside
		{sp: 20, in: 19.5, out: 0.55, integral: 0.05},    // e 0.5: P 0.5, I 0.1·0.5·1
		{sp: 20, in: 20.1, out: 0.05, integral: 0.05},    // inside: the integral holds
		{sp: 20, in: 21, out: -1.05, integral: -0.05},    // e -1: P -1, I 0.05 - 0.1
		{sp: 20, in: 19.81, out: -0.05, integral: -0.05}, // inside again
	}
	for i, s := range steps {
		got := c.Update(s.sp, s.in, time.Second)
		if !near(got, s.out) || !near(c.Integral(), s.integral) {
			t.Errorf("step %d: Update(%v, %v) = %v, integral %v; want %v, %v", i, s.sp, s.in, got, c.Integral(), s.out, s.integral)
		}
	}
	c2, _ := New(Gains{Kd: 1}, -100, 100)
	c2.Deadband = 1
	c2.Update(20, 20, time.Second)
	if got := c2.Update(20, 20.5, time.Second); !near(got, -0.5) {
		t.Errorf("derivative inside the deadband = %v, want -0.5", got)
	}
}

// TestDerivativeFilter checks the filtered derivative against the
// first-order step response, and that a new start empties the filter.
func TestDerivativeFilter(t *testing.T) {
	c, err := New(Gains{Kd: 10}, -100, 100)
	if err != nil {
		t.Fatal(err)
	}
	c.DerivativeFilter = 10 * time.Second
	c.Update(0, 0, 0)
	// A ramp of 0.1 units/s: the raw rate is 0.1 at once, the filtered
	// rate reaches 0.1·(1-e^(-t/10)).
	for i := 1; i <= 30; i++ {
		got := c.Update(0, 0.1*float64(i), time.Second)
		want := -10 * 0.1 * (1 - math.Exp(-float64(i)/10))
		if !near(got, want) {
			t.Fatalf("after %d s: output %v, want %v", i, got, want)
		}
	}
	// dt 0 is a new start: no derivative term, the filter holds.
	held := 0.1 * (1 - math.Exp(-3))
	if got := c.Update(0, 5, 0); got != 0 {
		t.Errorf("dt 0: output %v, want 0", got)
	}
	if got, want := c.Update(0, 5.1, time.Second), -10*(held+(0.1-held)*(1-math.Exp(-0.1))); !near(got, want) {
		t.Errorf("first step after a new start: output %v, want %v", got, want)
	}
	// Restart empties the filter.
	c.Restart()
	c.Update(0, 7, 0)
	if got, want := c.Update(0, 7.1, time.Second), -10*0.1*(1-math.Exp(-0.1)); !near(got, want) {
		t.Errorf("first step after Restart: output %v, want %v", got, want)
	}

	// Unfiltered (0), the derivative is the raw rate.
	u, _ := New(Gains{Kd: 10}, -100, 100)
	u.Update(0, 0, 0)
	if got := u.Update(0, 0.1, time.Second); !near(got, -1) {
		t.Errorf("unfiltered: %v, want -1", got)
	}
}

// TestWarmStart: SetIntegral sets the integral within the limits and
// wins over a pending Reset; Restart keeps the integral, so the output
// comes back where it was, and restarts the derivative.
func TestWarmStart(t *testing.T) {
	c, err := New(Gains{Kp: 0.5, Ki: 0.1, Kd: 2}, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	c.SetIntegral(0.7)
	if got := c.Update(20, 20, 0); !near(got, 0.7) {
		t.Errorf("warm start: output %v, want the integral 0.7", got)
	}
	c.SetIntegral(3)
	if c.Integral() != 1 {
		t.Errorf("SetIntegral(3): integral %v, want the limit 1", c.Integral())
	}
	c.SetIntegral(math.NaN())
	if c.Integral() != 1 {
		t.Errorf("SetIntegral(NaN) changed the integral to %v", c.Integral())
	}
	c.SetIntegral(0.6)
	c.Reset(0) // would make the next output 0
	c.SetIntegral(0.4)
	if got := c.Update(20, 20, time.Second); !near(got, 0.4) {
		t.Errorf("SetIntegral after Reset: output %v, want 0.4", got)
	}
	c.Update(20, 20, time.Second)
	c.Restart()
	// The input jumped while the loop was off: no derivative kick.
	if got := c.Update(20, 19, time.Second); !near(got, 0.5+0.4+0.1) {
		t.Errorf("after Restart: output %v, want P 0.5 + integral 0.4 + 0.1", got)
	}
}
