package sim

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// rig is one plant with a climate sensor and a proportional heater.
type rig struct {
	clk     *jumpClock
	climate *Climate
	heater  *PWM
}

func newRig(t *testing.T, params PlantParams) *rig {
	t.Helper()
	clk := &jumpClock{Clock: sensorstest.NewClock(t0)}
	s := shareMap{}
	o := DefaultClimateOpts()
	o.PlantParams = params
	c, err := NewClimate(clk, s, o)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewPWM(clk, s, DefaultHeaterOpts())
	if err != nil {
		t.Fatal(err)
	}
	return &rig{clk: clk, climate: c, heater: h}
}

func (r *rig) set(t *testing.T, level float64) {
	t.Helper()
	if err := r.heater.Set(level); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) read(t *testing.T) (temp, rh float64) {
	t.Helper()
	var v [2]float64
	if err := r.climate.Sense(context.Background(), v[:]); err != nil {
		t.Fatal(err)
	}
	return v[0], v[1]
}

// firstOrder is a plant with no heater lag or dead time: a pure first-order
// system, whose step response is known by heart.
var firstOrder = PlantParams{Ambient: 10, Tau: 10 * time.Minute, HeaterGain: 10, BaseHumidity: 60}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestPlantStepResponse(t *testing.T) {
	r := newRig(t, firstOrder)
	if temp, rh := r.read(t); temp != 10 || !near(rh, 60, 1e-12) {
		t.Fatalf("at rest: %v °C %v %%, want ambient 10 °C and base 60 %%", temp, rh)
	}
	r.set(t, 1)
	r.clk.Advance(firstOrder.Tau)
	temp, rh := r.read(t)
	if want := 10 + 10*(1-math.Exp(-1)); !near(temp, want, 1e-9) {
		t.Errorf("one tau after heater on: %v °C, want %v (63%% of the way)", temp, want)
	}
	if rh >= 60 {
		t.Errorf("warmer air has %v %% RH, want below the base 60 %%", rh)
	}
	r.clk.Advance(30 * firstOrder.Tau)
	if temp, _ := r.read(t); !near(temp, 20, 1e-9) {
		t.Errorf("steady state with heater on: %v °C, want ambient+gain 20", temp)
	}
	r.set(t, 0.5)
	r.clk.Advance(30 * firstOrder.Tau)
	if temp, _ := r.read(t); !near(temp, 15, 1e-9) {
		t.Errorf("steady state at half power: %v °C, want 15", temp)
	}
	r.set(t, 0)
	r.clk.Advance(firstOrder.Tau)
	if temp, _ := r.read(t); !near(temp, 10+5*math.Exp(-1), 1e-9) {
		t.Errorf("one tau after heater off: %v °C, want %v", temp, 10+5*math.Exp(-1))
	}
	r.clk.Advance(30 * firstOrder.Tau)
	if temp, rh := r.read(t); !near(temp, 10, 1e-9) || !near(rh, 60, 1e-6) {
		t.Errorf("cooled down: %v °C %v %%, want back at 10 °C and 60 %%", temp, rh)
	}
}

// TestPlantStepIndependent checks that the exact step makes the result
// independent of how often the plant is read, through heater changes, the
// heater lag and the dead time.
func TestPlantStepIndependent(t *testing.T) {
	params := PlantParams{Ambient: 5, Tau: 7 * time.Minute, HeaterGain: 20, HeaterLag: 40 * time.Second, DeadTime: 45 * time.Second, BaseHumidity: 80}
	once, often := newRig(t, params), newRig(t, params)
	script := []struct {
		wait  time.Duration
		level float64
	}{{0, 0.7}, {200 * time.Second, 0.2}, {90 * time.Second, 1}, {310 * time.Second, 0}}
	for _, s := range script {
		once.clk.Advance(s.wait)
		for range int(s.wait / time.Second) {
			often.clk.Advance(time.Second)
			often.read(t)
		}
		once.set(t, s.level)
		often.set(t, s.level)
	}
	once.clk.Advance(10 * time.Minute)
	for range 600 {
		often.clk.Advance(time.Second)
		often.read(t)
	}
	a, ah := once.read(t)
	b, bh := often.read(t)
	if !near(a, b, 1e-9) || !near(ah, bh, 1e-9) {
		t.Errorf("one 10 min step: %v °C %v %%; 600 steps of 1 s: %v °C %v %%", a, ah, b, bh)
	}
	if a <= params.Ambient {
		t.Errorf("%v °C: the heater did nothing", a)
	}
}

