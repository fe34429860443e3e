// Package htu21d drives a TE HTU21D(F) or Silicon Labs Si7021 humidity and
// temperature sensor on I2C (one driver, registered as `htu21d` and
// `si7021`: the two chips share address 0x40, commands, checksum and
// formulas). periph has no driver for either.
//
// It uses the "no hold master" commands, so the sensor NACKs reads until a
// conversion is done instead of stretching the clock, which the BCM2835
// I2C controller mishandles. Section names are those of the HTU21D(F)
// datasheet (TE, HPC199_6); the Si7021-A20 datasheet (rev. 1.2) gives the
// same commands in its table 11 and formulas in 5.1.1 and 5.1.2. The
// package owns the command bytes, the conversion waits, the CRC check and
// the conversion to °C and %RH; it does not own the bus.
package htu21d

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

// Addr is the only address of both chips.
const Addr uint16 = 0x40

// Commands ("Command overview"), no hold master mode.
const (
	cmdTemperature = 0xF3
	cmdHumidity    = 0xF5
)

// The maximum conversion times at the power-on resolution (14-bit
// temperature, 12-bit humidity): the HTU21D's, which are the longer
// ("Electrical and general items": 50 ms and 16 ms; the Si7021 needs 10.8
// and 12 ms).
const (
	waitTemperature = 50 * time.Millisecond
	waitHumidity    = 16 * time.Millisecond
)

// Opts are the htu21d keys of a sensor's YAML block.
type Opts struct {
	i2cbus.Opts `yaml:",inline"`
}

// DefaultOpts returns bus "1" and address 0x40.
func DefaultOpts() Opts { return Opts{Opts: i2cbus.DefaultOpts(Addr)} }

// Validate checks the options; errors are *sensors.FieldError naming the
// key. Any 7-bit address is allowed: behind an I2C multiplexer or address
// translator the chip can appear elsewhere than 0x40.
func (o *Opts) Validate() error { return o.Opts.Validate() }

// Quantities lists what the sensor measures, in the order Sense fills dst.
func (o *Opts) Quantities() []sensors.Quantity {
	return []sensors.Quantity{sensors.Temperature, sensors.Humidity}
}

// ErrCRC is returned (wrapped) when a reading fails its checksum.
var ErrCRC = errors.New("htu21d: crc mismatch")

// Dev is one HTU21D or Si7021. Like every sensors.Sensor it is not safe
// for concurrent use; the shared bus is.
type Dev struct {
	dev  i2c.Dev
	name string
	cmds [2][1]byte
	w    *sensors.Waiter
	buf  [3]byte
	q    []sensors.Quantity

	crcErrors atomic.Uint64
}

var _ sensors.Sensor = (*Dev)(nil)

// New returns the sensor at opts.Address on bus. It sends nothing: the
// first Sense is the presence check. clock times the conversion waits
// (nil means the system clock).
func New(bus i2c.Bus, clock sensors.Clock, opts Opts) (*Dev, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("htu21d: %w", err)
	}
	return &Dev{
		dev:  i2c.Dev{Bus: bus, Addr: opts.Address},
		name: fmt.Sprintf("htu21d(%s, %#x)", bus, opts.Address),
		cmds: [2][1]byte{{cmdTemperature}, {cmdHumidity}},
		w:    sensors.NewWaiter(clock),
		q:    opts.Quantities(),
	}, nil
}

// String names the device and where it sits, e.g. "htu21d(i2c 1, 0x40)".
func (d *Dev) String() string { return d.name }

// Quantities returns temperature and humidity.
func (d *Dev) Quantities() []sensors.Quantity { return d.q }

// CRCErrors returns how many readings failed their checksum, for metrics.
func (d *Dev) CRCErrors() uint64 { return d.crcErrors.Load() }

// Sense measures temperature (°C, into dst[0]) and then relative humidity
// (%, into dst[1]), each as a command, its maximum conversion time and a
// three-byte read (MSB, LSB, CRC). dst is written only when both succeed.
// It does not allocate unless it fails.
func (d *Dev) Sense(ctx context.Context, dst []float64) error {
	if len(dst) < 2 {
		return fmt.Errorf("htu21d: %s: dst has %d elements, want 2", d.name, len(dst))
	}
	t, err := d.measure(ctx, 0, waitTemperature, "temperature")
	if err != nil {
		return err
	}
	rh, err := d.measure(ctx, 1, waitHumidity, "humidity")
	if err != nil {
		return err
	}
	dst[0], dst[1] = Temperature(t), Humidity(rh)
	return nil
}

func (d *Dev) measure(ctx context.Context, i int, wait time.Duration, what string) (uint16, error) {
	if err := d.dev.Tx(d.cmds[i][:], nil); err != nil {
		return 0, fmt.Errorf("htu21d: %s: start %s measurement: %w", d.name, what, err)
	}
	if err := d.w.Wait(ctx, wait); err != nil {
		return 0, fmt.Errorf("htu21d: %s: waiting for %s conversion: %w", d.name, what, err)
	}
	// "No hold master mode": a read header during the conversion is NACKed.
	if err := d.dev.Tx(nil, d.buf[:]); err != nil {
		return 0, fmt.Errorf("htu21d: %s: read %s: %w", d.name, what, err)
	}
	raw := uint16(d.buf[0])<<8 | uint16(d.buf[1])
	if want := crc8.Checksum(0x00, d.buf[:2]); d.buf[2] != want {
		d.crcErrors.Add(1)
		return 0, fmt.Errorf("%w: %s: %s word %#04x has checksum %#02x, want %#02x", ErrCRC, d.name, what, raw, d.buf[2], want)
	}
	return raw, nil
}

// Halt sends nothing: in no hold master mode the sensor goes back to sleep
// after every conversion by itself, and the bus is not the device's to
// close. It releases the wait timer; Sense may still be called afterwards.
func (d *Dev) Halt() error {
	d.w.Stop()
	return nil
}

// Temperature converts a raw temperature word to °C ("Temperature
// conversion"): T = -46.85 + 175.72 * S / 2^16, with the two status bits
// of the LSB cleared first.
func Temperature(raw uint16) float64 { return -46.85 + 175.72*float64(raw&^3)/65536 }

// Humidity converts a raw humidity word to %RH ("Relative Humidity
// conversion"): RH = -6 + 125 * S / 2^16, with the status bits cleared.
// The formula spans -6..119 %RH; values outside 0..100 are cropped, as
// both datasheets say to.
func Humidity(raw uint16) float64 {
	return min(max(-6+125*float64(raw&^3)/65536, 0), 100)
}
