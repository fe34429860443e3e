// Package pca9685 drives the channels of an NXP PCA9685 16-channel, 12-bit
// PWM controller on I2C (the "16-channel servo/PWM" boards), one actuator
// per channel, for MOSFETs on heaters, fans and LED strips.
//
// It owns the chip's start-up (mode, frequency, all outputs off), the
// per-channel duty writes and each channel's safe state. Several
// actuators share one Chip per bus and address; the chip's frequency is
// chip-wide, so they must agree on it.
//
// It is written on i2c.Dev from the datasheet rather than wrapping
// periph.io/x/devices/v3/pca9685, because that driver: computes PRE_SCALE
// without the datasheet's "- 1" (7.3.5), so every frequency is one
// prescale step low (200 Hz comes out as 191 Hz, not 197 Hz); programs every channel
// with LEDn_ON == LEDn_OFF == 0 at init, which 7.3.4 says must never be
// done; sleeps 205 ms with time.Sleep, which can be neither injected nor
// cancelled; and changes a channel's ON and OFF registers in separate
// writes, where one auto-incremented write updates them together.
//
// Section numbers below are those of the PCA9685 product data sheet
// (NXP, Rev. 4, 16 April 2015).
package pca9685

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/sensors"
)

// Addr is the address with A5..A0 all low (7.1.1: 1 A5 A4 A3 A2 A1 A0).
const Addr uint16 = 0x40

// AllCallAddr is the LED All Call address (ALLCALLADR's power-on value
// 0xE0 as an 8-bit address): every PCA9685 answers there while MODE1's
// ALLCALL bit is set, as it is at power-on. NewChip clears it.
const AllCallAddr uint16 = 0x70

// Registers (7.3, Table 4).
const (
	regMode1    = 0x00
	regMode2    = 0x01
	regLED0OnL  = 0x06 // LEDn_ON_L is 0x06 + 4n
	regAllOnL   = 0xFA // ALL_LED_ON_L .. ALL_LED_OFF_H
	regPrescale = 0xFE
)

// Bits (7.3.1 Table 5, 7.3.2 Table 6, 7.3.3 Table 7).
const (
	mode1AI    = 0x20 // register auto-increment
	mode1Sleep = 0x10 // low-power mode, oscillator off
	mode2Drv   = 0x04 // OUTDRV: totem-pole outputs (power-on default)
	fullBit    = 0x10 // bit 4 of LEDn_ON_H (full on) and LEDn_OFF_H (full off)
)

// Oscillator and prescaler facts (7.3.5, 7.3.1).
const (
	oscHz       = 25_000_000
	minPrescale = 3   // the hardware forces at least 3
	maxPrescale = 255 // one byte
	// wakeWait is the oscillator start-up time after SLEEP is cleared
	// (7.3.1, remark under Table 5: 500 µs max).
	wakeWait = 500 * time.Microsecond
	steps    = 4096 // 12-bit counter
)

// Channels on one chip.
const Channels = 16

// Values of the `safe_state` option.
const (
	Off = "off" // full off
	On  = "on"  // full on
)

// DefaultFrequency is the chip's power-on rate: PRE_SCALE 0x1E (7.3.5).
const DefaultFrequency = 200

// Opts are the pca9685 keys of an actuator's YAML block.
//
// The bus and address keys sit in a named field, not an embedded one, so
// that Opts has no I2CAddr method: the config loader's "one device per bus
// and address" check would refuse the second channel of a chip. Two
// actuators on one channel are refused when they open.
type Opts struct {
	I2C i2cbus.Opts `yaml:",inline"`
	// Channel is the output, 0..15 (LED0..LED15, the board's PWM pins).
	Channel int `yaml:"channel"`
	// Frequency is the chip-wide PWM frequency in Hz, 24..1526; every
	// channel of one chip must ask for the same one. The chip runs at the
	// nearest prescale step, 25 MHz / (4096 * (prescale + 1)).
	Frequency float64 `yaml:"frequency"`
	// SafeState is off (default) or on, applied on open, on Halt, on Safe
	// and after a failed Set.
	SafeState string `yaml:"safe_state"`
}

// DefaultOpts returns bus "1", address 0x40, channel 0, 200 Hz, safe off.
func DefaultOpts() Opts {
	return Opts{I2C: i2cbus.DefaultOpts(Addr), Frequency: DefaultFrequency, SafeState: Off}
}

