// Package bh1750 drives a ROHM BH1750FVI ambient light sensor on I2C,
// returning illuminance in lux.
//
// It is written on i2c.Dev from the datasheet instead of wrapping
// periph.io/x/devices/v3/bh1750, because that driver: returns lux typed as
// physic.LuminousFlux (lumens); writes the reset opcode 0x07 where it means
// Power Down (0x00), so Halt leaves the chip powered; sleeps with
// time.Sleep, which can be neither injected nor cancelled; re-sends the
// mode inside the read transaction; and has no measurement-time (MTreg)
// setting. Fixing that around it would take more code than these lines,
// and its traffic could not be pinned byte for byte.
//
// Page numbers below are those of the BH1750FVI datasheet (rev. D, 2011).
package bh1750

import (
	"context"
	"fmt"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/sensors"
)

// The two addresses the ADDR pin selects (p.10).
const (
	Addr    uint16 = 0x23 // ADDR low
	AltAddr uint16 = 0x5C // ADDR high
)

// Resolution values of the `resolution` option.
const (
	High  = "high"  // 1 lx steps, 120 ms typical
	High2 = "high2" // 0.5 lx steps, 120 ms typical
	Low   = "low"   // 4 lx steps, 16 ms typical
)

// Instruction set (p.5).
const (
	opPowerDown = 0x00
	opPowerOn   = 0x01
	opMTregHigh = 0x40 // 01000_MT[7:5]
	opMTregLow  = 0x60 // 011_MT[4:0]
)

// DefaultMTreg is the power-on measurement time register; the lux formula's
// factor 69/MTreg is 1 there (p.11).
const DefaultMTreg = 69

// mode is a one-time measurement command (p.5: the chip powers itself down
// after the reading) with its maximum measurement time at MTreg 69 (p.2)
// and its lux per count divisor relative to high resolution.
type mode struct {
	op   byte
	wait time.Duration
	div  float64
}

var modes = map[string]mode{
	High:  {0x20, 180 * time.Millisecond, 1},
	High2: {0x21, 180 * time.Millisecond, 2},
	Low:   {0x23, 24 * time.Millisecond, 1},
}

// Opts are the bh1750 keys of a sensor's YAML block.
type Opts struct {
	i2cbus.Opts `yaml:",inline"`
	// Resolution is high (default), high2 or low.
	Resolution string `yaml:"resolution"`
	// MTreg scales the measurement time and so the sensitivity, 31..254
	// (p.11). Raise it behind dark glass, lower it in direct sun: at 31
	// high resolution reads up to about 121,000 lx instead of 54,612.
	MTreg int `yaml:"mtreg"`
}

// DefaultOpts returns bus "1", address 0x23, high resolution, MTreg 69.
func DefaultOpts() Opts {
	return Opts{Opts: i2cbus.DefaultOpts(Addr), Resolution: High, MTreg: DefaultMTreg}
}

// Validate checks the options; errors are *sensors.FieldError naming the key.
func (o *Opts) Validate() error {
	if err := o.Opts.Validate(); err != nil {
		return err
	}
	if _, ok := modes[o.Resolution]; !ok {
		return sensors.FieldErrorf("resolution", "%q is not one of high, high2, low", o.Resolution)
	}
	if o.MTreg < 31 || o.MTreg > 254 {
		return sensors.FieldErrorf("mtreg", "%d is out of range 31..254", o.MTreg)
	}
	return nil
}

// Quantities lists what the sensor measures.
func (o *Opts) Quantities() []sensors.Quantity {
	return []sensors.Quantity{sensors.Illuminance}
}

// Dev is one BH1750. Like every sensors.Sensor it is not safe for
// concurrent use; the shared bus is.
type Dev struct {
	dev   i2c.Dev
	name  string
	cmds  [4][1]byte // power on, MTreg high, MTreg low, measure
	wait  time.Duration
	scale float64 // lux per count
	w     *sensors.Waiter
	off   [1]byte
	buf   [2]byte
	q     []sensors.Quantity
}

var _ sensors.Sensor = (*Dev)(nil)

// New returns the BH1750 at opts.Address on bus. It sends nothing; the
// first Sense is the presence check. clock times the measurement wait
// (nil means the system clock).
func New(bus i2c.Bus, clock sensors.Clock, opts Opts) (*Dev, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("bh1750: %w", err)
	}
	m := modes[opts.Resolution]
	mt := opts.MTreg
	return &Dev{
		dev:  i2c.Dev{Bus: bus, Addr: opts.Address},
		name: fmt.Sprintf("bh1750(%s, %#x)", bus, opts.Address),
		cmds: [4][1]byte{
			{opPowerOn},
			{opMTregHigh | byte(mt>>5)},
			{opMTregLow | byte(mt&0x1F)},
			{m.op},
		},
		// The measurement time grows with MTreg (p.11); round up.
		wait:  (m.wait*time.Duration(mt) + DefaultMTreg - 1) / DefaultMTreg,
		scale: Lux(1, mt) / m.div,
		w:     sensors.NewWaiter(clock),
		off:   [1]byte{opPowerDown},
		q:     opts.Quantities(),
	}, nil
}

// String names the device and where it sits, e.g. "bh1750(i2c 1, 0x23)".
func (d *Dev) String() string { return d.name }

// Quantities returns illuminance.
func (d *Dev) Quantities() []sensors.Quantity { return d.q }

// Sense powers the chip on, sets MTreg, starts a one-time measurement,
// waits the maximum measurement time and writes lux into dst[0]. MTreg is
// written every time because the chip forgets it on a brown-out, after
// which readings would be silently off by 69/MTreg. It does not allocate
// unless it fails.
func (d *Dev) Sense(ctx context.Context, dst []float64) error {
	if len(dst) < 1 {
		return fmt.Errorf("bh1750: %s: dst is empty", d.name)
	}
	for i := range d.cmds {
		if err := d.dev.Tx(d.cmds[i][:], nil); err != nil {
			return fmt.Errorf("bh1750: %s: write instruction %#02x: %w", d.name, d.cmds[i][0], err)
		}
	}
	if err := d.w.Wait(ctx, d.wait); err != nil {
		return fmt.Errorf("bh1750: %s: waiting for measurement: %w", d.name, err)
	}
	if err := d.dev.Tx(nil, d.buf[:]); err != nil {
		return fmt.Errorf("bh1750: %s: read measurement: %w", d.name, err)
	}
	dst[0] = float64(uint16(d.buf[0])<<8|uint16(d.buf[1])) * d.scale
	return nil
}

// Halt sends Power Down (0x00), which is what a one-time measurement ends
// in anyway; it matters after a measurement was cancelled midway.
func (d *Dev) Halt() error {
	d.w.Stop()
	if err := d.dev.Tx(d.off[:], nil); err != nil {
		return fmt.Errorf("bh1750: %s: power down: %w", d.name, err)
	}
	return nil
}

// Lux converts a high-resolution count to lux (p.7 and p.11):
// lux = count / 1.2 * (69 / MTreg). High resolution mode 2 counts half-lux
// steps, so its result is half of this.
func Lux(count uint16, mtreg int) float64 {
	return float64(count) / 1.2 * DefaultMTreg / float64(mtreg)
}
