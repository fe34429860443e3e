// Package control binds PID and on/off loops to sensors and actuators,
// keeps them safe when an input goes stale or an output fails, and
// protects switched outputs (relays) from chatter.
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
	// Hysteresis, instead of PID, switches the output on and off around
	// the setpoint (on/off control).
	Hysteresis *Band `yaml:"hysteresis"`
	// Action is direct (heating: on below the setpoint) or reverse
	// (cooling: on above it). It applies to hysteresis; a PID loop
	// reverses with negative gains.
	Action string `yaml:"action"`

	// DerivativeFilter is the time constant of the low-pass filter on
	// the derivative term (PID only); 0 leaves it unfiltered.
	DerivativeFilter time.Duration `yaml:"derivative_filter"`
	// SetpointRamp, in input units per minute, limits how fast the
	// effective setpoint follows a new setpoint (PID only); 0 steps.
	SetpointRamp float64 `yaml:"setpoint_ramp"`
	// Deadband: an error within ±Deadband counts as zero for P and I
	// (PID only).
	Deadband float64 `yaml:"deadband"`
	// GainLimits bound the gains a gains command may set; nil takes
	// DefaultGainFactor times the config's gains.
	GainLimits *GainLimits `yaml:"gain_limits"`

	// Relay protection, for switched outputs (a cycle or hysteresis): no
	// pulse shorter than MinOn, no gap shorter than MinOff, at most
	// MaxSwitchesPerHour switch-ons in any 60 minutes (0: no limit), and
	// no pulse longer than MaxOn (0: no limit) without a forced gap.
	MinOn              time.Duration `yaml:"min_on"`
	MinOff             time.Duration `yaml:"min_off"`
	MaxSwitchesPerHour int           `yaml:"max_switches_per_hour"`
	MaxOn              time.Duration `yaml:"max_on"`

	// Runaway guards (see guard.go). An input outside InputMin..InputMax
	// (nil: unbounded) counts as failed, and so does one that holds within
	// stuckEpsilon for StuckAfter (0: never) while the output is at
	// OutputMax pushing it towards the setpoint. An input at or beyond CutoffAbove (direct action) or
	// CutoffBelow (reverse action) forces the output off (level 0).
	InputMin    *float64      `yaml:"input_min"`
	InputMax    *float64      `yaml:"input_max"`
	StuckAfter  time.Duration `yaml:"stuck_after"`
	CutoffAbove *float64      `yaml:"cutoff_above"`
	CutoffBelow *float64      `yaml:"cutoff_below"`
	// OnInputFailure is what an automatic loop does while its input has
	// failed (stale, offline, implausible, stuck): safe (the actuator's
	// safe state), hold (the last output for at most HoldFor, then safe)
	// or fixed (FixedOutput).
	OnInputFailure string        `yaml:"on_input_failure"`
	HoldFor        time.Duration `yaml:"hold_for"`
	FixedOutput    *float64      `yaml:"fixed_output"`
}

// Band is the hysteresis band around the setpoint, in input units.
type Band struct {
	// Below and Above are how far the input may fall below and rise above
	// the setpoint before the output switches.
	Below float64 `yaml:"below"`
	Above float64 `yaml:"above"`
}

// Validate checks the band.
func (b *Band) Validate() error {
	for _, f := range []struct {
		k string
		v float64
	}{{"below", b.Below}, {"above", b.Above}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			return sensors.FieldErrorf(f.k, "%v: want a finite number >= 0 (input units around the setpoint)", f.v)
		}
	}
	if b.Below+b.Above == 0 {
		return sensors.FieldErrorf("below", "below and above are both 0: the output would switch on sensor noise (try below: 0.3, above: 0.3)")
	}
	return nil
}

// The values of Opts.Action.
const (
	ActionDirect  = "direct"
	ActionReverse = "reverse"
)

// Defaults of relay protection: a mechanical relay or contactor lives
// long at these; an SSR may take min_on and min_off of 0.
const (
	DefaultMinOn              = 10 * time.Second
	DefaultMinOff             = 10 * time.Second
	DefaultMaxSwitchesPerHour = 60
	// maxSwitchesPerHour bounds the key: one per second, the shortest
	// cycle, and the size of the loop's record of switch-ons.
	maxSwitchesPerHour = 3600
)

// Gains are the PID gains, in output units per input unit (and second).
type Gains struct {
	Kp float64 `yaml:"kp"`
	Ki float64 `yaml:"ki"`
	Kd float64 `yaml:"kd"`
}

// GainLimits bound the magnitude of each gain a gains command may set; a
// gain not given is bounded by DefaultGainFactor times the config's.
type GainLimits struct {
	Kp *float64 `yaml:"kp"`
	Ki *float64 `yaml:"ki"`
	Kd *float64 `yaml:"kd"`
}