// TestPlantMatchesODE integrates the model's differential equations with
// small Runge-Kutta steps and compares; the lag equal to tau checks the
// a == b limit of the closed form.
func TestPlantMatchesODE(t *testing.T) {
	for _, lag := range []time.Duration{10 * time.Second, 5 * time.Minute, 10 * time.Minute, 10*time.Minute + time.Nanosecond, 40 * time.Minute} {
		params := PlantParams{Ambient: 10, Tau: 10 * time.Minute, HeaterGain: 12, HeaterLag: lag, BaseHumidity: 50}
		r := newRig(t, params)
		r.set(t, 0.8)
		a, b, g := 1/params.Tau.Seconds(), 1/lag.Seconds(), params.HeaterGain
		f := func(temp, h float64) (float64, float64) {
			return a * (params.Ambient + g*h - temp), b * (0.8 - h)
		}
		temp, h := params.Ambient, 0.0
		const dt = 0.05
		for range int(1200 / dt) {
			k1t, k1h := f(temp, h)
			k2t, k2h := f(temp+dt/2*k1t, h+dt/2*k1h)
			k3t, k3h := f(temp+dt/2*k2t, h+dt/2*k2h)
			k4t, k4h := f(temp+dt*k3t, h+dt*k3h)
			temp += dt / 6 * (k1t + 2*k2t + 2*k3t + k4t)
			h += dt / 6 * (k1h + 2*k2h + 2*k3h + k4h)
		}
		r.clk.Advance(20 * time.Minute)
		if got, _ := r.read(t); !near(got, temp, 1e-6) {
			t.Errorf("lag %v: %v °C after 20 min, the ODE gives %v", lag, got, temp)
		}
	}
}

func TestPlantDeadTime(t *testing.T) {
	params := firstOrder
	params.DeadTime = time.Minute
	r := newRig(t, params)
	r.set(t, 1)
	r.clk.Advance(59 * time.Second)
	if temp, _ := r.read(t); temp != 10 {
		t.Errorf("within the dead time: %v °C, want still ambient 10", temp)
	}
	r.clk.Advance(time.Second + params.Tau)
	if temp, _ := r.read(t); !near(temp, 10+10*(1-math.Exp(-1)), 1e-9) {
		t.Errorf("one tau after the dead time: %v °C, want %v", temp, 10+10*(1-math.Exp(-1)))
	}
}

// TestPlantDeadTimeManyCommands sends more commands within one dead time
// than the queue holds; they coalesce instead of growing it.
func TestPlantDeadTimeManyCommands(t *testing.T) {
	params := firstOrder
	params.DeadTime = 10 * time.Minute
	r := newRig(t, params)
	for i := range 5000 {
		r.clk.Advance(100 * time.Millisecond)
		r.set(t, float64(i%2))
	}
	if n := len(r.climate.plant.pending); n > maxPending || cap(r.climate.plant.pending) != maxPending {
		t.Errorf("pending queue len %d cap %d, want at most %d without growing", n, cap(r.climate.plant.pending), maxPending)
	}
	r.set(t, 1)
	r.clk.Advance(50 * params.Tau)
	if temp, _ := r.read(t); !near(temp, 20, 1e-6) {
		t.Errorf("last command on: %v °C at steady state, want 20", temp)
	}
}

func TestPlantClockJumps(t *testing.T) {
	params := firstOrder
	params.DeadTime = time.Minute
	r := newRig(t, params)
	r.set(t, 1)
	// The clock goes back an hour (NTP): the command still lands one dead
	// time after it was given, not an hour later.
	r.clk.Jump(-time.Hour)
	r.read(t)
	r.clk.Advance(time.Minute + params.Tau)
	if temp, _ := r.read(t); !near(temp, 10+10*(1-math.Exp(-1)), 1e-9) {
		t.Errorf("after a backward jump: %v °C, want %v", temp, 10+10*(1-math.Exp(-1)))
	}
	// Ten years forward: steady state, finite.
	r.clk.Advance(10 * 365 * 24 * time.Hour)
	if temp, rh := r.read(t); !near(temp, 20, 1e-9) || math.IsNaN(rh) {
		t.Errorf("after a forward jump: %v °C %v %%, want 20 °C", temp, rh)
	}
}

func TestHumidityClamped(t *testing.T) {
	params := PlantParams{Ambient: 20, Tau: time.Minute, HeaterGain: 100, BaseHumidity: 100}
	r := newRig(t, params)
	if _, rh := r.read(t); rh != 100 {
		t.Errorf("saturated air: %v %%, want 100", rh)
	}
	r.set(t, 1)
	r.clk.Advance(time.Hour)
	if temp, rh := r.read(t); rh < 0 || rh >= 10 {
		t.Errorf("air heated to %v °C: %v %% RH, want a few %%", temp, rh)
	}
	// Colder than the base: the plant is put below ambient by hand, as a
	// cold start could; RH would pass 100 and is clamped.
	r.climate.plant.temp = 10
	r.climate.plant.heat = 0
	r.heater.Set(0)
	if _, rh := r.read(t); rh != 100 {
		t.Errorf("air below its dew point: %v %%, want clamped to 100", rh)
	}
}