// Validate checks the options; errors are *sensors.FieldError naming the key.
func (o *Opts) Validate() error {
	if err := o.I2C.Validate(); err != nil {
		return err
	}
	if o.Channel < 0 || o.Channel >= Channels {
		return sensors.FieldErrorf("channel", "%d is out of range 0..15", o.Channel)
	}
	if _, err := Prescale(o.Frequency); err != nil {
		return &sensors.FieldError{Field: "frequency", Err: err}
	}
	if o.SafeState != Off && o.SafeState != On {
		return sensors.FieldErrorf("safe_state", "%q is not one of off, on", o.SafeState)
	}
	return nil
}

// ChipSetting names o's chip and the prescale its frequency makes:
// channels of one chip must run at one (the configs check).
func (o *Opts) ChipSetting() (chip, key string, value int) {
	p, _ := Prescale(o.Frequency)
	return fmt.Sprintf("the PCA9685 at I2C bus %q address %#02x", o.I2C.Bus, o.I2C.Address), "frequency", int(p)
}

// Prescale returns the PRE_SCALE value for a frequency in Hz (7.3.5,
// equation 1): round(25 MHz / (4096 * hz)) - 1, which must be 3..255.
func Prescale(hz float64) (byte, error) {
	if math.IsNaN(hz) || hz <= 0 || math.IsInf(hz, 0) {
		return 0, fmt.Errorf("%v Hz is not a frequency", hz)
	}
	p := math.Round(oscHz/(steps*hz)) - 1
	if p < minPrescale || p > maxPrescale {
		return 0, fmt.Errorf("%v Hz is out of range 24..1526 (prescale %v outside 3..255)", hz, p)
	}
	return byte(p), nil
}

// Frequency returns the rate the chip runs at for a PRE_SCALE value.
func Frequency(prescale byte) float64 { return oscHz / (steps * (float64(prescale) + 1)) }

// Chip is one PCA9685. It is shared by the channels opened on it and is
// safe for concurrent use.
type Chip struct {
	dev      i2c.Dev
	name     string
	hz       float64 // as asked at start
	prescale byte

	mu   sync.Mutex
	used [Channels]string // actuator id per claimed channel
}

// NewChip starts the chip at addr on bus: wake-up mode with register
// auto-increment, every output full off, totem-pole outputs, the
// prescaler for hz, then wakes the oscillator and waits its start-up time
// on clock (nil means the system clock). Every output stays off until a
// channel is opened.
func NewChip(bus i2c.Bus, clock sensors.Clock, addr uint16, hz float64) (*Chip, error) {
	if addr < i2cbus.MinAddr || addr > i2cbus.MaxAddr {
		return nil, fmt.Errorf("pca9685: address %#x is out of range 0x03..0x77", addr)
	}
	p, err := Prescale(hz)
	if err != nil {
		return nil, fmt.Errorf("pca9685: frequency: %w", err)
	}
	c := &Chip{dev: i2c.Dev{Bus: bus, Addr: addr}, name: fmt.Sprintf("pca9685(%s, %#x)", bus, addr), hz: hz, prescale: p}
	steps := []struct {
		what string
		w    []byte
	}{
		// PRE_SCALE can only be written while SLEEP is set (7.3.5); AI
		// lets the next write fill four registers at once (7.3.1).
		{"sleep with auto-increment", []byte{regMode1, mode1AI | mode1Sleep}},
		// ALL_LED_OFF_H bit 4 switches every output fully off (7.3.4),
		// as at power-on; a previous program may have left them on.
		{"all outputs off", []byte{regAllOnL, 0x00, 0x00, 0x00, fullBit}},
		// Not inverted, totem pole: the power-on value, which a previous
		// program may have changed (7.3.2).
		{"output mode", []byte{regMode2, mode2Drv}},
		{"prescale", []byte{regPrescale, p}},
		{"wake", []byte{regMode1, mode1AI}},
	}
	for _, s := range steps {
		if err := c.dev.Tx(s.w, nil); err != nil {
			return nil, fmt.Errorf("pca9685: %s: %s: %w", c.name, s.what, err)
		}
	}
	w := sensors.NewWaiter(clock)
	defer w.Stop()
	if err := w.Wait(context.Background(), wakeWait); err != nil {
		return nil, fmt.Errorf("pca9685: %s: waiting for the oscillator: %w", c.name, err)
	}
	return c, nil
}

// String names the chip, e.g. "pca9685(i2c 1, 0x40)".
func (c *Chip) String() string { return c.name }

// Prescale returns the PRE_SCALE value the chip runs at.
func (c *Chip) Prescale() byte { return c.prescale }

// StartedHz returns the frequency the chip was started with, as asked
// (it runs at Frequency(c.Prescale())). Only a new start changes it.
func (c *Chip) StartedHz() float64 { return c.hz }