// Validate checks that the limits are finite and not negative.
func (g *GainLimits) Validate() error {
	for _, f := range []struct {
		k string
		v *float64
	}{{"kp", g.Kp}, {"ki", g.Ki}, {"kd", g.Kd}} {
		if f.v != nil && !(*f.v >= 0 && !math.IsInf(*f.v, 0)) {
			return sensors.FieldErrorf(f.k, "%v: want a finite number >= 0 (the largest magnitude a gains command may set)", *f.v)
		}
	}
	return nil
}

// DefaultGainFactor bounds runtime gains without gain_limits: each gain
// up to this many times the config's gain, with the config's sign. A gain
// the config leaves at 0 stays 0.
const DefaultGainFactor = 10

// DefaultDerivativeFilter is the derivative filter's default time
// constant: with 5 s samples it cuts the noise kd passes by several
// times, and it is short next to a greenhouse's or a room's time
// constant.
const DefaultDerivativeFilter = 10 * time.Second

// maxGains returns the largest magnitude of each gain a gains
// command may set.
func (o *Opts) maxGains() Gains {
	m := Gains{Kp: DefaultGainFactor * math.Abs(o.PID.Kp), Ki: DefaultGainFactor * math.Abs(o.PID.Ki), Kd: DefaultGainFactor * math.Abs(o.PID.Kd)}
	if l := o.GainLimits; l != nil {
		for _, f := range []struct {
			dst *float64
			v   *float64
		}{{&m.Kp, l.Kp}, {&m.Ki, l.Ki}, {&m.Kd, l.Kd}} {
			if f.v != nil {
				*f.dst = *f.v
			}
		}
	}
	return m
}

// reverse reports whether the PID acts in reverse (cooling): its first
// non-zero gain in the order kp, ki, kd is negative.
func (o *Opts) reverse() bool {
	for _, g := range []float64{o.PID.Kp, o.PID.Ki, o.PID.Kd} {
		if g != 0 {
			return g < 0
		}
	}
	return false
}

// Reverse reports whether the loop acts in reverse (cooling: its
// output lowers the input): a PID with negative gains, or hysteresis with
// action reverse.
func (o *Opts) Reverse() bool {
	return o.reverse() || o.Hysteresis != nil && o.Action == ActionReverse
}

// checkGains checks gains a command or the state file would set: finite,
// not all zero, each with the loop's sign and within its limit.
func (o *Opts) checkGains(g Gains) error {
	lim := o.maxGains()
	rev := o.reverse()
	if g.Kp == 0 && g.Ki == 0 && g.Kd == 0 {
		return fmt.Errorf("gains: all zero: the loop would never act")
	}
	for _, f := range []struct {
		k      string
		v, max float64
	}{{"kp", g.Kp, lim.Kp}, {"ki", g.Ki, lim.Ki}, {"kd", g.Kd, lim.Kd}} {
		switch {
		case math.IsNaN(f.v) || math.IsInf(f.v, 0):
			return fmt.Errorf("gains: %s must be finite", f.k)
		case !rev && f.v < 0:
			return fmt.Errorf("gains: %s %v is negative: this loop acts direct (heating); its gains are 0..%v", f.k, f.v, f.max)
		case rev && f.v > 0:
			return fmt.Errorf("gains: %s %v is positive: this loop acts in reverse (cooling); its gains are -%v..0", f.k, f.v, f.max)
		case math.Abs(f.v) > f.max:
			return fmt.Errorf("gains: %s %v is beyond its limit %v (gain_limits, or %d times the config's gain)", f.k, f.v, f.max, DefaultGainFactor)
		}
	}
	return nil
}

// DefaultOpts are the defaults of Opts.
func DefaultOpts() Opts {
	return Opts{
		OutputMin: 0, OutputMax: 1, StaleAfter: time.Minute,
		Action:           ActionDirect,
		DerivativeFilter: DefaultDerivativeFilter,
		MinOn:            DefaultMinOn, MinOff: DefaultMinOff, MaxSwitchesPerHour: DefaultMaxSwitchesPerHour,
		OnInputFailure: FailSafe,
	}
}