func TestOpenOrderIndependent(t *testing.T) {
	params := PlantParams{Ambient: 3, Tau: 5 * time.Minute, HeaterGain: 25, HeaterLag: 20 * time.Second, DeadTime: 10 * time.Second, BaseHumidity: 75}
	run := func(heaterFirst bool) (float64, float64) {
		clk := sensorstest.NewClock(t0)
		s := shareMap{}
		o := DefaultClimateOpts()
		o.Plant, o.PlantParams = "shed", params
		ho := HeaterOpts{Plant: "shed"}
		var c *Climate
		var h *Relay
		var err error
		if heaterFirst {
			if h, err = NewRelay(clk, s, ho); err == nil {
				c, err = NewClimate(clk, s, o)
			}
		} else {
			if c, err = NewClimate(clk, s, o); err == nil {
				h, err = NewRelay(clk, s, ho)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Set(1); err != nil {
			t.Fatal(err)
		}
		clk.Advance(7 * time.Minute)
		var v [2]float64
		if err := c.Sense(context.Background(), v[:]); err != nil {
			t.Fatal(err)
		}
		return v[0], v[1]
	}
	at, ah := run(false)
	bt, bh := run(true)
	if at != bt || ah != bh {
		t.Errorf("climate first: %v °C %v %%; relay first: %v °C %v %%", at, ah, bt, bh)
	}
	if at <= params.Ambient+5 {
		t.Errorf("%v °C: the plant's own physics were not used", at)
	}
}

func TestClimatePhysicsConflict(t *testing.T) {
	clk := sensorstest.NewClock(t0)
	s := shareMap{}
	a, err := NewClimate(clk, s, DefaultClimateOpts())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewClimate(clk, s, DefaultClimateOpts()); err != nil {
		t.Errorf("second sensor with the same physics: %v", err)
	}
	other := DefaultClimateOpts()
	other.Tau = time.Hour
	if _, err := NewClimate(clk, s, other); err == nil {
		t.Error("second sensor with a different tau opened; want an error")
	}
	elsewhere := other
	elsewhere.Plant = "shed"
	if _, err := NewClimate(clk, s, elsewhere); err != nil {
		t.Errorf("different physics in another plant: %v", err)
	}
	// A reload halts the old sensors first; then new physics are fine.
	a.Halt()
	a.Halt() // a second Halt must not release the claim twice
	b, _ := NewClimate(clk, s, DefaultClimateOpts())
	if _, err := NewClimate(clk, s, other); err == nil {
		t.Error("different physics while a sensor still holds them; want an error")
	}
	b.Halt()
	// The sensor opened second above still holds the plant.
	if _, err := NewClimate(clk, s, other); err == nil {
		t.Error("different physics while the second sensor still holds them; want an error")
	}
}

// TestClimateBias: a biased sensor reads the plant's temperature plus its
// bias; the plant, and a second sensor in it, are not affected.
func TestClimateBias(t *testing.T) {
	clk := sensorstest.NewClock(t0)
	s := shareMap{}
	o := DefaultClimateOpts()
	o.Bias = 0.2
	biased, err := NewClimate(clk, s, o)
	if err != nil {
		t.Fatal(err)
	}
	exact, err := NewClimate(clk, s, DefaultClimateOpts())
	if err != nil {
		t.Fatalf("a second sensor with another bias in the same plant: %v", err)
	}
	a, b := make([]float64, 2), make([]float64, 2)
	if err := biased.Sense(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if err := exact.Sense(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if math.Abs(a[0]-b[0]-0.2) > 1e-12 || a[1] != b[1] || b[0] != o.Ambient {
		t.Errorf("biased %v, exact %v; want the temperature 0.2 apart at %v, humidity equal", a, b, o.Ambient)
	}
}

func TestSharedKeyWrongType(t *testing.T) {
	s := shareMap{PlantKey(DefaultPlant): "not a plant"}
	if _, err := NewRelay(sensorstest.NewClock(t0), s, DefaultHeaterOpts()); err == nil {
		t.Error("opened a relay on a key that holds a string; want an error")
	}
	failing := shareMap{}
	if _, err := NewClimate(nil, failing, DefaultClimateOpts()); err == nil {
		t.Error("opened without a clock; want an error")
	}
}

func TestClimateSenseErrors(t *testing.T) {
	r := newRig(t, firstOrder)
	if err := r.climate.Sense(context.Background(), make([]float64, 1)); err == nil {
		t.Error("Sense into one element; want an error")
	}
	if got := r.climate.String(); got != "sim_climate(plant greenhouse)" {
		t.Errorf("String() = %q", got)
	}
	if q := r.climate.Quantities(); len(q) != 2 || q[0] != sensors.Temperature || q[1] != sensors.Humidity {
		t.Errorf("Quantities() = %v", q)
	}
	r.climate.Halt()
	if err := r.climate.Sense(context.Background(), make([]float64, 2)); !errors.Is(err, ErrHalted) {
		t.Errorf("Sense after Halt: %v, want ErrHalted", err)
	}
}
