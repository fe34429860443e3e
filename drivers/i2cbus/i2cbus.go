// Package i2cbus owns what every I2C driver shares: the bus/address options
// embedded in each driver's YAML block, opening a host bus by name with an
// error that tells the user how to enable I2C, the serialised Bus that
// several devices share. Conversion waits are sensors.Waiter.
//
// It must not import package drivers (drivers imports it); the registry
// shares one Bus per bus name through drivers.Env.Shared.
package i2cbus

import (
	"errors"
	"fmt"
	"strconv"
	"sync"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/physic"

	"github.com/edged/edged/drivers/pihost"
	"github.com/edged/edged/sensors"
)

// The 7-bit addresses a device may use; 0x00-0x02 and 0x78-0x7F are
// reserved by the I2C specification (general call, CBUS, 10-bit prefix).
const (
	MinAddr = 0x03
	MaxAddr = 0x77
)

// Opts are the bus and address keys every I2C sensor has. Drivers embed
// them inline (`yaml:",inline"`) so a sensor's YAML reads
// `{driver: sht3x, bus: "1", address: 0x44}`.
type Opts struct {
	// Bus is a periph bus name, alias or number: "1" is /dev/i2c-1, the
	// bus on header pins 3 and 5 of every Pi since the B+.
	Bus string `yaml:"bus"`
	// Address is the 7-bit device address.
	Address uint16 `yaml:"address"`
}

// DefaultOpts returns bus "1" and the device's default address.
func DefaultOpts(addr uint16) Opts { return Opts{Bus: "1", Address: addr} }

// Validate checks the bus name and the address range; errors name the key.
func (o *Opts) Validate() error {
	if o.Bus == "" {
		return sensors.FieldErrorf("bus", "must not be empty (the Pi header bus is \"1\")")
	}
	if o.Address < MinAddr || o.Address > MaxAddr {
		return sensors.FieldErrorf("address", "address %#x is out of range 0x03..0x77", o.Address)
	}
	return nil
}

// I2CAddr returns the bus name and address, so the config loader and
// `edged i2c scan` can find address clashes without knowing each driver.
func (o *Opts) I2CAddr() (bus string, addr uint16) { return o.Bus, o.Address }

// ErrNoBus is returned (wrapped) by Open when the host has no bus of that
// name, which on a Pi almost always means I2C is not enabled.
var ErrNoBus = errors.New("i2cbus: no such bus")

// enableHint tells a Pi user how to get /dev/i2c-1.
const enableHint = "enable I2C: sudo raspi-config nonint do_i2c 0, or dtparam=i2c_arm=on in /boot/firmware/config.txt; then check ls /dev/i2c-*"

// Open initialises periph's host drivers (once; pihost.Init is idempotent)
// and opens the named bus. A bus the host does not have is a configuration
// error naming the bus and how to enable it.
func Open(name string) (i2c.BusCloser, error) {
	return open(name, pihost.Init, i2creg.All, i2creg.Open)
}

// open is Open with periph's globals injected, so the error paths are
// testable on a machine without I2C.
func open(name string, initHost func() error, all func() []*i2creg.Ref, openBus func(string) (i2c.BusCloser, error)) (i2c.BusCloser, error) {
	if err := initHost(); err != nil {
		return nil, fmt.Errorf("i2cbus: periph host init: %w", err)
	}
	if !known(name, all()) {
		return nil, fmt.Errorf("%w %q (%s)", ErrNoBus, name, enableHint)
	}
	b, err := openBus(name)
	if err != nil {
		return nil, fmt.Errorf("i2cbus: open bus %q (is the user in group i2c?): %w", name, err)
	}
	return b, nil
}

// known reports whether i2creg.Open would find name, by the same rules:
// name, alias or number.
func known(name string, refs []*i2creg.Ref) bool {
	n, err := strconv.Atoi(name)
	isNum := err == nil
	for _, r := range refs {
		if r.Name == name || (isNum && r.Number == n) {
			return true
		}
		for _, a := range r.Aliases {
			if a == name {
				return true
			}
		}
	}
	return false
}

// Bus is an i2c.Bus shared by every device on one physical bus. Each Tx
// holds a mutex, so transactions of devices polled from different
// goroutines never interleave at the periph level. Drivers do not hold the
// bus across a conversion wait: the devices here are addressed by every
// transaction, so another device's traffic between a command and its read
// is harmless, and holding the bus for 180 ms would stall the others.
// A sequence that must be atomic (a register pointer write followed by a
// separate read on a device that shares its pointer) uses Exclusive.
type Bus struct {
	mu   sync.Mutex
	name string
	bus  i2c.Bus
}

// NewBus wraps b, which is named name in errors and String. If b is an
// i2c.BusCloser, Close closes it.
func NewBus(name string, b i2c.Bus) *Bus { return &Bus{name: name, bus: b} }

// String returns "i2c NAME", as used in device names.
func (b *Bus) String() string { return "i2c " + b.name }

// Name returns the bus name from the config.
func (b *Bus) Name() string { return b.name }

// Tx implements i2c.Bus.
func (b *Bus) Tx(addr uint16, w, r []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bus.Tx(addr, w, r)
}

// SetSpeed implements i2c.Bus. On Linux it changes every bus of the host.
func (b *Bus) SetSpeed(f physic.Frequency) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bus.SetSpeed(f)
}

// Exclusive runs fn with the bus locked; fn must use the bus it is given,
// not b (which would deadlock), and must not wait for conversions.
func (b *Bus) Exclusive(fn func(i2c.Bus) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return fn(b.bus)
}

// Close closes the underlying bus if it can be closed. drivers.Env calls it
// once, after every device on the bus has been halted.
func (b *Bus) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.bus.(i2c.BusCloser); ok {
		if err := c.Close(); err != nil {
			return fmt.Errorf("i2cbus: close bus %q: %w", b.name, err)
		}
	}
	return nil
}

var _ i2c.BusCloser = (*Bus)(nil)
