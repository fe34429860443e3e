// Package pid is the math of a PID controller: gains, output limits,
// derivative on measurement, integral anti-windup and bumpless transfer.
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

	integral  float64
	lastInput float64
	hasInput  bool    // lastInput holds a measurement
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
// measurement, not on the error, so a setpoint change does not kick the
// output. A dt <= 0 (the first sample, a sample after a gap, two samples
// with one timestamp) makes this sample a new starting point: the
// integral is held, the derivative term is zero, and input is remembered
// for the next derivative. A NaN or infinite setpoint or input is ignored:
// the state stays as it was and the previous output is returned.
func (c *Controller) Update(setpoint, input float64, dt time.Duration) float64 {
	if !finite(setpoint) || !finite(input) {
		return c.output
	}
	e := setpoint - input
	p := c.Gains.Kp * e
	d := 0.0
	sec := dt.Seconds()
	if dt > 0 && c.hasInput {
		d = -c.Gains.Kd * (input - c.lastInput) / sec
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
	c.reset = false
	return out
}

// Reset prepares a bumpless transfer to automatic control from output
// (for example the level an operator set in manual mode): the next Update
// returns output, clamped to Min..Max as far as the integral's own limits
// allow, and control continues smoothly from there. It also forgets the
// last measurement, so the derivative restarts.
func (c *Controller) Reset(output float64) {
	if !finite(output) {
		output = c.output
	}
	c.resetTo = clamp(output, c.Min, c.Max)
	c.reset = true
	c.hasInput = false
	c.output = c.resetTo
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
