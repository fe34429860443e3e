// Package control binds PID loops to sensors and actuators and keeps them
// safe when an input goes stale or an output fails.
//
// A Loop owns its actuator while it runs: it takes samples and
// availability from the Poller (it is a sensors.SampleObserver: every
// good sample, before the rate filters, never waiting on the broker),
// commands (Command), and publishes its state through a Publisher it
// declares. An Inbox takes the commands that
// arrive over MQTT for a set of loops without ever blocking the sender,
// applies them in order and answers each one. The PID math lives
// in pipeline/pid; this package must not import drivers, the broker or the
// uplink, and never sleeps: all timing comes from the injected clock.
package control

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/edged/edged/sensors"
)

// Opts configures one controller. The YAML keys are a contract.
type Opts struct {
	ID string `yaml:"id"`
	// Input is "<sensor id>/<quantity>", e.g. "air/temperature".
	Input string `yaml:"input"`
	// Output is an actuator id.
	Output   string  `yaml:"output"`
	Setpoint float64 `yaml:"setpoint"`
	PID      Gains   `yaml:"pid"`
	// OutputMin and OutputMax bound the output level (0..1 by default).
	OutputMin float64 `yaml:"output_min"`
	OutputMax float64 `yaml:"output_max"`
	// StaleAfter without a fresh input puts the output in its safe state.
	StaleAfter time.Duration `yaml:"stale_after"`
	// SetpointMin and SetpointMax bound setpoint commands.
	SetpointMin *float64 `yaml:"setpoint_min"`
	SetpointMax *float64 `yaml:"setpoint_max"`
	// Cycle is the time-proportioning window for on/off outputs such as
	// relays: an output of 0.3 with a 60s cycle is on for 18 s of every
	// 60 s. 0 passes the level straight to the actuator.
	Cycle time.Duration `yaml:"cycle"`
}

// Gains are the PID gains, in output units per input unit (and second).
type Gains struct {
	Kp float64 `yaml:"kp"`
	Ki float64 `yaml:"ki"`
	Kd float64 `yaml:"kd"`
}

// DefaultOpts are the defaults of Opts.
func DefaultOpts() Opts {
	return Opts{OutputMin: 0, OutputMax: 1, StaleAfter: time.Minute}
}

// InputRef splits Input into sensor id and quantity.
func (o *Opts) InputRef() (sensor string, q sensors.Quantity, err error) {
	id, qs, ok := strings.Cut(o.Input, "/")
	if !ok || id == "" {
		return "", 0, fmt.Errorf("input %q: want <sensor id>/<quantity>, e.g. air/temperature", o.Input)
	}
	q, err = sensors.ParseQuantity(qs)
	if err != nil {
		return "", 0, fmt.Errorf("input %q: %w", o.Input, err)
	}
	return id, q, nil
}

// Validate checks one controller on its own; the config loader checks that
// Input and Output name existing devices.
func (o *Opts) Validate() error {
	if _, _, err := o.InputRef(); err != nil {
		return &sensors.FieldError{Field: "input", Err: err}
	}
	if o.Output == "" {
		return sensors.FieldErrorf("output", "missing: name the actuator this loop drives")
	}
	for _, g := range []struct {
		k string
		v float64
	}{{"setpoint", o.Setpoint}, {"pid", o.PID.Kp}, {"pid", o.PID.Ki}, {"pid", o.PID.Kd}} {
		if math.IsNaN(g.v) || math.IsInf(g.v, 0) {
			return sensors.FieldErrorf(g.k, "must be finite")
		}
	}
	if o.PID.Kp == 0 && o.PID.Ki == 0 && o.PID.Kd == 0 {
		return sensors.FieldErrorf("pid", "all gains are zero: the loop would never act")
	}
	if !(0 <= o.OutputMin && o.OutputMin < o.OutputMax && o.OutputMax <= 1) {
		return sensors.FieldErrorf("output_max", "want 0 <= output_min < output_max <= 1, have %v and %v", o.OutputMin, o.OutputMax)
	}
	if o.StaleAfter <= 0 {
		return sensors.FieldErrorf("stale_after", "must be positive")
	}
	if o.Cycle != 0 && (o.Cycle < time.Second || o.Cycle > time.Hour) {
		return sensors.FieldErrorf("cycle", "%v is out of range (0 to pass the level through, or 1s..1h)", o.Cycle)
	}
	for _, b := range []struct {
		k string
		v *float64
	}{{"setpoint_min", o.SetpointMin}, {"setpoint_max", o.SetpointMax}} {
		if b.v != nil && (math.IsNaN(*b.v) || math.IsInf(*b.v, 0)) {
			return sensors.FieldErrorf(b.k, "must be finite")
		}
	}
	if o.SetpointMin != nil && o.SetpointMax != nil && *o.SetpointMin > *o.SetpointMax {
		return sensors.FieldErrorf("setpoint_min", "above setpoint_max")
	}
	if o.SetpointMin != nil && o.Setpoint < *o.SetpointMin || o.SetpointMax != nil && o.Setpoint > *o.SetpointMax {
		return sensors.FieldErrorf("setpoint", "%v is outside setpoint_min..setpoint_max", o.Setpoint)
	}
	return nil
}
