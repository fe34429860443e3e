// Package ads1x15 drives a Texas Instruments ADS1115 (16-bit) or ADS1015
// (12-bit) analog-to-digital converter on I2C: one single-shot conversion
// of one single-ended input (AIN0..AIN3 against GND) per Sense, reported as
// voltage. Optionally it turns the voltage of a light-dependent resistor
// (LDR) divider into an approximate illuminance.
//
// It is written on i2c.Dev from the datasheets (TI SBAS444 for the
// ADS1115, SBAS473 for the ADS1015): periph's ads1x15 package runs its own
// goroutines for continuous reads and sleeps with time.Sleep, which can be
// neither injected nor cancelled. The package owns the config word, the
// conversion wait and the conversion to volts; it does not own the bus.
//
// The LDR mapping is honest only as an approximation: an LDR's resistance
// follows R = R10 · (lux/10)^-gamma only roughly, R10 varies by a factor
// of two or more between parts of one type, and the curve drifts with
// temperature and age. Expect a useful relative light level (dawn, cloud,
// lamp on), not a calibrated lux value; use a BH1750, TSL2561 or VEML7700
// where lux must be right, or calibrate with the calibrate_linear filter.
package ads1x15

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/sensors"
)

// The four addresses the ADDR pin selects (datasheet table 4).
const (
	AddrGND uint16 = 0x48 // ADDR to GND
	AddrVDD uint16 = 0x49 // ADDR to VDD
	AddrSDA uint16 = 0x4A // ADDR to SDA
	AddrSCL uint16 = 0x4B // ADDR to SCL
)

// Chip values of the `chip` option.
const (
	ADS1115 = "ads1115"
	ADS1015 = "ads1015"
)

// LDR sides of the `ldr.side` option: where the LDR sits in the divider.
const (
	SideVCC = "vcc" // LDR between vcc and the input, resistor to GND: more light, more volts
	SideGND = "gnd" // resistor between vcc and the input, LDR to GND: more light, fewer volts
)

// Register pointers (datasheet "Address Pointer Register").
const (
	regConversion = 0x00
	regConfig     = 0x01
)

// Config register fields (datasheet "Config Register Field Descriptions").
const (
	cfgOS     = 1 << 15 // write: start a single conversion; read: 1 = idle
	cfgMuxAIN = 0b100   // MUX[2:0] = 1xx: AINx against GND, x in the low bits
	cfgSingle = 1 << 8  // MODE: single-shot, power down after the conversion
	cfgNoComp = 0b11    // COMP_QUE: comparator disabled, ALERT/RDY high impedance
)

// pga maps a full-scale range in volts to its PGA[2:0] code.
var pga = map[float64]uint16{
	6.144: 0b000,
	4.096: 0b001,
	2.048: 0b010,
	1.024: 0b011,
	0.512: 0b100,
	0.256: 0b101,
}

// rates maps samples per second to the DR[2:0] code, per chip.
var rates = map[string]map[int]uint16{
	ADS1115: {8: 0, 16: 1, 32: 2, 64: 3, 128: 4, 250: 5, 475: 6, 860: 7},
	ADS1015: {128: 0, 250: 1, 490: 2, 920: 3, 1600: 4, 2400: 5, 3300: 6},
}

// wakeup covers the power-up from single-shot power-down before a
// conversion starts (about 25 µs in the datasheet), with margin.
const wakeup = 50 * time.Microsecond

// maxPolls bounds how often Sense reads the OS bit after its wait before
// it gives up on the conversion.
const maxPolls = 3

// LDROpts describe a light-dependent resistor in a voltage divider with a
// fixed resistor, fed from vcc, measured at the junction.
type LDROpts struct {
	// SeriesOhms is the fixed resistor, e.g. 10000.
	SeriesOhms float64 `yaml:"series_ohms"`
	// VCC is the divider's supply in volts, e.g. 3.3. It must not exceed
	// the ADC's supply, and should not exceed the full-scale range.
	VCC float64 `yaml:"vcc"`
	// OhmsAt10Lux is the LDR's resistance at 10 lx from its datasheet,
	// e.g. 10000..20000 for a GL5528.
	OhmsAt10Lux float64 `yaml:"ohms_at_10lx"`
	// Gamma is the slope of log R against log lux from its datasheet,
	// e.g. 0.7 for a GL5528.
	Gamma float64 `yaml:"gamma"`
	// Side is where the LDR sits: "vcc" (default) or "gnd".
	Side string `yaml:"side"`
}

