// Package tsl2561 drives a TAOS (now ams) TSL2561 light-to-digital
// converter on I2C and returns illuminance in lux, from the datasheet
// (TAOS059N, "TSL2560, TSL2561 Light-to-Digital Converter"; periph has no
// driver for it).
//
// Each Sense powers the chip up, checks that the control register reads
// back 0x03 (the datasheet's own presence check), programs gain and
// integration time, restarts the ADC with a power cycle, waits one
// integration on the injected clock, reads both photodiode channels with
// word reads and powers the chip down again, so nothing integrates between
// readings. The package owns the command
// bytes, the lux approximation for the two packages and the saturation
// check; it does not own the bus.
package tsl2561

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/sensors"
)

// The three addresses the ADDR SEL pin selects (datasheet "Slave address").
const (
	AddrLow   uint16 = 0x29 // ADDR SEL to GND
	AddrFloat uint16 = 0x39 // ADDR SEL floating (most breakouts)
	AddrHigh  uint16 = 0x49 // ADDR SEL to VDD
)

// Package values of the `package` option: the lux approximation differs
// between the chip-scale package and the others (datasheet "Calculating
// Lux").
const (
	PackageT  = "t"  // T, FN and CL packages (TMB-6, dual flat no-lead, ChipLED)
	PackageCS = "cs" // chip-scale package
)

// Gain values of the `gain` option.
const (
	Gain1    = "1"    // low gain, for bright light
	Gain16   = "16"   // high gain, for dim light
	GainAuto = "auto" // 16x, dropping to 1x for one re-measurement when saturated
)

// Command register (datasheet "Command Register"): bit 7 CMD must be 1,
// bit 5 WORD selects the two-byte protocol, bits 3:0 address a register.
const (
	cmd       = 0x80
	word      = 0x20
	regCtrl   = 0x00
	regTiming = 0x01
	regData0  = 0x0C // CH0 low byte; DATA0HIGH follows
	regData1  = 0x0E // CH1 low byte; DATA1HIGH follows

	powerUp   = 0x03 // CONTROL POWER bits (datasheet "Control Register")
	powerDown = 0x00
	gainBit   = 0x10 // TIMING bit 4 GAIN: 1 = 16x
)

// timing is one INTEG setting of the timing register (datasheet "Timing
// Register"): its code; the wait we use, the nominal time plus about 10 %
// for the tolerance of the internal oscillator; the factor that scales
// counts to the 402 ms the lux formula assumes (the datasheet's CHSCALE
// values 322/11 and 322/81: the three times are 11, 81 and 322 cycles of
// that oscillator, so 402/13.7 is not quite the factor); and the count at
// which the channel's counter is full for that time.
type timing struct {
	code  byte
	wait  time.Duration
	scale float64
	clip  uint16
}

var timings = map[time.Duration]timing{
	13700 * time.Microsecond: {0x00, 15 * time.Millisecond, 322.0 / 11, 5047},
	101 * time.Millisecond:   {0x01, 112 * time.Millisecond, 322.0 / 81, 37177},
	402 * time.Millisecond:   {0x02, 443 * time.Millisecond, 1, 65535},
}

// Opts are the tsl2561 keys of a sensor's YAML block.
type Opts struct {
	i2cbus.Opts `yaml:",inline"`
	// Gain is "1", "16" or "auto" (default).
	Gain string `yaml:"gain"`
	// IntegrationTime is 13.7ms, 101ms or 402ms (default). Longer is more
	// sensitive and less noisy.
	IntegrationTime time.Duration `yaml:"integration_time"`
	// Package is "t" (T, FN and CL packages, default; every common
	// breakout) or "cs" (chip-scale package).
	Package string `yaml:"package"`
}

// DefaultOpts returns bus "1", address 0x39, automatic gain, 402 ms and
// the T/FN/CL package.
func DefaultOpts() Opts {
	return Opts{
		Opts:            i2cbus.DefaultOpts(AddrFloat),
		Gain:            GainAuto,
		IntegrationTime: 402 * time.Millisecond,
		Package:         PackageT,
	}
}

// Validate checks the options; errors are *sensors.FieldError naming the key.
func (o *Opts) Validate() error {
	if err := o.Opts.Validate(); err != nil {
		return err
	}
	switch o.Address {
	case AddrLow, AddrFloat, AddrHigh:
	default:
		return sensors.FieldErrorf("address", "%#x is not a TSL2561 address (0x29, 0x39, 0x49)", o.Address)
	}
	switch o.Gain {
	case Gain1, Gain16, GainAuto:
	default:
		return sensors.FieldErrorf("gain", "%q is not one of 1, 16, auto", o.Gain)
	}
	if _, ok := timings[o.IntegrationTime]; !ok {
		return sensors.FieldErrorf("integration_time", "%v is not one of 13.7ms, 101ms, 402ms", o.IntegrationTime)
	}
	if o.Package != PackageT && o.Package != PackageCS {
		return sensors.FieldErrorf("package", "%q is not one of t, cs", o.Package)
	}
	return nil
}

