// Package pid is the math of a PID controller: gains, output limits,
// derivative on measurement with a low-pass filter, setpoint ramp,
// deadband, integral anti-windup, bumpless transfer and warm start.
//
// It is pure: no clock, no I/O, no goroutines, no allocation per Update.
// Binding a controller to a sensor, an actuator and time is the job of
// pipeline/control.
package pid

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Gains are the PID gains: Kp in output units per input unit, Ki per input
// unit and second, Kd per input unit per second of rate.
type Gains struct {
	Kp, Ki, Kd float64
}

// Controller is a PID controller with a clamped output.
//
// The integral is kept in output units (the sum of Ki·e·dt), so changing
// Ki between updates does not make the output jump. The zero value has no
// gains and limits 0..0; use New.
//
// A Controller is not safe for concurrent use.
type Controller struct {
	// Gains may be changed between updates.
	Gains Gains
	// Min and Max bound the output (and the integral term on its own).
	Min, Max float64
	// DerivativeFilter is the time constant of a first-order low-pass
	// filter on the measurement's rate, which the derivative term acts on:
	// without it Kd amplifies sensor noise by Kd/dt. 0 leaves the rate
	// unfiltered.
	DerivativeFilter time.Duration
	// SetpointRamp, in input units per second, limits how fast the
	// effective setpoint follows the setpoint; 0 follows at once. The
	// ramp starts from the measurement at the first Update and after
	// Reset or Restart.
	SetpointRamp float64
	// Deadband: an error within ±Deadband counts as zero for the
	// proportional and integral terms, so sensor noise around the
	// setpoint does not move the output.
	Deadband float64

	integral  float64
	lastInput float64
	hasInput  bool    // lastInput holds a measurement
	rate      float64 // filtered rate of the measurement, per second
	ramp      float64 // effective setpoint
	hasRamp   bool    // ramp holds a position
	resetTo   float64 // output the next Update must return, if reset
	reset     bool
	output    float64
}

// ErrLimits is returned by New for output limits that are not finite or
// not in increasing order.
var ErrLimits = errors.New("pid: output limits must be finite with min < max")

// New returns a controller with the given gains and output limits. Its
// output starts at min.
func New(g Gains, min, max float64) (*Controller, error) {
	for _, v := range []float64{g.Kp, g.Ki, g.Kd} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("pid: gains must be finite, have %+v", g)
		}
	}
	if math.IsNaN(min) || math.IsNaN(max) || math.IsInf(min, 0) || math.IsInf(max, 0) || !(min < max) {
		return nil, fmt.Errorf("%w (have %v and %v)", ErrLimits, min, max)
	}
	return &Controller{Gains: g, Min: min, Max: max, output: min}, nil
}

