// Package veml7700 drives a Vishay VEML7700 ambient light sensor on I2C
// and returns illuminance in lux, from the datasheet (document 84286) and
// the application note "Designing the VEML7700 Into an Application"
// (document 84323); periph has no driver for it.
//
// The chip integrates continuously once powered on and keeps the last
// complete result in its ALS register, so a steady Sense is two register
// reads and no wait: it reads ALS_CONF back (a brown-out resets it, after
// which readings would silently be at the wrong gain) and then ALS. Only
// when the settings change is the chip shut down, reprogrammed, powered on
// and given one integration to settle, on the injected clock.
//
// Auto-range follows the application note's flow chart (fig. 24), kept
// across readings instead of restarting from gain 1/8 every time: below
// 100 counts it raises the gain, then the integration time; above 10,000
// counts it shortens the integration time (and undoes a raised gain). A
// Sense re-measures at most MaxSteps times; if that is not enough it
// reports the in-between reading and continues the climb on the next
// Sense.
package veml7700

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/sensors"
)

// Addr is the only address of the VEML7700 (datasheet "Slave address").
const Addr uint16 = 0x10

// Gain values of the `gain` option.
const (
	GainAuto   = "auto"
	GainEighth = "1/8"
	GainFourth = "1/4"
	Gain1      = "1"
	Gain2      = "2"
)

// Command codes (datasheet table "Command Register Format").
const (
	regConf = 0x00 // ALS_CONF_0
	regPSM  = 0x03 // power saving
	regALS  = 0x04 // ALS output, 16 bits, LSB first

	confSD = 0x0001 // ALS_SD: 1 = shut down
)

// Resolution is lux per count at gain 2 and 800 ms, from the resolution
// table of the current datasheet and application note (rev. 2019 and
// later; the first revision printed 0.0036). Every other setting scales it
// by (2 / gain) * (800 ms / integration time).
const Resolution = 0.0042

// MaxSteps bounds the auto-range re-measurements within one Sense, so a
// Sense waits at most about two seconds even when the light jumps from
// darkness to sun.
const MaxSteps = 3

// The auto-range thresholds of the application note's flow chart, in
// counts.
const (
	lowCounts  = 100
	highCounts = 10000
)

// startup is the wait after ALS_SD goes to 0 before the first integration
// starts (application note: "a wait time of 2.5 ms").
const startup = 2500 * time.Microsecond

// gains maps a gain to its ALS_GAIN code (bits 12:11) and value.
var gains = map[string]struct {
	code byte
	x    float64
}{
	Gain1:      {0b00, 1},
	Gain2:      {0b01, 2},
	GainEighth: {0b10, 0.125},
	GainFourth: {0b11, 0.25},
}

// its maps an integration time to its ALS_IT code (bits 9:6).
var its = map[time.Duration]byte{
	25 * time.Millisecond:  0b1100,
	50 * time.Millisecond:  0b1000,
	100 * time.Millisecond: 0b0000,
	200 * time.Millisecond: 0b0001,
	400 * time.Millisecond: 0b0010,
	800 * time.Millisecond: 0b0011,
}

// setting is one gain and integration time.
type setting struct {
	gain string
	it   time.Duration
}

// ladder orders the auto-range settings from least to most sensitive: the
// application note's path up from 1/8 and 100 ms (gain first, then time)
// and down (time only, at 1/8).
var ladder = [...]setting{
	{GainEighth, 25 * time.Millisecond},
	{GainEighth, 50 * time.Millisecond},
	{GainEighth, 100 * time.Millisecond}, // the flow chart's start
	{GainFourth, 100 * time.Millisecond},
	{Gain1, 100 * time.Millisecond},
	{Gain2, 100 * time.Millisecond},
	{Gain2, 200 * time.Millisecond},
	{Gain2, 400 * time.Millisecond},
	{Gain2, 800 * time.Millisecond},
}

const ladderStart = 2

// Opts are the veml7700 keys of a sensor's YAML block.
type Opts struct {
	i2cbus.Opts `yaml:",inline"`
	// Gain is "auto" (default), "1/8", "1/4", "1" or "2". Vishay advises
	// 1/8 or 1/4 for most uses; 1 and 2 are for below about 100 lx.
	Gain string `yaml:"gain"`
	// IntegrationTime is 25ms, 50ms, 100ms (default), 200ms, 400ms or
	// 800ms; it applies when gain is not auto.
	IntegrationTime time.Duration `yaml:"integration_time"`
	// Correction applies the application note's polynomial for the
	// sensor's non-linearity above 1000 lx (default true).
	Correction bool `yaml:"correction"`
}