// Quantities lists what the sensor measures.
func (o *Opts) Quantities() []sensors.Quantity {
	return []sensors.Quantity{sensors.Illuminance}
}

// ErrSaturated is returned (wrapped) when a channel reads its full-scale
// count: the light is too bright for the gain and integration time, and
// any lux value computed from it would be too low.
var ErrSaturated = errors.New("tsl2561: saturated")

// ErrNotTSL2561 is returned (wrapped) when the control register does not
// read back the power-up value just written: another device answers at
// the address.
var ErrNotTSL2561 = errors.New("tsl2561: control register does not read back 0x03")

// Dev is one TSL2561. Like every sensors.Sensor it is not safe for
// concurrent use; the shared bus is.
type Dev struct {
	dev  i2c.Dev
	name string
	t    timing
	cs   bool
	auto bool
	high bool // 16x now

	w   *sensors.Waiter
	on  [2]byte
	off [2]byte
	tim [2]byte
	reg [1]byte
	rb  [1]byte
	buf [2]byte
	q   []sensors.Quantity

	saturations atomic.Uint64
}

var _ sensors.Sensor = (*Dev)(nil)

// New returns the TSL2561 at opts.Address on bus. It sends nothing; the
// first Sense is the presence check. clock times the integration wait
// (nil means the system clock).
func New(bus i2c.Bus, clock sensors.Clock, opts Opts) (*Dev, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("tsl2561: %w", err)
	}
	return &Dev{
		dev:  i2c.Dev{Bus: bus, Addr: opts.Address},
		name: fmt.Sprintf("tsl2561(%s, %#x)", bus, opts.Address),
		t:    timings[opts.IntegrationTime],
		cs:   opts.Package == PackageCS,
		auto: opts.Gain == GainAuto,
		high: opts.Gain != Gain1,
		w:    sensors.NewWaiter(clock),
		on:   [2]byte{cmd | regCtrl, powerUp},
		off:  [2]byte{cmd | regCtrl, powerDown},
		q:    opts.Quantities(),
	}, nil
}

// String names the device and where it sits, e.g. "tsl2561(i2c 1, 0x39)".
func (d *Dev) String() string { return d.name }

// Quantities returns illuminance.
func (d *Dev) Quantities() []sensors.Quantity { return d.q }

// Saturations returns how many integrations saturated, for metrics.
func (d *Dev) Saturations() uint64 { return d.saturations.Load() }

// Sense measures once and writes lux into dst[0]. With automatic gain, a
// saturated 16x integration is repeated once at 1x, and a 1x reading dim
// enough for 16x makes the next Sense use 16x; so a Sense takes at most
// two integrations. It does not allocate unless it fails.
func (d *Dev) Sense(ctx context.Context, dst []float64) (err error) {
	if len(dst) < 1 {
		return fmt.Errorf("tsl2561: %s: dst is empty", d.name)
	}
	if err := d.dev.Tx(d.on[:], nil); err != nil {
		return fmt.Errorf("tsl2561: %s: power up: %w", d.name, err)
	}
	// Power down however the measurement ends, so a failed or cancelled
	// Sense does not leave the ADC integrating. The value goes into dst
	// only once that worked too: a failed Sense writes nothing.
	lux := math.NaN()
	defer func() {
		if perr := d.dev.Tx(d.off[:], nil); perr != nil && err == nil {
			err = fmt.Errorf("tsl2561: %s: power down: %w", d.name, perr)
		}
		if err == nil {
			dst[0] = lux
		}
	}()
	// Datasheet "Control Register": after 0x03 is written, a read returns
	// 0x03 (the reserved bits 7:2 read as zero); this verifies that a
	// TSL2561 is answering.
	d.reg[0] = cmd | regCtrl
	if err := d.dev.Tx(d.reg[:], d.rb[:]); err != nil {
		return fmt.Errorf("tsl2561: %s: read control register: %w", d.name, err)
	}
	if d.rb[0]&0x03 != powerUp {
		return fmt.Errorf("%w: %s: read %#02x", ErrNotTSL2561, d.name, d.rb[0])
	}
	for try := 0; ; try++ {
		ch0, ch1, err := d.integrate(ctx)
		if err != nil {
			return err
		}
		sat := ch0 >= d.t.clip || ch1 >= d.t.clip
		if sat {
			d.saturations.Add(1)
		}
		if sat && d.auto && d.high && try == 0 {
			d.high = false
			continue
		}
		if sat {
			return fmt.Errorf("%w: %s: CH0 %d, CH1 %d at gain %s (full scale %d); lower the gain or integration time",
				ErrSaturated, d.name, ch0, ch1, d.gainName(), d.t.clip)
		}
		lux = Lux(ch0, ch1, d.t.scale*d.gainScale(), d.cs)
		// Dim enough that 16x would stay below half of full scale:
		// switch up for the next reading.
		if d.auto && !d.high && uint32(max(ch0, ch1))*32 < uint32(d.t.clip) {
			d.high = true
		}
		return nil
	}
}