// Validate checks the LDR options; errors name the key under ldr.
func (l *LDROpts) Validate() error {
	pos := func(key string, v float64, hint string) error {
		if !(v > 0) || math.IsInf(v, 0) {
			return sensors.FieldErrorf("ldr", "%s must be a positive number (%s)", key, hint)
		}
		return nil
	}
	if err := pos("series_ohms", l.SeriesOhms, "the fixed resistor, e.g. 10000"); err != nil {
		return err
	}
	if err := pos("vcc", l.VCC, "the divider's supply, e.g. 3.3"); err != nil {
		return err
	}
	if l.VCC > 5.5 {
		return sensors.FieldErrorf("ldr", "vcc %v is above the ADS1x15's 5.5 V supply limit", l.VCC)
	}
	if err := pos("ohms_at_10lx", l.OhmsAt10Lux, "from the LDR's datasheet, e.g. 15000 for a GL5528"); err != nil {
		return err
	}
	if !(l.Gamma >= 0.1 && l.Gamma <= 3) {
		return sensors.FieldErrorf("ldr", "gamma %v is out of range 0.1..3 (from the LDR's datasheet, e.g. 0.7 for a GL5528)", l.Gamma)
	}
	if l.Side != "" && l.Side != SideVCC && l.Side != SideGND {
		return sensors.FieldErrorf("ldr", "side %q is not one of vcc, gnd", l.Side)
	}
	return nil
}

// Lux maps the divider voltage v to approximate illuminance: the LDR's
// resistance from the divider, then lux = 10 · (R10 / R)^(1/gamma). A
// voltage that puts the LDR at infinite resistance is darkness (0 lx); one
// that puts it at zero resistance is an error (a short, or vcc set wrong).
func (l *LDROpts) Lux(v float64) (float64, error) {
	top, bottom := l.VCC-v, v // volts across the upper and lower leg
	if l.Side == SideGND {
		top, bottom = bottom, top
	}
	// The LDR is the upper leg: R = Rs · top / bottom.
	if bottom <= 0 {
		return 0, nil
	}
	if top <= 0 {
		return 0, fmt.Errorf("ads1x15: ldr: %.4f V means zero LDR resistance (vcc %v V, side %s): check the wiring and vcc", v, l.VCC, l.side())
	}
	r := l.SeriesOhms * top / bottom
	lux := 10 * math.Pow(l.OhmsAt10Lux/r, 1/l.Gamma)
	if math.IsInf(lux, 0) || math.IsNaN(lux) {
		return 0, fmt.Errorf("ads1x15: ldr: %.4f V gives LDR resistance %g Ω, too low to map to lux", v, r)
	}
	return lux, nil
}

func (l *LDROpts) side() string {
	if l.Side == "" {
		return SideVCC
	}
	return l.Side
}

// Opts are the ads1x15 keys of a sensor's YAML block.
type Opts struct {
	i2cbus.Opts `yaml:",inline"`
	// Chip is "ads1115" (16 bits, default) or "ads1015" (12 bits).
	Chip string `yaml:"chip"`
	// Channel is the single-ended input, 0..3 (AIN0..AIN3 against GND).
	Channel int `yaml:"channel"`
	// Gain is the programmable gain amplifier's full-scale range in volts
	// (as ESPHome writes it): 6.144, 4.096 (default), 2.048, 1.024, 0.512
	// or 0.256. Inputs never may exceed the chip's supply plus 0.3 V,
	// whatever the range.
	Gain float64 `yaml:"gain"`
	// DataRate is samples per second: for the ADS1115 8, 16, 32, 64, 128
	// (default), 250, 475 or 860; for the ADS1015 128, 250, 490, 920,
	// 1600, 2400 or 3300. Slower is less noisy.
	DataRate int `yaml:"data_rate"`
	// LDR, when set, also reports illuminance from an LDR divider.
	LDR *LDROpts `yaml:"ldr"`
}

