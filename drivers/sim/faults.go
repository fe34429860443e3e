package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/edged/edged/sensors"
)

// ErrInjected is the error of a Sense that Faults.ErrorRate made fail.
var ErrInjected = errors.New("sim: injected sensor fault")

// ErrHalted is returned by a device used after Halt.
var ErrHalted = errors.New("sim: device halted")

// faulter applies Faults to one sensor. Everything it needs is made at
// open, so Sense does not allocate.
type faulter struct {
	opts     Faults
	clk      sensors.Clock
	opened   time.Time
	rng      *rand.Rand
	timer    sensors.Timer // only when opts.Slow > 0
	injected error         // ErrInjected wrapped with the device name

	have bool       // last holds a value
	last [2]float64 // the latest values returned, for stuck_after
}

func newFaulter(clk sensors.Clock, name string, f Faults) *faulter {
	ft := &faulter{
		opts:     f,
		clk:      clk,
		opened:   clk.Now(),
		rng:      rand.New(rand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15)),
		injected: fmt.Errorf("%s: %w", name, ErrInjected),
	}
	if f.Slow > 0 {
		ft.timer = clk.NewTimer(f.Slow)
		ft.timer.Stop()
	}
	return ft
}

// before runs the faults that come before a measurement: the slow wait,
// then the random failure.
func (f *faulter) before(ctx context.Context) error {
	if f.opts.Slow > 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("sim: slow sense: %w", err)
		}
		f.timer.Reset(f.opts.Slow)
		select {
		case <-f.timer.C():
		case <-ctx.Done():
			f.timer.Stop()
			return fmt.Errorf("sim: slow sense: %w", ctx.Err())
		}
	}
	if f.opts.ErrorRate > 0 && f.rng.Float64() < f.opts.ErrorRate {
		return f.injected
	}
	return nil
}

// stuck reports whether the value is frozen; if so it has copied the
// frozen value into dst.
func (f *faulter) stuck(dst []float64) bool {
	if f.opts.StuckAfter <= 0 || !f.have || f.clk.Now().Sub(f.opened) < f.opts.StuckAfter {
		return false
	}
	copy(dst, f.last[:])
	return true
}

// remember keeps the values just measured, for stuck.
func (f *faulter) remember(v []float64) {
	copy(f.last[:], v)
	f.have = true
}

// halt releases the timer.
func (f *faulter) halt() {
	if f.timer != nil {
		f.timer.Stop()
	}
}
