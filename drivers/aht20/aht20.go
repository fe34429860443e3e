// Package aht20 drives an Aosong AHT20 humidity and temperature sensor on
// I2C, from the AHT20 datasheet (version 1.1, section 5 "Sensor
// communication" and 6 "Signal conversion").
//
// It is written on i2c.Dev instead of wrapping
// periph.io/x/devices/v3/aht20 because that driver waits with time.Sleep
// (80 ms per reading, plus a polling loop on the wall clock), which can be
// neither injected nor cancelled, and allocates a buffer per reading. The
// protocol is small enough that owning it costs less than working around
// that. The package owns the trigger command, the conversion wait, the
// busy and calibration bits of the status byte, the CRC check and the
// conversion to °C and %RH; it does not own the bus.
package aht20

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

// Addr is the AHT20's only address (datasheet 5.3).
const Addr uint16 = 0x38

// Status byte bits (datasheet 5.3, table 10).
const (
	statusBusy       = 0x80 // bit 7: measuring
	statusCalibrated = 0x08 // bit 3: calibration enabled
)

// The datasheet's waits (5.4): 10 ms after the initialisation command, 80
// ms for a measurement, and then polling the busy bit. maxPolls bounds the
// extra reads of a sensor that stays busy.
const (
	initWait    = 10 * time.Millisecond
	measureWait = 80 * time.Millisecond
	pollWait    = 10 * time.Millisecond
	maxPolls    = 3
)

// Opts are the aht20 keys of a sensor's YAML block.
type Opts struct {
	i2cbus.Opts `yaml:",inline"`
}

// DefaultOpts returns bus "1" and address 0x38.
func DefaultOpts() Opts { return Opts{Opts: i2cbus.DefaultOpts(Addr)} }

// Validate checks the options; errors are *sensors.FieldError naming the
// key. Only 0x38 is accepted: the AHT20 has no address pin.
func (o *Opts) Validate() error {
	if err := o.Opts.Validate(); err != nil {
		return err
	}
	if o.Address != Addr {
		return sensors.FieldErrorf("address", "%#x is not the AHT20's address (0x38; the chip has no address pin)", o.Address)
	}
	return nil
}

// Quantities lists what the sensor measures, in the order Sense fills dst.
func (o *Opts) Quantities() []sensors.Quantity {
	return []sensors.Quantity{sensors.Temperature, sensors.Humidity}
}

// Errors callers may branch on; each is returned wrapped with the device.
var (
	// ErrCRC: the reading failed its checksum.
	ErrCRC = errors.New("aht20: crc mismatch")
	// ErrBusy: the sensor was still measuring after the datasheet's wait
	// and a few polls.
	ErrBusy = errors.New("aht20: still busy")
	// ErrNotCalibrated: the sensor lost its calibration-enable bit (a
	// supply glitch reset it). The next Sense initialises it again.
	ErrNotCalibrated = errors.New("aht20: calibration bit cleared (sensor was reset)")
)

// Dev is one AHT20. Like every sensors.Sensor it is not safe for
// concurrent use; the shared bus is.
type Dev struct {
	dev     i2c.Dev
	name    string
	trigger [3]byte
	init    [3]byte
	w       *sensors.Waiter
	buf     [7]byte
	ready   bool // the calibration bit was seen set
	q       []sensors.Quantity

	crcErrors atomic.Uint64
}

var _ sensors.Sensor = (*Dev)(nil)

// New returns the AHT20 at opts.Address on bus. It sends nothing: the
// first Sense checks the calibration bit and is the presence check.
// clock times the waits (nil means the system clock).
func New(bus i2c.Bus, clock sensors.Clock, opts Opts) (*Dev, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("aht20: %w", err)
	}
	return &Dev{
		dev:     i2c.Dev{Bus: bus, Addr: opts.Address},
		name:    fmt.Sprintf("aht20(%s, %#x)", bus, opts.Address),
		trigger: [3]byte{0xAC, 0x33, 0x00}, // datasheet 5.4 step 2
		init:    [3]byte{0xBE, 0x08, 0x00}, // datasheet 5.4 step 1
		w:       sensors.NewWaiter(clock),
		q:       opts.Quantities(),
	}, nil
}

// String names the device and where it sits, e.g. "aht20(i2c 1, 0x38)".
func (d *Dev) String() string { return d.name }

// Quantities returns temperature and humidity.
func (d *Dev) Quantities() []sensors.Quantity { return d.q }

