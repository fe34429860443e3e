// Package relay drives a relay (or any on/off load: a contactor coil, a
// MOSFET gate) from one GPIO output through periph, which on current Pi OS
// kernels uses the GPIO character device (gpioioctl).
//
// It owns the safe state and the software copy of the output level. It
// never reads an output pin back: with gpioioctl, Read() re-requests the
// line as a pulled-up input, which would switch an active-low relay on.
package relay

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"

	"github.com/edged/edged/drivers/pihost"
	"github.com/edged/edged/sensors"
)

// Safe state values of the `safe_state` option.
const (
	Off = "off"
	On  = "on"
)

// Opts are the relay keys of an actuator's YAML block.
type Opts struct {
	// Pin is a periph GPIO name, e.g. "GPIO17" (BCM numbering, header
	// pin 11).
	Pin string `yaml:"pin"`
	// ActiveLow is true for the common opto-isolated relay boards whose
	// input switches the relay on when driven low.
	ActiveLow bool `yaml:"active_low"`
	// SafeState is the state on open, on Halt and on Safe: off (default),
	// or on for loads that must fail on (a circulation fan, say).
	SafeState string `yaml:"safe_state"`
}

// DefaultOpts returns active-high with safe state off; Pin has no default.
func DefaultOpts() Opts { return Opts{SafeState: Off} }

// Validate checks the options; errors are *sensors.FieldError naming the key.
func (o *Opts) Validate() error {
	if o.Pin == "" {
		return sensors.FieldErrorf("pin", "is required, e.g. GPIO17")
	}
	if o.SafeState != Off && o.SafeState != On {
		return sensors.FieldErrorf("safe_state", "%q is not one of off, on", o.SafeState)
	}
	return nil
}

// ErrNoPin is returned (wrapped) by Open when the host has no GPIO of the
// configured name.
var ErrNoPin = errors.New("relay: no such GPIO pin")

// ErrHalted is returned by Set after Halt.
var ErrHalted = errors.New("relay: halted")

// Open initialises periph's host drivers (pihost.Init is idempotent), looks
// the pin up by name and returns the relay in its safe state.
func Open(opts Opts) (*Dev, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	if err := pihost.Init(); err != nil {
		return nil, fmt.Errorf("relay: periph host init: %w", err)
	}
	p := gpioreg.ByName(opts.Pin)
	if p == nil {
		return nil, fmt.Errorf("%w %q (use a BCM name such as GPIO17; on a Pi, gpioinfo lists the lines)", ErrNoPin, opts.Pin)
	}
	return New(p, opts)
}

// Dev is one relay. It is safe for concurrent use: a control loop sets it
// while shutdown may put it in its safe state.
type Dev struct {
	pin       gpio.PinOut
	name      string
	activeLow bool
	safe      bool // the safe state is on

	mu     sync.Mutex
	on     bool
	halted bool
}

var _ sensors.Actuator = (*Dev)(nil)

// New returns the relay on pin, already driven to its safe state; if that
// fails the pin is not usable and New returns the error.
func New(pin gpio.PinOut, opts Opts) (*Dev, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	d := &Dev{pin: pin, name: opts.Pin, activeLow: opts.ActiveLow, safe: opts.SafeState == On}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.drive(d.safe); err != nil {
		return nil, err
	}
	return d, nil
}

// String names the relay and its pin, e.g. "relay(GPIO17, active low)".
func (d *Dev) String() string {
	if d.activeLow {
		return "relay(" + d.name + ", active low)"
	}
	return "relay(" + d.name + ")"
}

// Set switches the relay on for level >= 0.5 and off below. Levels outside
// 0..1 (and NaN) are an error, not clamped.
func (d *Dev) Set(level float64) error {
	if math.IsNaN(level) || level < 0 || level > 1 {
		return fmt.Errorf("relay: %s: level %v is outside 0..1", d.name, level)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.halted {
		return fmt.Errorf("%w: %s", ErrHalted, d.name)
	}
	return d.drive(level >= 0.5)
}

// OnOff reports that a relay only switches on and off, so a control loop
// must drive it with a cycle or hysteresis.
func (d *Dev) OnOff() bool { return true }

// Level returns 1 or 0: the state last driven successfully, from software.
func (d *Dev) Level() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.on {
		return 1
	}
	return 0
}

// Safe drives the relay to its safe state. It works after Halt too.
func (d *Dev) Safe() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.drive(d.safe)
}

// Halt drives the safe state and refuses further Sets. The GPIO line stays
// requested, and so holds the safe level, until the process exits: a
// released line's level is up to the kernel.
func (d *Dev) Halt() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.halted = true
	return d.drive(d.safe)
}

// drive sets the output for on, honouring active-low; on failure the
// software state keeps its last good value. d.mu is held.
func (d *Dev) drive(on bool) error {
	if err := d.pin.Out(gpio.Level(on != d.activeLow)); err != nil {
		return fmt.Errorf("relay: pin %s: switch %s: %w", d.name, onOff(on), err)
	}
	d.on = on
	return nil
}

func onOff(on bool) string {
	if on {
		return On
	}
	return Off
}
