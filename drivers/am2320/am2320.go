// Package am2320 drives an Aosong AM2320 humidity and temperature sensor
// on I2C, from the AM2320 product manual (section 8.2, "I2C
// communication"; section numbers below are that manual's).
//
// It is written on i2c.Dev instead of wrapping
// periph.io/x/devices/v3/am2320 because that driver: decodes temperature
// as two's complement where the sensor sends sign and magnitude (8.3.2),
// so -10.1 °C (0x8065) reads as -3266.7 °C; sends the read command and
// reads the reply in one transaction, without the 1.5 ms the sensor needs
// between them (8.2.4 step three); and sleeps with time.Sleep (up to 2 s
// per retry), which can be neither injected nor cancelled. Retries belong
// to the Poller.
//
// The sensor sleeps between readings to avoid self-heating and returns
// the measurement it took at the end of the previous read (8.2.4), so
// each value is one poll interval old; poll it no faster than every 2 s.
// Its I2C interface runs at 100 kHz at most (table 6).
package am2320

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

// Addr is the AM2320's only address (0xB8 as an 8-bit write address).
const Addr uint16 = 0x5C

// The waits of 8.2.4: the sensor wakes within 800 µs of its address, and
// answers a command no sooner than 1.5 ms after it.
const (
	wakeWait  = time.Millisecond
	replyWait = 2 * time.Millisecond
)

// Opts are the am2320 keys of a sensor's YAML block.
type Opts struct {
	i2cbus.Opts `yaml:",inline"`
}

// DefaultOpts returns bus "1" and address 0x5C.
func DefaultOpts() Opts { return Opts{Opts: i2cbus.DefaultOpts(Addr)} }

// Validate checks the options; errors are *sensors.FieldError naming the
// key. Only 0x5C is accepted: the AM2320 has no address pin.
func (o *Opts) Validate() error {
	if err := o.Opts.Validate(); err != nil {
		return err
	}
	if o.Address != Addr {
		return sensors.FieldErrorf("address", "%#x is not the AM2320's address (0x5c; the chip has no address pin)", o.Address)
	}
	return nil
}

// Quantities lists what the sensor measures, in the order Sense fills dst.
func (o *Opts) Quantities() []sensors.Quantity {
	return []sensors.Quantity{sensors.Temperature, sensors.Humidity}
}

// Errors callers may branch on; each is returned wrapped with the device.
var (
	// ErrCRC: the reply failed its CRC-16.
	ErrCRC = errors.New("am2320: crc mismatch")
	// ErrResponse: the reply is not the answer to "read 4 registers",
	// e.g. one of the error codes 0x80-0x84 of 8.2.4.
	ErrResponse = errors.New("am2320: unexpected response")
	// ErrRange: a humidity above 100.0 %RH, which no sensor sends.
	ErrRange = errors.New("am2320: humidity out of range 0..100 %RH")
)

// Dev is one AM2320. Like every sensors.Sensor it is not safe for
// concurrent use; the shared bus is.
type Dev struct {
	dev  i2c.Dev
	name string
	wake [1]byte
	cmd  [3]byte
	w    *sensors.Waiter
	buf  [8]byte
	q    []sensors.Quantity

	crcErrors atomic.Uint64
}

var _ sensors.Sensor = (*Dev)(nil)

// New returns the AM2320 at opts.Address on bus. It sends nothing: the
// first Sense is the presence check. clock times the waits (nil means the
// system clock).
func New(bus i2c.Bus, clock sensors.Clock, opts Opts) (*Dev, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("am2320: %w", err)
	}
	return &Dev{
		dev:  i2c.Dev{Bus: bus, Addr: opts.Address},
		name: fmt.Sprintf("am2320(%s, %#x)", bus, opts.Address),
		wake: [1]byte{0x00},
		// Function code 0x03 (read registers), start 0x00, count 4:
		// humidity high, low, temperature high, low (8.2.4 figure 16).
		cmd: [3]byte{0x03, 0x00, 0x04},
		w:   sensors.NewWaiter(clock),
		q:   opts.Quantities(),
	}, nil
}