// CRCErrors returns how many readings failed their checksum, for metrics.
func (d *Dev) CRCErrors() uint64 { return d.crcErrors.Load() }

// Sense follows datasheet 5.4: on the first call (and after the sensor
// lost its calibration) it reads the status byte and sends the
// initialisation command if bit 3 is clear; then it triggers a
// measurement, waits 80 ms, and reads the status, five data bytes and the
// CRC, polling a few more times while the busy bit is set. It writes
// temperature (°C) into dst[0] and relative humidity (%) into dst[1], and
// does not allocate unless it fails.
func (d *Dev) Sense(ctx context.Context, dst []float64) error {
	if len(dst) < 2 {
		return fmt.Errorf("aht20: %s: dst has %d elements, want 2", d.name, len(dst))
	}
	if !d.ready {
		if err := d.calibrate(ctx); err != nil {
			return err
		}
	}
	if err := d.dev.Tx(d.trigger[:], nil); err != nil {
		return fmt.Errorf("aht20: %s: trigger measurement: %w", d.name, err)
	}
	wait := measureWait
	for poll := 0; ; poll++ {
		if err := d.w.Wait(ctx, wait); err != nil {
			return fmt.Errorf("aht20: %s: waiting for measurement: %w", d.name, err)
		}
		if err := d.dev.Tx(nil, d.buf[:]); err != nil {
			return fmt.Errorf("aht20: %s: read measurement: %w", d.name, err)
		}
		if d.buf[0]&statusBusy == 0 {
			break
		}
		if poll == maxPolls {
			return fmt.Errorf("%w: %s: status %#02x after %v", ErrBusy, d.name, d.buf[0], measureWait+maxPolls*pollWait)
		}
		wait = pollWait
	}
	if want := crc8.Sensirion(d.buf[:6]); d.buf[6] != want {
		d.crcErrors.Add(1)
		return fmt.Errorf("%w: %s: reading % x has checksum %#02x, want %#02x", ErrCRC, d.name, d.buf[:6], d.buf[6], want)
	}
	if d.buf[0]&statusCalibrated == 0 {
		d.ready = false
		return fmt.Errorf("%w: %s: status %#02x", ErrNotCalibrated, d.name, d.buf[0])
	}
	rh, t := Raw(d.buf[1:6])
	dst[0], dst[1] = Temperature(t), Humidity(rh)
	return nil
}

// calibrate is step 1 of datasheet 5.4: read the status byte and, if the
// calibration-enable bit is clear, send the initialisation command and
// wait 10 ms.
func (d *Dev) calibrate(ctx context.Context) error {
	if err := d.dev.Tx(nil, d.buf[:1]); err != nil {
		return fmt.Errorf("aht20: %s: read status: %w", d.name, err)
	}
	if d.buf[0]&statusCalibrated == 0 {
		if err := d.dev.Tx(d.init[:], nil); err != nil {
			return fmt.Errorf("aht20: %s: initialise: %w", d.name, err)
		}
		if err := d.w.Wait(ctx, initWait); err != nil {
			return fmt.Errorf("aht20: %s: waiting for initialisation: %w", d.name, err)
		}
	}
	d.ready = true
	return nil
}

// Halt sends nothing: the sensor returns to sleep after every measurement
// by itself, and the bus is not the device's to close. It releases the
// wait timer; Sense may still be called afterwards.
func (d *Dev) Halt() error {
	d.w.Stop()
	return nil
}

// Raw splits the five data bytes after the status byte into the 20-bit
// humidity and temperature signals (datasheet 5.4 step 4, figure 11):
// humidity is the first 20 bits, temperature the last 20.
func Raw(b []byte) (rh, t uint32) {
	rh = uint32(b[0])<<12 | uint32(b[1])<<4 | uint32(b[2])>>4
	t = uint32(b[2]&0x0F)<<16 | uint32(b[3])<<8 | uint32(b[4])
	return rh, t
}

// Humidity converts the 20-bit humidity signal to %RH (datasheet 6.1):
// RH = S / 2^20 * 100.
func Humidity(raw uint32) float64 { return float64(raw) / (1 << 20) * 100 }

// Temperature converts the 20-bit temperature signal to °C (datasheet
// 6.2): T = S / 2^20 * 200 - 50.
func Temperature(raw uint32) float64 { return float64(raw)/(1<<20)*200 - 50 }
