// Package sht4x drives a Sensirion SHT40/SHT41/SHT43/SHT45 humidity and
// temperature sensor on I2C, from the SHT4x datasheet (version 6,
// February 2023); periph has no driver for it.
//
// Every measurement is a single command that the sensor answers, after its
// conversion time, with six bytes: temperature and humidity words, each
// followed by the same CRC-8 as the SHT3x. The sensor never stretches the
// clock and idles between measurements, so nothing heats it. The package
// owns the command bytes, the conversion wait, the CRC check and the
// conversion to °C and %RH; it does not own the bus.
package sht4x

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

// The addresses the SHT4x variants are made with (datasheet "Device
// Overview" and "Ordering Information"): the address is fixed at the
// factory, not selected by a pin.
const (
	Addr     uint16 = 0x44 // SHT4x-A*
	AltAddrB uint16 = 0x45 // SHT40-B*
	AltAddrC uint16 = 0x46 // SHT40-C*
)

// Precision values of the `precision` option: higher precision means less
// noise and a longer conversion.
const (
	High   = "high"
	Medium = "medium"
	Low    = "low"
)

// mode is one measurement command of the datasheet's command overview
// with the maximum measurement duration of its timing table.
type mode struct {
	cmd  byte
	wait time.Duration
}

var modes = map[string]mode{
	High:   {0xFD, 8300 * time.Microsecond},
	Medium: {0xF6, 4500 * time.Microsecond},
	Low:    {0xE0, 1600 * time.Microsecond},
}

// cmdSoftReset is the soft reset command (datasheet "Command Overview";
// "Soft Reset"): the sensor restarts and returns to idle within 1 ms.
const cmdSoftReset = 0x94

// Opts are the sht4x keys of a sensor's YAML block.
type Opts struct {
	i2cbus.Opts `yaml:",inline"`
	// Precision is high (default), medium or low.
	Precision string `yaml:"precision"`
}

// DefaultOpts returns bus "1", address 0x44 and high precision.
func DefaultOpts() Opts {
	return Opts{Opts: i2cbus.DefaultOpts(Addr), Precision: High}
}

// Validate checks the options; errors are *sensors.FieldError naming the key.
// Only the three factory addresses are accepted: a typo such as 0x40 would
// otherwise be found only when the first reading fails.
func (o *Opts) Validate() error {
	if err := o.Opts.Validate(); err != nil {
		return err
	}
	if o.Address != Addr && o.Address != AltAddrB && o.Address != AltAddrC {
		return sensors.FieldErrorf("address", "%#x is not an SHT4x address (0x44, 0x45 or 0x46)", o.Address)
	}
	if _, ok := modes[o.Precision]; !ok {
		return sensors.FieldErrorf("precision", "%q is not one of high, medium, low", o.Precision)
	}
	return nil
}

// Quantities lists what the sensor measures, in the order Sense fills dst.
func (o *Opts) Quantities() []sensors.Quantity {
	return []sensors.Quantity{sensors.Temperature, sensors.Humidity}
}

// ErrCRC is returned (wrapped) when a word read from the sensor fails its
// checksum: noise on long wires, or a second master on the bus.
var ErrCRC = errors.New("sht4x: crc mismatch")

// Dev is one SHT4x. Like every sensors.Sensor it is not safe for
// concurrent use; the shared bus is.
type Dev struct {
	dev   i2c.Dev
	name  string
	cmd   [1]byte
	reset [1]byte
	wait  time.Duration
	w     *sensors.Waiter
	buf   [6]byte
	q     []sensors.Quantity

	crcErrors atomic.Uint64
}

var _ sensors.Sensor = (*Dev)(nil)

// New returns the SHT4x at opts.Address on bus. It sends nothing: the
// first Sense is the presence check, so a sensor that is unplugged at
// start-up is reported by the poller like any failing sensor. clock times
// the conversion wait (nil means the system clock).
func New(bus i2c.Bus, clock sensors.Clock, opts Opts) (*Dev, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("sht4x: %w", err)
	}
	m := modes[opts.Precision]
	return &Dev{
		dev:   i2c.Dev{Bus: bus, Addr: opts.Address},
		name:  fmt.Sprintf("sht4x(%s, %#x)", bus, opts.Address),
		cmd:   [1]byte{m.cmd},
		reset: [1]byte{cmdSoftReset},
		wait:  m.wait,
		w:     sensors.NewWaiter(clock),
		q:     opts.Quantities(),
	}, nil
}

// String names the device and where it sits, e.g. "sht4x(i2c 1, 0x44)".
func (d *Dev) String() string { return d.name }

// Quantities returns temperature and humidity.
func (d *Dev) Quantities() []sensors.Quantity { return d.q }

// CRCErrors returns how many readings failed their checksum, for metrics.
func (d *Dev) CRCErrors() uint64 { return d.crcErrors.Load() }

// Sense sends the measurement command, waits the datasheet's maximum
// measurement duration and reads temperature (°C) into dst[0] and relative
// humidity (%) into dst[1]. It does not allocate unless it fails.
func (d *Dev) Sense(ctx context.Context, dst []float64) error {
	if len(dst) < 2 {
		return fmt.Errorf("sht4x: %s: dst has %d elements, want 2", d.name, len(dst))
	}
	if err := d.dev.Tx(d.cmd[:], nil); err != nil {
		return fmt.Errorf("sht4x: %s: start measurement %#02x: %w", d.name, d.cmd[0], err)
	}
	if err := d.w.Wait(ctx, d.wait); err != nil {
		return fmt.Errorf("sht4x: %s: waiting for conversion: %w", d.name, err)
	}
	// A read header during the conversion is NACKed, which periph reports
	// as an error; the poller's retry handles it.
	if err := d.dev.Tx(nil, d.buf[:]); err != nil {
		return fmt.Errorf("sht4x: %s: read measurement: %w", d.name, err)
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

// word checks the CRC of one big-endian word followed by its checksum,
// which is the SHT3x's CRC-8 (datasheet "Checksum Calculation": polynomial
// 0x31, initial value 0xFF).
func (d *Dev) word(b []byte, what string) (uint16, error) {
	w := uint16(b[0])<<8 | uint16(b[1])
	if want := crc8.Sensirion(b[:2]); b[2] != want {
		d.crcErrors.Add(1)
		return 0, fmt.Errorf("%w: %s: %s word %#04x has checksum %#02x, want %#02x", ErrCRC, d.name, what, w, b[2], want)
	}
	return w, nil
}

// Halt sends a soft reset (0x94), which returns the sensor to idle with
// its heater off whatever it was doing; a measurement cancelled midway is
// abandoned. Sense may still be called afterwards.
func (d *Dev) Halt() error {
	d.w.Stop()
	if err := d.dev.Tx(d.reset[:], nil); err != nil {
		return fmt.Errorf("sht4x: %s: soft reset: %w", d.name, err)
	}
	return nil
}

// Temperature converts a raw temperature word to °C (datasheet
// "Conversion of Signal Output"): T = -45 + 175 * raw / (2^16 - 1).
func Temperature(raw uint16) float64 { return -45 + 175*float64(raw)/65535 }

// Humidity converts a raw humidity word to %RH (datasheet "Conversion of
// Signal Output"): RH = -6 + 125 * raw / (2^16 - 1), cropped to 0..100 as
// the datasheet recommends, since the formula spans -6..119 %RH so that
// the sensor's calibration is not clipped internally.
func Humidity(raw uint16) float64 {
	return min(max(-6+125*float64(raw)/65535, 0), 100)
}