// integrate programs the timing register for the current gain, restarts
// the ADC by cycling power, waits one integration and reads both
// channels. The datasheet does not say what a timing write does to an
// integration already running, so the power cycle makes sure the one we
// wait for ran entirely at the new gain and time; the registers keep their
// values while powered down.
func (d *Dev) integrate(ctx context.Context) (ch0, ch1 uint16, err error) {
	d.tim = [2]byte{cmd | regTiming, d.t.code}
	if d.high {
		d.tim[1] |= gainBit
	}
	if err := d.dev.Tx(d.tim[:], nil); err != nil {
		return 0, 0, fmt.Errorf("tsl2561: %s: write timing register %#02x: %w", d.name, d.tim[1], err)
	}
	if err := d.dev.Tx(d.off[:], nil); err != nil {
		return 0, 0, fmt.Errorf("tsl2561: %s: power down to restart: %w", d.name, err)
	}
	if err := d.dev.Tx(d.on[:], nil); err != nil {
		return 0, 0, fmt.Errorf("tsl2561: %s: power up to restart: %w", d.name, err)
	}
	if err := d.w.Wait(ctx, d.t.wait); err != nil {
		return 0, 0, fmt.Errorf("tsl2561: %s: waiting for integration: %w", d.name, err)
	}
	if ch0, err = d.readWord(regData0); err != nil {
		return 0, 0, err
	}
	if ch1, err = d.readWord(regData1); err != nil {
		return 0, 0, err
	}
	return ch0, ch1, nil
}

// readWord reads a channel with the word protocol (datasheet "Command
// Register", "Word protocol"): low byte first.
func (d *Dev) readWord(reg byte) (uint16, error) {
	d.reg[0] = cmd | word | reg
	if err := d.dev.Tx(d.reg[:], d.buf[:]); err != nil {
		return 0, fmt.Errorf("tsl2561: %s: read channel register %#02x: %w", d.name, reg, err)
	}
	return uint16(d.buf[0]) | uint16(d.buf[1])<<8, nil
}

func (d *Dev) gainScale() float64 {
	if d.high {
		return 1
	}
	return 16
}

func (d *Dev) gainName() string {
	if d.high {
		return "16x"
	}
	return "1x"
}

// Halt powers the chip down (CONTROL 0x00). Sense already does after each
// reading; this matters if the process stops while the chip is on.
func (d *Dev) Halt() error {
	d.w.Stop()
	if err := d.dev.Tx(d.off[:], nil); err != nil {
		return fmt.Errorf("tsl2561: %s: power down: %w", d.name, err)
	}
	return nil
}

// Lux computes illuminance from the two channel counts with the
// datasheet's empirical formula ("Calculating Lux"), which assumes 16x
// gain and 402 ms: scale multiplies both counts to that setting (16 for
// 1x gain, times 322/11 or 322/81 for the short integrations). cs selects
// the chip-scale package coefficients. The result is never negative: the
// formula gives 0 for CH1/CH0 above 1.30 (almost pure infrared).
func Lux(ch0, ch1 uint16, scale float64, cs bool) float64 {
	if ch0 == 0 {
		return 0
	}
	c0, c1 := float64(ch0)*scale, float64(ch1)*scale
	r := c1 / c0
	var lux float64
	if cs {
		switch {
		case r <= 0.52:
			lux = 0.0315*c0 - 0.0593*c0*math.Pow(r, 1.4)
		case r <= 0.65:
			lux = 0.0229*c0 - 0.0291*c1
		case r <= 0.80:
			lux = 0.0157*c0 - 0.0180*c1
		case r <= 1.30:
			lux = 0.00338*c0 - 0.00260*c1
		}
	} else {
		switch {
		case r <= 0.50:
			lux = 0.0304*c0 - 0.062*c0*math.Pow(r, 1.4)
		case r <= 0.61:
			lux = 0.0224*c0 - 0.031*c1
		case r <= 0.80:
			lux = 0.0128*c0 - 0.0153*c1
		case r <= 1.30:
			lux = 0.00146*c0 - 0.00112*c1
		}
	}
	return max(lux, 0)
}