// DefaultOpts returns bus "1", address 0x10, auto-range and correction.
func DefaultOpts() Opts {
	return Opts{
		Opts:            i2cbus.DefaultOpts(Addr),
		Gain:            GainAuto,
		IntegrationTime: 100 * time.Millisecond,
		Correction:      true,
	}
}

// Validate checks the options; errors are *sensors.FieldError naming the key.
func (o *Opts) Validate() error {
	if err := o.Opts.Validate(); err != nil {
		return err
	}
	if o.Address != Addr {
		return sensors.FieldErrorf("address", "%#x: the VEML7700 has only address 0x10", o.Address)
	}
	if _, ok := gains[o.Gain]; !ok && o.Gain != GainAuto {
		return sensors.FieldErrorf("gain", "%q is not one of auto, 1/8, 1/4, 1, 2", o.Gain)
	}
	if _, ok := its[o.IntegrationTime]; !ok {
		return sensors.FieldErrorf("integration_time", "%v is not one of 25ms, 50ms, 100ms, 200ms, 400ms, 800ms", o.IntegrationTime)
	}
	return nil
}

// Quantities lists what the sensor measures.
func (o *Opts) Quantities() []sensors.Quantity {
	return []sensors.Quantity{sensors.Illuminance}
}

// ErrSaturated is returned (wrapped) when ALS reads 65535 at the least
// sensitive setting allowed: the lux value would be too low.
var ErrSaturated = errors.New("veml7700: saturated")

// Dev is one VEML7700. Like every sensors.Sensor it is not safe for
// concurrent use; the shared bus is.
type Dev struct {
	dev     i2c.Dev
	name    string
	auto    bool
	correct bool
	fixed   setting
	rung    int  // ladder index when auto
	running bool // the chip was programmed with conf() and is integrating

	w    *sensors.Waiter
	wbuf [3]byte
	reg  [1]byte
	rbuf [2]byte
	q    []sensors.Quantity

	saturations atomic.Uint64
	resets      atomic.Uint64
}

var _ sensors.Sensor = (*Dev)(nil)

// New returns the VEML7700 at opts.Address on bus. It sends nothing; the
// first Sense is the presence check. clock times the settling wait (nil
// means the system clock).
func New(bus i2c.Bus, clock sensors.Clock, opts Opts) (*Dev, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("veml7700: %w", err)
	}
	return &Dev{
		dev:     i2c.Dev{Bus: bus, Addr: opts.Address},
		name:    fmt.Sprintf("veml7700(%s, %#x)", bus, opts.Address),
		auto:    opts.Gain == GainAuto,
		correct: opts.Correction,
		fixed:   setting{opts.Gain, opts.IntegrationTime},
		rung:    ladderStart,
		w:       sensors.NewWaiter(clock),
		q:       opts.Quantities(),
	}, nil
}

// String names the device and where it sits, e.g. "veml7700(i2c 1, 0x10)".
func (d *Dev) String() string { return d.name }

// Quantities returns illuminance.
func (d *Dev) Quantities() []sensors.Quantity { return d.q }

// Saturations returns how many readings saturated, for metrics.
func (d *Dev) Saturations() uint64 { return d.saturations.Load() }

// Resets returns how often ALS_CONF read back different from what was
// written (a brown-out or another master), for metrics.
func (d *Dev) Resets() uint64 { return d.resets.Load() }

// Setting returns the gain and integration time in use, e.g. to log what
// auto-range chose.
func (d *Dev) Setting() (gain string, it time.Duration) {
	s := d.setting()
	return s.gain, s.it
}

func (d *Dev) setting() setting {
	if d.auto {
		return ladder[d.rung]
	}
	return d.fixed
}

// conf returns the ALS_CONF_0 value of s (datasheet "ALS_CONF_0"):
// persistence 1, interrupt off, powered on.
func conf(s setting) uint16 {
	return uint16(gains[s.gain].code)<<11 | uint16(its[s.it])<<6
}