// DefaultOpts returns bus "1", address 0x48, an ADS1115 on AIN0 at
// ±4.096 V and 128 samples per second, no LDR.
func DefaultOpts() Opts {
	return Opts{Opts: i2cbus.DefaultOpts(AddrGND), Chip: ADS1115, Gain: 4.096, DataRate: 128}
}

// Validate checks the options; errors are *sensors.FieldError naming the key.
func (o *Opts) Validate() error {
	if err := o.Opts.Validate(); err != nil {
		return err
	}
	if o.Address < AddrGND || o.Address > AddrSCL {
		return sensors.FieldErrorf("address", "%#x is not an ADS1x15 address (0x48..0x4b)", o.Address)
	}
	rs, ok := rates[o.Chip]
	if !ok {
		return sensors.FieldErrorf("chip", "%q is not one of ads1115, ads1015", o.Chip)
	}
	if o.Channel < 0 || o.Channel > 3 {
		return sensors.FieldErrorf("channel", "%d is out of range 0..3", o.Channel)
	}
	if _, ok := pga[o.Gain]; !ok {
		return sensors.FieldErrorf("gain", "%v is not one of 6.144, 4.096, 2.048, 1.024, 0.512, 0.256 (full-scale volts)", o.Gain)
	}
	if _, ok := rs[o.DataRate]; !ok {
		if o.Chip == ADS1115 {
			return sensors.FieldErrorf("data_rate", "%d is not an ADS1115 rate (8, 16, 32, 64, 128, 250, 475, 860)", o.DataRate)
		}
		return sensors.FieldErrorf("data_rate", "%d is not an ADS1015 rate (128, 250, 490, 920, 1600, 2400, 3300)", o.DataRate)
	}
	if o.LDR != nil {
		return o.LDR.Validate()
	}
	return nil
}

// Quantities lists what the sensor measures: voltage, and illuminance when
// an LDR is configured.
func (o *Opts) Quantities() []sensors.Quantity {
	if o.LDR != nil {
		return []sensors.Quantity{sensors.Voltage, sensors.Illuminance}
	}
	return []sensors.Quantity{sensors.Voltage}
}

// ErrClipped is returned (wrapped) when the conversion reads the positive
// full-scale code: the input is at or above the range, and the true
// voltage is unknown.
var ErrClipped = errors.New("ads1x15: input at or above full scale")

// ErrBusy is returned (wrapped) when the OS bit still says "converting"
// after the wait and maxPolls further polls.
var ErrBusy = errors.New("ads1x15: conversion did not finish")

// ErrConfigMismatch is returned (wrapped) when the config register does
// not read back what was written: another device answers at the address.
var ErrConfigMismatch = errors.New("ads1x15: config register does not read back")

// Dev is one input of one ADS1x15. Like every sensors.Sensor it is not
// safe for concurrent use; the shared bus is. Two inputs of one chip are
// two sensors at one address, which the config loader refuses; read one
// channel per chip, or put the second chip at another address.
type Dev struct {
	dev    i2c.Dev
	name   string
	cfg    uint16
	wait   time.Duration
	poll   time.Duration
	shift  uint    // 4 for the ADS1015's left-justified 12 bits
	lsb    float64 // volts per count
	maxRaw int16   // positive full-scale code after the shift
	ldr    *LDROpts

	w    *sensors.Waiter
	wbuf [3]byte
	reg  [1]byte
	rbuf [2]byte
	q    []sensors.Quantity
}

var _ sensors.Sensor = (*Dev)(nil)

