// Package ds18b20 reads a DS18B20 (or another w1_therm family) 1-wire
// temperature probe through the Linux kernel's w1 sysfs interface, which
// the w1-gpio overlay provides. It owns parsing the sysfs files and
// rejecting values a probe cannot mean; the bit-level 1-wire protocol is
// the kernel's (periph's user-space onewire is not used: bit timing from
// Go on a Pi is unreliable).
package ds18b20

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/edged/edged/sensors"
)

// devicesDir is where the kernel lists 1-wire slaves, relative to the
// sysfs root.
const devicesDir = "sys/bus/w1/devices"

// hint tells a Pi user how to enable 1-wire and find the probe's id.
const hint = "enable 1-wire with dtoverlay=w1-gpio in /boot/firmware/config.txt and reboot; check the id with ls /sys/bus/w1/devices"

// Errors callers may branch on; each is returned wrapped with the device.
var (
	// ErrNoDevice: the probe is not on the bus (unplugged, wrong id, or
	// 1-wire not enabled).
	ErrNoDevice = errors.New("ds18b20: device not found")
	// ErrCRC: the kernel read the scratchpad with a bad checksum.
	ErrCRC = errors.New("ds18b20: crc check failed (crc=NO)")
	// ErrPowerOn: the probe returned its power-on reset value 85.000 °C,
	// which means it was reset (a brown-out, a loose supply wire) before
	// the conversion finished. A real 85 °C is not expected where edged
	// runs, so the value is rejected rather than published.
	ErrPowerOn = errors.New("ds18b20: power-on reset value 85.000 °C (probe reset or badly powered)")
	// ErrNoResponse: an all-zero scratchpad, which passes the CRC but no
	// probe can send (its configuration byte always has bits 0-4 set): the
	// data line is stuck low or has no pull-up.
	ErrNoResponse = errors.New("ds18b20: all-zero scratchpad (data line stuck low or no pull-up)")
	// ErrFormat: the sysfs file is not in a format this driver knows.
	ErrFormat = errors.New("ds18b20: unexpected sysfs format")
	// ErrRange: the value is outside the DS18B20's -55..125 °C.
	ErrRange = errors.New("ds18b20: temperature out of range -55..125 °C")
)

// Opts are the ds18b20 keys of a sensor's YAML block.
type Opts struct {
	// Device is the kernel's id of the probe, family-serial, e.g.
	// "28-0316a2795eff" (ls /sys/bus/w1/devices).
	Device string `yaml:"device"`
	// SysfsRoot prefixes the sysfs path; the registry sets it from
	// drivers.Env.SysfsRoot, so it is not a YAML key.
	SysfsRoot string `yaml:"-"`
}

// DefaultOpts returns options on the real root file system; Device has no
// default.
func DefaultOpts() Opts { return Opts{SysfsRoot: "/"} }

// families are the 1-wire family codes the kernel's w1_therm driver
// serves with the same files: DS18S20, DS1822, DS18B20, DS1825, DS28EA00.
var families = map[string]bool{"10": true, "22": true, "28": true, "3b": true, "42": true}

// Validate checks the options; errors are *sensors.FieldError naming the
// key. The id's shape is checked strictly because it becomes a path.
func (o *Opts) Validate() error {
	d := o.Device
	if d == "" {
		return sensors.FieldErrorf("device", "is required, e.g. \"28-0316a2795eff\" (%s)", hint)
	}
	if len(d) != 15 || d[2] != '-' || !isHex(d[:2]) || !isHex(d[3:]) {
		return sensors.FieldErrorf("device", "%q is not a 1-wire id like \"28-0316a2795eff\" (lower-case hex)", d)
	}
	if !families[d[:2]] {
		return sensors.FieldErrorf("device", "%q has family %s, not a w1_therm temperature probe (DS18B20 ids start with 28-)", d, d[:2])
	}
	if o.SysfsRoot == "" {
		return sensors.FieldErrorf("sysfs_root", "must not be empty")
	}
	return nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Quantities lists what the probe measures.
func (o *Opts) Quantities() []sensors.Quantity { return []sensors.Quantity{sensors.Temperature} }

// Dev is one probe. It keeps its sysfs file open between readings and
// re-reads it from offset 0, which makes the kernel run a new conversion
// (sysfs regenerates an attribute on every read from offset 0), so a
// steady loop does not allocate. Any read error closes the file; the next
// Sense opens it again, which finds a probe that was re-plugged. Dev is
// not safe for concurrent use.
type Dev struct {
	id    string
	name  string
	dir   string
	paths [2]string // temperature (newer kernels), w1_slave
	f     *os.File
	slave bool // f is w1_slave
	buf   [128]byte
	q     []sensors.Quantity
}

var _ sensors.Sensor = (*Dev)(nil)

// New returns the probe opts.Device. The probe itself may be absent (it is
// looked for on every Sense), but the kernel's 1-wire bus must exist.
func New(opts Opts) (*Dev, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("ds18b20: %w", err)
	}
	devs := filepath.Join(opts.SysfsRoot, devicesDir)
	if _, err := os.Stat(devs); err != nil {
		return nil, fmt.Errorf("ds18b20: no 1-wire bus (%s): %w", hint, err)
	}
	dir := filepath.Join(devs, opts.Device)
	return &Dev{
		id:    opts.Device,
		name:  "ds18b20(" + opts.Device + ")",
		dir:   dir,
		paths: [2]string{filepath.Join(dir, "temperature"), filepath.Join(dir, "w1_slave")},
		q:     opts.Quantities(),
	}, nil
}