// Sense writes lux into dst[0]. It does not allocate unless it fails.
func (d *Dev) Sense(ctx context.Context, dst []float64) error {
	if len(dst) < 1 {
		return fmt.Errorf("veml7700: %s: dst is empty", d.name)
	}
	for step := 0; ; step++ {
		s := d.setting()
		if err := d.ensure(ctx, s); err != nil {
			return err
		}
		als, err := d.read16(regALS, "read ALS")
		if err != nil {
			return err
		}
		if d.auto {
			move := 0
			switch {
			case als <= lowCounts && d.rung < len(ladder)-1:
				move = 1
			case als > highCounts && d.rung > 0:
				move = -1
			}
			if move != 0 {
				d.rung += move
				d.running = false
				if step < MaxSteps {
					continue
				}
				// Out of steps: report this reading unless it is
				// saturated; the next Sense starts at the new rung.
			}
		}
		if als == 0xFFFF {
			d.saturations.Add(1)
			return fmt.Errorf("%w: %s: ALS 65535 at gain %s, %v", ErrSaturated, d.name, s.gain, s.it)
		}
		dst[0] = Lux(als, gains[s.gain].x, s.it, d.correct)
		return nil
	}
}

// ensure makes sure the chip integrates with s. If it already should, one
// read of ALS_CONF confirms it; otherwise it shuts the chip down, turns
// power saving off, writes s with ALS_SD 0, and waits for the start-up
// time and one integration (plus a quarter for the oscillator's
// tolerance).
func (d *Dev) ensure(ctx context.Context, s setting) error {
	c := conf(s)
	if d.running {
		got, err := d.read16(regConf, "read ALS_CONF")
		if err != nil {
			return err
		}
		if got == c {
			return nil
		}
		d.resets.Add(1)
		d.running = false
	}
	if err := d.write16(regConf, c|confSD, "shut down"); err != nil {
		return err
	}
	if err := d.write16(regPSM, 0, "disable power saving"); err != nil {
		return err
	}
	if err := d.write16(regConf, c, "write ALS_CONF"); err != nil {
		return err
	}
	if err := d.w.Wait(ctx, startup+s.it+s.it/4); err != nil {
		return fmt.Errorf("veml7700: %s: waiting for integration: %w", d.name, err)
	}
	d.running = true
	return nil
}

// write16 writes a register: command code, then data LSB and MSB
// (datasheet "Send Byte / Write Word Protocol").
func (d *Dev) write16(reg byte, v uint16, op string) error {
	d.wbuf = [3]byte{reg, byte(v), byte(v >> 8)}
	if err := d.dev.Tx(d.wbuf[:], nil); err != nil {
		return fmt.Errorf("veml7700: %s: %s: %w", d.name, op, err)
	}
	return nil
}

// read16 reads a register: command code, repeated start, LSB then MSB
// (datasheet "Receive Byte / Read Word Protocol").
func (d *Dev) read16(reg byte, op string) (uint16, error) {
	d.reg[0] = reg
	if err := d.dev.Tx(d.reg[:], d.rbuf[:]); err != nil {
		return 0, fmt.Errorf("veml7700: %s: %s: %w", d.name, op, err)
	}
	return uint16(d.rbuf[0]) | uint16(d.rbuf[1])<<8, nil
}

// Halt shuts the chip down (ALS_SD 1, about 0.5 µA) with its current
// settings. The next Sense powers it up again.
func (d *Dev) Halt() error {
	d.w.Stop()
	d.running = false
	if err := d.write16(regConf, conf(d.setting())|confSD, "shut down"); err != nil {
		return err
	}
	return nil
}

// Lux converts an ALS count at gain and integration time it to lux with
// the resolution table; if correct, a result above 1000 lx, where the
// application note says the sensor stops being linear, goes through
// Correct.
func Lux(als uint16, gain float64, it time.Duration, correct bool) float64 {
	x := float64(als) * Resolution * (2 / gain) * (float64(800*time.Millisecond) / float64(it))
	if correct && x > 1000 {
		return Correct(x)
	}
	return x
}

// Correct is the application note's non-linearity correction (p.5),
// a·x⁴ + b·x³ + c·x² + d·x with a = 6.0135e-13, b = -9.3924e-9,
// c = 8.1488e-5, d = 1.0023; its worked example turns 1500 lx into
// 1658 lx. Vishay fitted it to the sensor's response in bright light, so
// it grows fast: it is meant for the linear lux the sensor can actually
// report (up to some 25,000 lx before correction, which is direct sun), not
// for extrapolation.
func Correct(x float64) float64 {
	return (((6.0135e-13*x-9.3924e-9)*x+8.1488e-5)*x + 1.0023) * x
}
