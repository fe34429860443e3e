package sim

import (
	"context"
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
)

// allocRig is a climate sensor with every fault but the slow wait (which
// needs a goroutine to move the clock), a heater with dead time and lag,
// and a light sensor with clouds.
func allocRig(tb testing.TB) (*sensorstest.Clock, *Climate, *Light, *PWM) {
	tb.Helper()
	clk := sensorstest.NewClock(t0)
	s := shareMap{}
	o := DefaultClimateOpts()
	o.DeadTime = time.Minute
	o.Faults = Faults{ErrorRate: 0.1, StuckAfter: 1000 * time.Hour, Seed: 1}
	c, err := NewClimate(clk, s, o)
	if err != nil {
		tb.Fatal(err)
	}
	lo := DefaultLightOpts()
	lo.Faults = o.Faults
	l, err := NewLight(clk, lo)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := NewPWM(clk, s, DefaultHeaterOpts())
	if err != nil {
		tb.Fatal(err)
	}
	return clk, c, l, h
}

func TestSenseDoesNotAllocate(t *testing.T) {
	clk, c, l, h := allocRig(t)
	ctx := context.Background()
	var v [2]float64
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		clk.Advance(time.Second)
		if i%10 == 0 {
			h.Set(float64(i%7) / 7) // keeps commands in the dead-time queue
		}
		c.Sense(ctx, v[:])
		l.Sense(ctx, v[:1])
	})
	if allocs != 0 {
		t.Errorf("Sense allocates %v times per call, want 0", allocs)
	}
}

// BenchmarkClimateSense measures one climate Sense with the plant moving
// one second per call and a heater command every ten.
func BenchmarkClimateSense(b *testing.B) {
	clk, c, _, h := allocRig(b)
	ctx := context.Background()
	var v [2]float64
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		clk.Advance(time.Second)
		if i%10 == 0 {
			h.Set(float64(i%7) / 7)
		}
		c.Sense(ctx, v[:])
	}
}
