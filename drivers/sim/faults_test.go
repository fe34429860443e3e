package sim

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
)

func TestFaultErrorRate(t *testing.T) {
	const n = 10000
	run := func(rate float64, seed uint64) []bool {
		o := DefaultLightOpts()
		o.Faults = Faults{ErrorRate: rate, Seed: seed}
		l, err := NewLight(sensorstest.NewClock(day), o)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]bool, n)
		var v [1]float64
		for i := range out {
			err := l.Sense(context.Background(), v[:])
			if err != nil && !errors.Is(err, ErrInjected) {
				t.Fatalf("sample %d: %v, want ErrInjected", i, err)
			}
			out[i] = err != nil
		}
		return out
	}
	count := func(s []bool) (k int) {
		for _, f := range s {
			if f {
				k++
			}
		}
		return k
	}
	for _, rate := range []float64{0, 0.01, 0.25, 0.5, 1} {
		got := count(run(rate, 42))
		// Four standard deviations of the binomial: a fixed seed passes or
		// fails for ever, and a correct generator passes.
		sd := math.Sqrt(n * rate * (1 - rate))
		if math.Abs(float64(got)-n*rate) > 4*sd {
			t.Errorf("rate %v: %d of %d samples failed, want %v ± %.0f", rate, got, n, n*rate, 4*sd)
		}
	}
	a, b, c := run(0.3, 7), run(0.3, 7), run(0.3, 8)
	same, differ := true, false
	for i := range a {
		same = same && a[i] == b[i]
		differ = differ || a[i] != c[i]
	}
	if !same {
		t.Error("the same seed gave different failures")
	}
	if !differ {
		t.Error("seeds 7 and 8 gave the same failures")
	}
}

func TestFaultStuck(t *testing.T) {
	t.Run("light", func(t *testing.T) {
		o := DefaultLightOpts()
		o.Noise = 0.5
		o.Faults.StuckAfter = time.Hour
		clk := sensorstest.NewClock(at("10:00"))
		l, err := NewLight(clk, o)
		if err != nil {
			t.Fatal(err)
		}
		senseLight(t, l, clk, at("10:30"))
		last := senseLight(t, l, clk, at("10:59"))
		for _, hhmm := range []string{"11:00", "11:01", "13:00", "23:00"} {
			if v := senseLight(t, l, clk, at(hhmm)); v != last {
				t.Errorf("%s: %v lx, want stuck at %v", hhmm, v, last)
			}
		}
	})
	t.Run("climate", func(t *testing.T) {
		o := DefaultClimateOpts()
		o.Faults.StuckAfter = 10 * time.Minute
		clk := sensorstest.NewClock(t0)
		s := shareMap{}
		c, err := NewClimate(clk, s, o)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := NewRelay(clk, s, DefaultHeaterOpts())
		h.Set(1)
		r := &rig{clk: &jumpClock{Clock: clk}, climate: c}
		clk.Advance(5 * time.Minute)
		t5, h5 := r.read(t)
		if t5 <= o.Ambient {
			t.Fatalf("%v °C: the heater did nothing", t5)
		}
		clk.Advance(20 * time.Minute)
		if temp, rh := r.read(t); temp != t5 || rh != h5 {
			t.Errorf("after stuck_after: %v °C %v %%, want stuck at %v °C %v %%", temp, rh, t5, h5)
		}
	})
	t.Run("no value before", func(t *testing.T) {
		o := DefaultLightOpts()
		o.Faults.StuckAfter = time.Minute
		clk := sensorstest.NewClock(at("08:00"))
		l, _ := NewLight(clk, o)
		first := senseLight(t, l, clk, at("12:00"))
		if first == 0 {
			t.Fatal("no light at noon")
		}
		if v := senseLight(t, l, clk, at("16:00")); v != first {
			t.Errorf("16:00: %v lx, want stuck at the first value %v", v, first)
		}
	})
}

// senseAsync runs Sense in a goroutine and waits until it waits on the
// clock. The caller must receive from done before the test ends.
func senseAsync(t *testing.T, ctx context.Context, l *Light, clk *sensorstest.Clock) (done <-chan error, v *[1]float64) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	ch := make(chan error, 1)
	v = new([1]float64)
	go func() { ch <- l.Sense(ctx, v[:]) }()
	if err := clk.WaitTimers(1, waitTimeout); err != nil {
		cancel()
		<-ch
		t.Fatal(err)
	}
	return ch, v
}

func TestFaultSlow(t *testing.T) {
	o := DefaultLightOpts()
	o.Noise = 0
	o.Faults.Slow = 2 * time.Second
	clk := sensorstest.NewClock(at("09:00"))
	l, err := NewLight(clk, o)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("completes", func(t *testing.T) {
		done, v := senseAsync(t, context.Background(), l, clk)
		select {
		case err := <-done:
			t.Fatalf("Sense returned %v before the clock moved", err)
		default:
		}
		clk.Advance(2 * time.Second)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if want := l.lux(at("09:00").Add(2 * time.Second)); v[0] != want {
			t.Errorf("%v lx, want %v, the light when the wait ended", v[0], want)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done, _ := senseAsync(t, ctx, l, clk)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled Sense: %v, want context.Canceled", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		// The fake clock never moves, so only the context can end the wait.
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		if err := l.Sense(ctx, make([]float64, 1)); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Sense past its deadline: %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("already done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := l.Sense(ctx, make([]float64, 1)); !errors.Is(err, context.Canceled) {
			t.Errorf("Sense with a cancelled context: %v, want context.Canceled", err)
		}
	})
	t.Run("after timeout", func(t *testing.T) {
		// A wait cut short must not leave a stale tick that ends the next
		// wait early.
		clk.Advance(time.Hour)
		done, _ := senseAsync(t, context.Background(), l, clk)
		select {
		case err := <-done:
			t.Fatalf("Sense returned %v before the clock moved", err)
		default:
		}
		clk.Advance(2 * time.Second)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