// switched reports whether the loop switches its output on and off (and
// so protects it) rather than passing a level through.
func (o *Opts) switched() bool { return o.Cycle > 0 || o.Hysteresis != nil }

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
	noGains := o.PID.Kp == 0 && o.PID.Ki == 0 && o.PID.Kd == 0
	switch {
	case o.Hysteresis != nil && !noGains:
		return sensors.FieldErrorf("hysteresis", "give pid or hysteresis, not both (hysteresis is on/off control without PID)")
	case o.Hysteresis != nil:
		if err := o.Hysteresis.Validate(); err != nil {
			return &sensors.FieldError{Field: "hysteresis", Err: err}
		}
	case noGains:
		return sensors.FieldErrorf("pid", "all gains are zero: the loop would never act (set pid gains, or hysteresis: {below: 0.3, above: 0.3} for on/off control)")
	}
	switch o.Action {
	case ActionDirect:
	case ActionReverse:
		if o.Hysteresis == nil {
			return sensors.FieldErrorf("action", "reverse applies to hysteresis; a PID loop reverses with negative gains")
		}
	default:
		return sensors.FieldErrorf("action", "%q is not one of direct (heating), reverse (cooling)", o.Action)
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
	if o.Cycle != 0 && o.Hysteresis != nil {
		return sensors.FieldErrorf("cycle", "applies to pid only: hysteresis switches at the band's edges (remove cycle)")
	}
	if err := o.validateProtection(); err != nil {
		return err
	}
	if err := o.validateTuning(); err != nil {
		return err
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
	return o.validateGuards()
}

// validateProtection checks the relay protection keys.
func (o *Opts) validateProtection() error {
	for _, d := range []struct {
		k string
		v time.Duration
	}{{"min_on", o.MinOn}, {"min_off", o.MinOff}, {"max_on", o.MaxOn}} {
		if d.v < 0 || d.v > 24*time.Hour {
			return sensors.FieldErrorf(d.k, "%v is out of range (0..24h)", d.v)
		}
	}
	if o.MaxSwitchesPerHour < 0 || o.MaxSwitchesPerHour > maxSwitchesPerHour {
		return sensors.FieldErrorf("max_switches_per_hour", "%d is out of range (0 for no limit, or 1..%d)", o.MaxSwitchesPerHour, maxSwitchesPerHour)
	}
	if o.MaxOn != 0 && o.MaxOn < o.MinOn {
		return sensors.FieldErrorf("max_on", "%v is shorter than min_on %v (0 for no limit)", o.MaxOn, o.MinOn)
	}
	if o.Cycle == 0 {
		return nil
	}
	if o.MinOn > o.Cycle {
		return sensors.FieldErrorf("min_on", "%v is longer than cycle %v: no pulse would fit in a window (lower min_on, an SSR takes 0s, or lengthen cycle)", o.MinOn, o.Cycle)
	}
	if o.MinOff > o.Cycle {
		return sensors.FieldErrorf("min_off", "%v is longer than cycle %v: no gap would fit in a window (lower min_off, an SSR takes 0s, or lengthen cycle)", o.MinOff, o.Cycle)
	}
	if o.MinOn+o.MinOff > o.Cycle {
		return sensors.FieldErrorf("cycle", "%v is shorter than min_on %v + min_off %v: a window must hold the shortest pulse and the shortest gap (lengthen cycle, or lower min_on and min_off; an SSR takes 0s)", o.Cycle, o.MinOn, o.MinOff)
	}
	return nil
}

// validateTuning checks the PID's filter, ramp, deadband and gain limits.
func (o *Opts) validateTuning() error {
	if o.DerivativeFilter < 0 || o.DerivativeFilter > time.Hour {
		return sensors.FieldErrorf("derivative_filter", "%v is out of range (0 for none, or up to 1h)", o.DerivativeFilter)
	}
	for _, f := range []struct {
		k, want string
		v       float64
	}{{"setpoint_ramp", "input units per minute, 0 for none", o.SetpointRamp}, {"deadband", "input units around the setpoint, 0 for none", o.Deadband}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			return sensors.FieldErrorf(f.k, "%v: want a finite number >= 0 (%s)", f.v, f.want)
		}
		if f.v != 0 && o.Hysteresis != nil {
			return sensors.FieldErrorf(f.k, "applies to pid only (hysteresis has its band)")
		}
	}
	if o.GainLimits == nil {
		return nil
	}
	if o.Hysteresis != nil {
		return sensors.FieldErrorf("gain_limits", "applies to pid only")
	}
	if err := o.GainLimits.Validate(); err != nil {
		return &sensors.FieldError{Field: "gain_limits", Err: err}
	}
	lim := o.maxGains()
	for _, f := range []struct {
		k      string
		v, max float64
	}{{"kp", o.PID.Kp, lim.Kp}, {"ki", o.PID.Ki, lim.Ki}, {"kd", o.PID.Kd, lim.Kd}} {
		if math.Abs(f.v) > f.max {
			return sensors.FieldErrorf("gain_limits", "%s: %v is below the config's own %s %v", f.k, f.max, f.k, f.v)
		}
	}
	return nil
}