// ErrHalted is returned by Set after Halt.
var ErrHalted = errors.New("pca9685: halted")

// ErrChannelUsed is returned by Channel when another actuator holds it.
var ErrChannelUsed = errors.New("pca9685: channel already in use")

// ErrFrequency is returned by Channel when the options ask for another
// frequency than the chip runs at.
var ErrFrequency = errors.New("pca9685: frequency differs from the chip's")

// Channel opens channel opts.Channel for actuator id, in its safe state.
// The options' frequency must give the chip's prescale.
func (c *Chip) Channel(id string, opts Opts) (*Dev, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("pca9685: %w", err)
	}
	if p, _ := Prescale(opts.Frequency); p != c.prescale {
		return nil, fmt.Errorf("%w: %s runs at %.4g Hz (prescale %d), channel %d asks for %v Hz (prescale %d); set one frequency for every channel of a chip",
			ErrFrequency, c.name, Frequency(c.prescale), c.prescale, opts.Channel, opts.Frequency, p)
	}
	c.mu.Lock()
	if other := c.used[opts.Channel]; other != "" {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %s channel %d is used by %q", ErrChannelUsed, c.name, opts.Channel, other)
	}
	c.used[opts.Channel] = id
	c.mu.Unlock()
	d := &Dev{
		chip:   c,
		ch:     opts.Channel,
		name:   fmt.Sprintf("pca9685(%s, %#x, channel %d)", c.dev.Bus, c.dev.Addr, opts.Channel),
		safeOn: opts.SafeState == On,
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.applySafe(); err != nil {
		c.release(d.ch)
		return nil, err
	}
	return d, nil
}

func (c *Chip) release(ch int) {
	c.mu.Lock()
	c.used[ch] = ""
	c.mu.Unlock()
}

// Dev is one channel of a chip. It is safe for concurrent use.
type Dev struct {
	chip   *Chip
	ch     int
	name   string
	safeOn bool

	mu     sync.Mutex
	level  float64
	halted bool
	buf    [5]byte
}

var _ sensors.Actuator = (*Dev)(nil)

// String names the channel, e.g. "pca9685(i2c 1, 0x40, channel 3)".
func (d *Dev) String() string { return d.name }

// Set drives the channel to level: 0 is full off, 1 full on (the
// dedicated bits of 7.3.3, so there is no 1/4096 glitch), anything between
// is round(level*4096) counts high from the start of the period. Levels
// outside 0..1 (and NaN) are an error, not clamped. A failed write drives
// the safe state, since the output is then unknown.
func (d *Dev) Set(level float64) error {
	if math.IsNaN(level) || level < 0 || level > 1 {
		return fmt.Errorf("pca9685: %s: level %v is outside 0..1", d.name, level)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.halted {
		return fmt.Errorf("%w: %s", ErrHalted, d.name)
	}
	if err := d.drive(level); err != nil {
		return errors.Join(err, d.applySafe())
	}
	return nil
}

// Level returns the level last set successfully, from software.
func (d *Dev) Level() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.level
}

// Safe drives the safe state. It works after Halt too.
func (d *Dev) Safe() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applySafe()
}

// Halt drives the safe state, refuses further Sets and frees the channel
// for a later Channel call. The chip keeps the output in the safe state
// while it has power.
func (d *Dev) Halt() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.halted {
		d.halted = true
		defer d.chip.release(d.ch)
	}
	return d.applySafe()
}

// applySafe drives the safe level. d.mu is held.
func (d *Dev) applySafe() error {
	if d.safeOn {
		return d.drive(1)
	}
	return d.drive(0)
}

// drive writes the channel's four registers in one auto-incremented
// write, LEDn_ON_L first (7.3.3): outputs change at the STOP (OCH = 0,
// 7.3.2), so ON and OFF never disagree for a cycle. d.mu is held.
func (d *Dev) drive(level float64) error {
	b := &d.buf
	*b = [5]byte{regLED0OnL + 4*byte(d.ch)}
	switch n := int(math.Round(level * steps)); {
	case n <= 0:
		b[4] = fullBit // LEDn_OFF_H full off; it wins over full on (7.3.3)
	case n >= steps:
		b[2] = fullBit // LEDn_ON_H full on, with full off cleared
	default:
		b[3], b[4] = byte(n), byte(n>>8) // on at count 0, off at count n
	}
	if err := d.chip.dev.Tx(b[:], nil); err != nil {
		return fmt.Errorf("pca9685: %s: set level %v: %w", d.name, level, err)
	}
	d.level = level
	return nil
}