// New returns the ADS1x15 input described by opts on bus. It sends
// nothing; the first Sense is the presence check. clock times the
// conversion wait (nil means the system clock).
func New(bus i2c.Bus, clock sensors.Clock, opts Opts) (*Dev, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("ads1x15: %w", err)
	}
	period := time.Second / time.Duration(opts.DataRate)
	d := &Dev{
		dev:  i2c.Dev{Bus: bus, Addr: opts.Address},
		name: fmt.Sprintf("%s(%s, %#x, AIN%d)", opts.Chip, bus, opts.Address, opts.Channel),
		cfg: cfgOS | (cfgMuxAIN|uint16(opts.Channel))<<12 | pga[opts.Gain]<<9 | cfgSingle |
			rates[opts.Chip][opts.DataRate]<<5 | cfgNoComp,
		// The data rate may be 10 % slow (datasheet "Electrical
		// Characteristics"); polls after that wait a tenth of a period.
		wait:   period + period/10 + wakeup,
		poll:   max(period/10, 100*time.Microsecond),
		shift:  0,
		lsb:    opts.Gain / 32768,
		maxRaw: math.MaxInt16,
		w:      sensors.NewWaiter(clock),
		q:      opts.Quantities(),
	}
	if opts.Chip == ADS1015 {
		d.shift, d.lsb, d.maxRaw = 4, opts.Gain/2048, 0x7FF
	}
	if opts.LDR != nil {
		l := *opts.LDR
		d.ldr = &l
	}
	return d, nil
}

// String names the device, its bus, address and input, e.g.
// "ads1115(i2c 1, 0x48, AIN0)".
func (d *Dev) String() string { return d.name }

// Quantities returns voltage, and illuminance with an LDR.
func (d *Dev) Quantities() []sensors.Quantity { return d.q }

// Config returns the config register value Sense writes, for `edged read`
// and tests.
func (d *Dev) Config() uint16 { return d.cfg }

// Sense starts a single-shot conversion, waits one conversion period,
// confirms with the OS bit that it finished, and writes volts into dst[0]
// (and lux into dst[1] with an LDR). It does not allocate unless it fails.
func (d *Dev) Sense(ctx context.Context, dst []float64) error {
	if len(dst) < len(d.q) {
		return fmt.Errorf("ads1x15: %s: dst has %d elements, want %d", d.name, len(dst), len(d.q))
	}
	d.wbuf = [3]byte{regConfig, byte(d.cfg >> 8), byte(d.cfg)}
	if err := d.dev.Tx(d.wbuf[:], nil); err != nil {
		return fmt.Errorf("ads1x15: %s: start conversion (config %#04x): %w", d.name, d.cfg, err)
	}
	wait := d.wait
	for polls := 0; ; polls++ {
		if err := d.w.Wait(ctx, wait); err != nil {
			return fmt.Errorf("ads1x15: %s: waiting for conversion: %w", d.name, err)
		}
		got, err := d.read(regConfig, "read config")
		if err != nil {
			return err
		}
		if got&^cfgOS != d.cfg&^cfgOS {
			return fmt.Errorf("%w: %s: wrote %#04x, read %#04x", ErrConfigMismatch, d.name, d.cfg, got)
		}
		if got&cfgOS != 0 {
			break
		}
		if polls == maxPolls {
			return fmt.Errorf("%w: %s: still converting after %v", ErrBusy, d.name, d.wait+maxPolls*d.poll)
		}
		wait = d.poll
	}
	raw, err := d.read(regConversion, "read conversion")
	if err != nil {
		return err
	}
	code := int16(raw) >> d.shift
	if code >= d.maxRaw {
		return fmt.Errorf("%w: %s: code %#04x", ErrClipped, d.name, raw)
	}
	v := float64(code) * d.lsb
	if d.ldr != nil {
		lux, err := d.ldr.Lux(v)
		if err != nil {
			return fmt.Errorf("%s: %w", d.name, err)
		}
		dst[1] = lux
	}
	dst[0] = v
	return nil
}

// read reads a 16-bit register, most significant byte first (datasheet
// "Reading From the ADS111x"): pointer write, repeated start, two bytes.
func (d *Dev) read(reg byte, op string) (uint16, error) {
	d.reg[0] = reg
	if err := d.dev.Tx(d.reg[:], d.rbuf[:]); err != nil {
		return 0, fmt.Errorf("ads1x15: %s: %s: %w", d.name, op, err)
	}
	return uint16(d.rbuf[0])<<8 | uint16(d.rbuf[1]), nil
}

// Halt sends nothing: in single-shot mode the chip powers down after each
// conversion by itself, so there is nothing to stop, and the bus is not
// the device's to close. It releases the wait timer.
func (d *Dev) Halt() error {
	d.w.Stop()
	return nil
}