// String names the probe, e.g. "ds18b20(28-0316a2795eff)".
func (d *Dev) String() string { return d.name }

// Quantities returns temperature.
func (d *Dev) Quantities() []sensors.Quantity { return d.q }

// Sense reads the temperature (°C) into dst[0]. The kernel blocks the read
// for the conversion (up to 750 ms at 12 bits); ctx is checked before it
// but cannot interrupt it.
func (d *Dev) Sense(ctx context.Context, dst []float64) error {
	if len(dst) < 1 {
		return fmt.Errorf("ds18b20: %s: dst is empty", d.name)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ds18b20: %s: %w", d.name, err)
	}
	if d.f == nil {
		if err := d.open(); err != nil {
			return err
		}
	}
	n, err := d.f.ReadAt(d.buf[:], 0)
	if err != nil && err != io.EOF {
		name := d.f.Name()
		d.close()
		return fmt.Errorf("ds18b20: %s: read %s: %w", d.name, name, err)
	}
	var milli int
	if d.slave {
		milli, err = ParseW1Slave(d.buf[:n])
	} else {
		milli, err = ParseTemperature(d.buf[:n])
	}
	if err != nil {
		return fmt.Errorf("%w: device %s", err, d.id)
	}
	dst[0] = float64(milli) / 1000
	return nil
}

func (d *Dev) open() error {
	for i, p := range d.paths {
		f, err := os.Open(p)
		if err == nil {
			d.f, d.slave = f, i == 1
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("ds18b20: %s: %w", d.name, err)
		}
	}
	return fmt.Errorf("%w: %s: no %s (%s)", ErrNoDevice, d.name, d.dir, hint)
}

func (d *Dev) close() {
	if d.f != nil {
		_ = d.f.Close()
		d.f = nil
	}
}

// Halt closes the sysfs file; Sense opens it again if called later.
func (d *Dev) Halt() error {
	d.close()
	return nil
}

// ParseTemperature parses the `temperature` attribute of newer kernels:
// millidegrees Celsius and a newline, e.g. "21375\n". It checks the value
// as ParseW1Slave does.
func ParseTemperature(b []byte) (milli int, err error) {
	v, rest, ok := parseInt(b)
	if !ok || len(bytes.TrimSpace(rest)) != 0 {
		return 0, fmt.Errorf("%w: temperature %q", ErrFormat, b)
	}
	return check(v)
}

// ParseW1Slave parses the kernel's w1_slave file, two lines of the nine
// scratchpad bytes in hex:
//
//	72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
//	72 01 4b 46 7f ff 0e 10 57 t=23125
//
// and returns t, in millidegrees Celsius.
func ParseW1Slave(b []byte) (milli int, err error) {
	line1, line2, ok := bytes.Cut(b, []byte{'\n'})
	if !ok {
		return 0, fmt.Errorf("%w: w1_slave %q has one line", ErrFormat, b)
	}
	line1 = bytes.TrimSpace(line1)
	switch {
	case !bytes.Contains(line1, []byte("crc=")):
		return 0, fmt.Errorf("%w: w1_slave first line %q has no crc=", ErrFormat, line1)
	case bytes.HasSuffix(line1, []byte(" NO")):
		return 0, ErrCRC
	case !bytes.HasSuffix(line1, []byte(" YES")):
		return 0, fmt.Errorf("%w: w1_slave first line %q ends in neither YES nor NO", ErrFormat, line1)
	case bytes.HasPrefix(line1, []byte("00 00 00 00 00 00 00 00 00")):
		return 0, ErrNoResponse
	}
	i := bytes.Index(line2, []byte("t="))
	if i < 0 {
		return 0, fmt.Errorf("%w: w1_slave second line %q has no t=", ErrFormat, line2)
	}
	v, rest, ok := parseInt(line2[i+2:])
	if !ok || len(bytes.TrimSpace(rest)) != 0 {
		return 0, fmt.Errorf("%w: w1_slave second line %q", ErrFormat, line2)
	}
	return check(v)
}

func check(milli int) (int, error) {
	switch {
	case milli == 85000:
		return 0, ErrPowerOn
	case milli < -55000 || milli > 125000:
		return 0, fmt.Errorf("%w: %d m°C", ErrRange, milli)
	}
	return milli, nil
}

// parseInt reads an optionally negative decimal at the start of b, at
// most 7 digits (so it cannot overflow an int on 32-bit ARM).
func parseInt(b []byte) (v int, rest []byte, ok bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	n := 0
	for n < len(b) && '0' <= b[n] && b[n] <= '9' {
		if n == 7 {
			return 0, nil, false
		}
		v = v*10 + int(b[n]-'0')
		n++
	}
	if n == 0 {
		return 0, nil, false
	}
	if neg {
		v = -v
	}
	return v, b[n:], true
}