// String names the device and where it sits, e.g. "am2320(i2c 1, 0x5c)".
func (d *Dev) String() string { return d.name }

// Quantities returns temperature and humidity.
func (d *Dev) Quantities() []sensors.Quantity { return d.q }

// CRCErrors returns how many readings failed their checksum, for metrics.
func (d *Dev) CRCErrors() uint64 { return d.crcErrors.Load() }

// Sense runs the three steps of 8.2.4: wake the sensor (it does not
// acknowledge its address while asleep, so this write's error is
// expected and ignored; Linux cannot send an address alone, so one zero
// byte follows it, which an awake sensor ignores), wait, send the read
// command, wait 1.5 ms or more, and read function code, length, four data
// bytes and the CRC. It writes temperature (°C) into dst[0] and relative
// humidity (%) into dst[1], and does not allocate unless it fails.
func (d *Dev) Sense(ctx context.Context, dst []float64) error {
	if len(dst) < 2 {
		return fmt.Errorf("am2320: %s: dst has %d elements, want 2", d.name, len(dst))
	}
	_ = d.dev.Tx(d.wake[:], nil) // NACK expected: the sensor was asleep
	if err := d.w.Wait(ctx, wakeWait); err != nil {
		return fmt.Errorf("am2320: %s: waiting for wake-up: %w", d.name, err)
	}
	if err := d.dev.Tx(d.cmd[:], nil); err != nil {
		return fmt.Errorf("am2320: %s: send read command: %w", d.name, err)
	}
	if err := d.w.Wait(ctx, replyWait); err != nil {
		return fmt.Errorf("am2320: %s: waiting for reply: %w", d.name, err)
	}
	if err := d.dev.Tx(nil, d.buf[:]); err != nil {
		return fmt.Errorf("am2320: %s: read reply: %w", d.name, err)
	}
	// The CRC covers the whole frame and is sent low byte first (8.2.3).
	got := uint16(d.buf[6]) | uint16(d.buf[7])<<8
	if want := CRC16(d.buf[:6]); got != want {
		d.crcErrors.Add(1)
		return fmt.Errorf("%w: %s: reply % x has crc %#04x, want %#04x", ErrCRC, d.name, d.buf[:6], got, want)
	}
	if d.buf[0] != 0x03 || d.buf[1] != 0x04 {
		return fmt.Errorf("%w: %s: header % x, want 03 04", ErrResponse, d.name, d.buf[:2])
	}
	rh := uint16(d.buf[2])<<8 | uint16(d.buf[3])
	if rh > 1000 {
		return fmt.Errorf("%w: %s: %d.%d %%RH", ErrRange, d.name, rh/10, rh%10)
	}
	dst[0] = Temperature(uint16(d.buf[4])<<8 | uint16(d.buf[5]))
	dst[1] = float64(rh) / 10
	return nil
}

// Halt sends nothing: the sensor goes back to sleep by itself after every
// exchange, and the bus is not the device's to close. It releases the
// wait timer; Sense may still be called afterwards.
func (d *Dev) Halt() error {
	d.w.Stop()
	return nil
}

// Temperature converts the temperature registers to °C: tenths of a
// degree in sign-and-magnitude form, bit 15 set below 0 °C (8.3.2:
// 0x8065 is -10.1 °C).
func Temperature(raw uint16) float64 {
	v := float64(raw&0x7FFF) / 10
	if raw&0x8000 != 0 && v != 0 { // 0x8000 is 0 °C, not -0
		return -v
	}
	return v
}

// CRC16 is the Modbus CRC of 8.2.3: polynomial 0xA001 (0x8005 reflected),
// initial value 0xFFFF, no final XOR. The manual's example reply 03 04 03
// 39 01 15 has CRC 0xFEE1.
func CRC16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, x := range b {
		crc ^= uint16(x)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}
