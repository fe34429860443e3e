package sim

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

func TestHeaters(t *testing.T) {
	open := map[string]func(sensors.Clock, Sharer) (sensors.Actuator, error){
		"sim_relay": func(c sensors.Clock, s Sharer) (sensors.Actuator, error) { return NewRelay(c, s, DefaultHeaterOpts()) },
		"sim_pwm":   func(c sensors.Clock, s Sharer) (sensors.Actuator, error) { return NewPWM(c, s, DefaultHeaterOpts()) },
	}
	for kind, open := range open {
		t.Run(kind, func(t *testing.T) {
			clk := sensorstest.NewClock(t0)
			s := shareMap{}
			a, err := open(clk, s)
			if err != nil {
				t.Fatal(err)
			}
			if want := kind + "(plant greenhouse)"; a.String() != want {
				t.Errorf("String() = %q, want %q", a.String(), want)
			}
			if a.Level() != 0 {
				t.Errorf("opened at level %v, want safe 0", a.Level())
			}
			if err := a.Set(0.75); err != nil {
				t.Fatal(err)
			}
			want := 0.75
			if kind == "sim_relay" {
				want = 1
			}
			if a.Level() != want {
				t.Errorf("after Set(0.75): level %v, want %v", a.Level(), want)
			}
			for _, bad := range []float64{-0.01, 1.01, math.NaN(), math.Inf(1), math.Inf(-1)} {
				if err := a.Set(bad); err == nil {
					t.Errorf("Set(%v) succeeded; want an error", bad)
				}
				if a.Level() != want {
					t.Errorf("Set(%v) changed the level to %v", bad, a.Level())
				}
			}
			if err := a.Safe(); err != nil || a.Level() != 0 {
				t.Errorf("Safe: %v, level %v, want 0", err, a.Level())
			}
			a.Set(1)
			if err := a.Halt(); err != nil || a.Level() != 0 {
				t.Errorf("Halt: %v, level %v, want 0", err, a.Level())
			}
			if err := a.Set(1); !errors.Is(err, ErrHalted) || a.Level() != 0 {
				t.Errorf("Set after Halt: %v, level %v; want ErrHalted and 0", err, a.Level())
			}
			// The plant was last driven to zero, so it cools back to ambient.
			p := s[PlantKey(DefaultPlant)].(*plant)
			clk.Advance(50 * p.params.Tau)
			if temp, _ := p.read(); !near(temp, p.params.Ambient, 1e-9) {
				t.Errorf("halted heater: plant at %v °C, want ambient %v", temp, p.params.Ambient)
			}
		})
	}
}

func TestRelayThreshold(t *testing.T) {
	r, err := NewRelay(sensorstest.NewClock(t0), shareMap{}, DefaultHeaterOpts())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ level, want float64 }{{0, 0}, {0.49, 0}, {0.5, 1}, {1, 1}, {0.2, 0}} {
		if err := r.Set(tc.level); err != nil {
			t.Fatal(err)
		}
		if r.Level() != tc.want {
			t.Errorf("Set(%v): level %v, want %v", tc.level, r.Level(), tc.want)
		}
	}
}

// TestHeatersAdd checks two heaters in one plant: their powers add, capped
// at full power.
func TestHeatersAdd(t *testing.T) {
	clk := sensorstest.NewClock(t0)
	s := shareMap{}
	o := DefaultClimateOpts()
	o.PlantParams = firstOrder
	c, err := NewClimate(clk, s, o)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := NewPWM(clk, s, DefaultHeaterOpts())
	b, _ := NewPWM(clk, s, DefaultHeaterOpts())
	for _, tc := range []struct{ a, b, want float64 }{{0.25, 0.25, 15}, {0.5, 0, 15}, {0.75, 0.75, 20}, {0, 0, 10}} {
		a.Set(tc.a)
		b.Set(tc.b)
		clk.Advance(50 * time.Hour)
		if temp, _ := c.plant.read(); !near(temp, tc.want, 1e-9) {
			t.Errorf("heaters at %v and %v: %v °C, want %v", tc.a, tc.b, temp, tc.want)
		}
	}
}
