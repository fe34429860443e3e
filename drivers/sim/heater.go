package sim

import (
	"fmt"
	"math"
	"sync/atomic"

	"github.com/edged/edged/sensors"
)

// heater is what Relay and PWM share: a slot in a plant's heater input.
type heater struct {
	plant  *plant
	slot   int
	name   string
	halted atomic.Bool
}

func openHeater(clk sensors.Clock, s Sharer, kind string, opts HeaterOpts) (*heater, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("sim: %s: %w", kind, err)
	}
	p, err := openPlant(clk, s, opts.Plant)
	if err != nil {
		return nil, err
	}
	return &heater{plant: p, slot: p.attach(), name: fmt.Sprintf("%s(plant %s)", kind, opts.Plant)}, nil
}

func (h *heater) set(level, power float64) error {
	if math.IsNaN(level) || level < 0 || level > 1 {
		return fmt.Errorf("sim: %s: level %v is out of range (0..1)", h.name, level)
	}
	if h.halted.Load() {
		return fmt.Errorf("%s: %w", h.name, ErrHalted)
	}
	h.plant.setPower(h.slot, power)
	return nil
}

func (h *heater) safe() error {
	h.plant.setPower(h.slot, 0)
	return nil
}

func (h *heater) halt() error {
	h.halted.Store(true)
	return h.safe()
}

// Relay is a simulated on/off heater: level >= 0.5 is full power.
type Relay struct{ h *heater }

var _ sensors.Actuator = (*Relay)(nil)

// NewRelay opens an on/off heater in the plant opts.Plant, switched off.
func NewRelay(clk sensors.Clock, s Sharer, opts HeaterOpts) (*Relay, error) {
	h, err := openHeater(clk, s, "sim_relay", opts)
	if err != nil {
		return nil, err
	}
	return &Relay{h: h}, nil
}

// String names the device, e.g. "sim_relay(plant greenhouse)".
func (r *Relay) String() string { return r.h.name }

// Set switches the heater on for level >= 0.5 and off below.
func (r *Relay) Set(level float64) error {
	power := 0.0
	if level >= 0.5 {
		power = 1
	}
	return r.h.set(level, power)
}

// OnOff reports that the heater only switches on and off, so a control
// loop must drive it with a cycle or hysteresis.
func (r *Relay) OnOff() bool { return true }

// Level returns the relay's state: 1 when on, 0 when off. That is what the
// heater does, which is what the control state should report.
func (r *Relay) Level() float64 { return r.h.plant.power(r.h.slot) }

// Safe switches the heater off.
func (r *Relay) Safe() error { return r.h.safe() }

// Halt switches the heater off for good; later Set calls fail.
func (r *Relay) Halt() error { return r.h.halt() }

// PWM is a simulated proportional heater: level is the power fraction.
type PWM struct{ h *heater }

var _ sensors.Actuator = (*PWM)(nil)

// NewPWM opens a proportional heater in the plant opts.Plant, at zero.
func NewPWM(clk sensors.Clock, s Sharer, opts HeaterOpts) (*PWM, error) {
	h, err := openHeater(clk, s, "sim_pwm", opts)
	if err != nil {
		return nil, err
	}
	return &PWM{h: h}, nil
}

// String names the device, e.g. "sim_pwm(plant greenhouse)".
func (p *PWM) String() string { return p.h.name }

// Set drives the heater at level (0..1) of full power.
func (p *PWM) Set(level float64) error { return p.h.set(level, level) }

// Level returns the level last set (0 after Safe or Halt).
func (p *PWM) Level() float64 { return p.h.plant.power(p.h.slot) }

// Safe turns the heater off.
func (p *PWM) Safe() error { return p.h.safe() }

// Halt turns the heater off for good; later Set calls fail.
func (p *PWM) Halt() error { return p.h.halt() }