// Update runs one step and returns the new output, within Min..Max.
//
// dt is the time since the previous Update. The derivative acts on the
// (filtered) measurement, not on the error, so a setpoint change does not
// kick the output. A dt <= 0 (the first sample, a sample after a gap, two
// samples with one timestamp) makes this sample a new starting point: the
// integral, the ramp and the derivative filter are held, the derivative
// term is zero, and input is remembered for the next derivative. A
// NaN or infinite setpoint or input is ignored: the state stays as it was
// and the previous output is returned.
func (c *Controller) Update(setpoint, input float64, dt time.Duration) float64 {
	if !finite(setpoint) || !finite(input) {
		return c.output
	}
	sec := dt.Seconds()
	sp := c.rampTo(setpoint, input, sec)
	e := sp - input
	if math.Abs(e) <= c.Deadband {
		e = 0
	}
	p := c.Gains.Kp * e
	// A dt <= 0 keeps the filter as it is (a command asking for a new
	// output now must not reset it); forgetting the measurement (Reset,
	// Restart) empties it.
	d, rate := 0.0, 0.0
	if c.hasInput {
		rate = c.rate
	}
	if dt > 0 && c.hasInput {
		rate = (input - c.lastInput) / sec
		if tf := c.DerivativeFilter.Seconds(); tf > 0 {
			// First-order low-pass, exact for a rate held over dt and
			// stable for any dt.
			rate = c.rate + (rate-c.rate)*(1-math.Exp(-sec/tf))
		}
		d = -c.Gains.Kd * rate
	}

	var integral float64
	if c.reset {
		// Bumpless transfer: choose the integral that makes this output
		// equal the one the controller takes over from.
		integral = c.resetTo - p - d
	} else {
		integral = c.integral
		if dt > 0 {
			inc := c.Gains.Ki * e * sec
			integral += inc
			// Conditional integration: never wind the integral further
			// into saturation than it takes to reach the limit.
			if u := p + integral + d; inc > 0 && u > c.Max {
				integral = math.Max(c.integral, c.Max-p-d)
			} else if inc < 0 && u < c.Min {
				integral = math.Min(c.integral, c.Min-p-d)
			}
		}
	}
	integral = clamp(integral, c.Min, c.Max)
	out := clamp(p+integral+d, c.Min, c.Max)
	if !finite(out) || !finite(integral) {
		// Only reachable with inputs near the float64 range (+Inf-Inf):
		// keep the state sane rather than poison it with NaN.
		return c.output
	}
	c.integral, c.output = integral, out
	c.lastInput, c.hasInput = input, true
	if !finite(rate) {
		rate = 0 // a jump near the float64 range: restart the filter
	}
	c.rate = rate
	c.ramp, c.hasRamp = sp, true
	c.reset = false
	return out
}

// rampTo returns the effective setpoint for this step: setpoint itself
// without a ramp, else the ramp's position moved towards setpoint by at
// most SetpointRamp·sec, starting from input when the ramp has no
// position.
func (c *Controller) rampTo(setpoint, input, sec float64) float64 {
	if !(c.SetpointRamp > 0) {
		return setpoint
	}
	if !c.hasRamp {
		return input
	}
	step := c.SetpointRamp * max(sec, 0)
	switch {
	case !finite(step):
		return setpoint
	case setpoint > c.ramp+step:
		return c.ramp + step
	case setpoint < c.ramp-step:
		return c.ramp - step
	}
	return setpoint
}

// Reset prepares a bumpless transfer to automatic control from output
// (for example the level an operator set in manual mode): the next Update
// returns output, clamped to Min..Max as far as the integral's own limits
// allow, and control continues smoothly from there. It also forgets the
// last measurement, so the derivative and the ramp restart.
func (c *Controller) Reset(output float64) {
	if !finite(output) {
		output = c.output
	}
	c.resetTo = clamp(output, c.Min, c.Max)
	c.reset = true
	c.hasInput, c.hasRamp = false, false
	c.output = c.resetTo
}

// Restart prepares a warm start, for example when an output that was off
// goes back to automatic control: the integral is kept (the output the
// process needed at the setpoint), so the next Update returns about what
// the controller gave before. It forgets the last measurement, so the
// derivative and the ramp restart, and cancels a pending Reset.
func (c *Controller) Restart() {
	c.reset = false
	c.hasInput, c.hasRamp = false, false
}

// SetIntegral sets the integral term, in output units, clamped to
// Min..Max: a warm start from a saved integral, or 0 to forget it. It
// cancels a pending Reset. A NaN or infinite value is ignored. The output
// changes at the next Update.
func (c *Controller) SetIntegral(v float64) {
	if !finite(v) {
		return
	}
	c.integral = clamp(v, c.Min, c.Max)
	c.reset = false
}

// Output returns the output of the latest Update (or the Reset value).
func (c *Controller) Output() float64 { return c.output }

// Integral returns the integral term, in output units.
func (c *Controller) Integral() float64 { return c.integral }

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func clamp(v, lo, hi float64) float64 {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}
