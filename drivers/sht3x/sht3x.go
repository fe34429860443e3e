// Package sht3x drives a Sensirion SHT30/SHT31/SHT35 (SHT3x-DIS) humidity
// and temperature sensor on I2C, from the datasheet (periph has no driver
// for it).
//
// It uses single-shot measurements with clock stretching disabled: the
// BCM2835 I2C controller mishandles clock stretching, and a single shot
// leaves the sensor idle between readings, so nothing heats it. The package
// owns the command bytes, the conversion wait, the CRC check and the
// conversion to °C and %RH; it does not own the bus.
package sht3x

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/edged/edged/drivers/crc8"
	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/sensors"
)

// The two addresses the ADDR pin selects (datasheet table 7).
const (
	Addr    uint16 = 0x44 // ADDR to VSS
	AltAddr uint16 = 0x45 // ADDR to VDD
)

// Repeatability values of the `repeatability` option: higher repeatability
// means less noise and a longer conversion.
const (
	High   = "high"
	Medium = "medium"
	Low    = "low"
)

// mode is one row of datasheet table 9 (single shot, clock stretching
// disabled: command MSB 0x24) with the maximum measurement duration of
// table 4, which already includes the wake-up time.
type mode struct {
	lsb  byte
	wait time.Duration
}

var modes = map[string]mode{
	High:   {0x00, 15500 * time.Microsecond},
	Medium: {0x0B, 6500 * time.Microsecond},
	Low:    {0x16, 4500 * time.Microsecond},
}

// Opts are the sht3x keys of a sensor's YAML block.
type Opts struct {
	i2cbus.Opts `yaml:",inline"`
	// Repeatability is high (default), medium or low.
	Repeatability string `yaml:"repeatability"`
}

// DefaultOpts returns bus "1", address 0x44 and high repeatability.
func DefaultOpts() Opts {
	return Opts{Opts: i2cbus.DefaultOpts(Addr), Repeatability: High}
}

// Validate checks the options; errors are *sensors.FieldError naming the key.
func (o *Opts) Validate() error {
	if err := o.Opts.Validate(); err != nil {
		return err
	}
	if _, ok := modes[o.Repeatability]; !ok {
		return sensors.FieldErrorf("repeatability", "%q is not one of high, medium, low", o.Repeatability)
	}
	return nil
}

// Quantities lists what the sensor measures, in the order Sense fills dst.
func (o *Opts) Quantities() []sensors.Quantity {
	return []sensors.Quantity{sensors.Temperature, sensors.Humidity}
}

// ErrCRC is returned (wrapped) when a word read from the sensor fails its
// checksum: noise on long wires, or a second master on the bus.
var ErrCRC = errors.New("sht3x: crc mismatch")

// Dev is one SHT3x. Like every sensors.Sensor it is not safe for
// concurrent use; the shared bus is.
type Dev struct {
	dev  i2c.Dev
	name string
	cmd  [2]byte
	wait time.Duration
	w    *sensors.Waiter
	buf  [6]byte
	q    []sensors.Quantity

	crcErrors atomic.Uint64
}

var _ sensors.Sensor = (*Dev)(nil)

// New returns the SHT3x at opts.Address on bus. It sends nothing: the
// first Sense is the presence check, so a sensor that is unplugged at
// start-up is reported by the poller like any failing sensor. clock times
// the conversion wait (nil means the system clock).
func New(bus i2c.Bus, clock sensors.Clock, opts Opts) (*Dev, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("sht3x: %w", err)
	}
	m := modes[opts.Repeatability]
	return &Dev{
		dev:  i2c.Dev{Bus: bus, Addr: opts.Address},
		name: fmt.Sprintf("sht3x(%s, %#x)", bus, opts.Address),
		cmd:  [2]byte{0x24, m.lsb},
		wait: m.wait,
		w:    sensors.NewWaiter(clock),
		q:    opts.Quantities(),
	}, nil
}

// String names the device and where it sits, e.g. "sht3x(i2c 1, 0x44)".
func (d *Dev) String() string { return d.name }

// Quantities returns temperature and humidity.
func (d *Dev) Quantities() []sensors.Quantity { return d.q }

// CRCErrors returns how many readings failed their checksum, for metrics.
func (d *Dev) CRCErrors() uint64 { return d.crcErrors.Load() }

// Sense starts a single-shot measurement, waits the datasheet's maximum
// conversion time and reads temperature (°C) into dst[0] and relative
// humidity (%) into dst[1]. It does not allocate unless it fails.
func (d *Dev) Sense(ctx context.Context, dst []float64) error {
	if len(dst) < 2 {
		return fmt.Errorf("sht3x: %s: dst has %d elements, want 2", d.name, len(dst))
	}
	if err := d.dev.Tx(d.cmd[:], nil); err != nil {
		return fmt.Errorf("sht3x: %s: start measurement: %w", d.name, err)
	}
	if err := d.w.Wait(ctx, d.wait); err != nil {
		return fmt.Errorf("sht3x: %s: waiting for conversion: %w", d.name, err)
	}
	// Datasheet 4.4: with clock stretching disabled, a read header before
	// the conversion ends is NACKed, which periph reports as an error.
	if err := d.dev.Tx(nil, d.buf[:]); err != nil {
		return fmt.Errorf("sht3x: %s: read measurement: %w", d.name, err)
	}
	t, err := d.word(d.buf[0:3], "temperature")
	if err != nil {
		return err
	}
	rh, err := d.word(d.buf[3:6], "humidity")
	if err != nil {
		return err
	}
	dst[0], dst[1] = Temperature(t), Humidity(rh)
	return nil
}

// word checks the CRC of one big-endian word followed by its checksum.
func (d *Dev) word(b []byte, what string) (uint16, error) {
	w := uint16(b[0])<<8 | uint16(b[1])
	if want := crc8.Sensirion(b[:2]); b[2] != want {
		d.crcErrors.Add(1)
		return 0, fmt.Errorf("%w: %s: %s word %#04x has checksum %#02x, want %#02x", ErrCRC, d.name, what, w, b[2], want)
	}
	return w, nil
}

// Halt sends nothing: in single-shot mode the sensor returns to idle after
// every measurement by itself (datasheet 4.3), so there is nothing to
// stop, and the bus is not the device's to close. It releases the wait
// timer; Sense may still be called afterwards.
func (d *Dev) Halt() error {
	d.w.Stop()
	return nil
}

// Temperature converts a raw temperature word to °C (datasheet 4.13):
// T = -45 + 175 * raw / (2^16 - 1).
func Temperature(raw uint16) float64 { return -45 + 175*float64(raw)/65535 }

// Humidity converts a raw humidity word to %RH (datasheet 4.13):
// RH = 100 * raw / (2^16 - 1).
func Humidity(raw uint16) float64 { return 100 * float64(raw) / 65535 }
