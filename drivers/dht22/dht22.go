// Package dht22 reads a DHT22 (AM2302) humidity and temperature sensor
// through the Linux kernel's IIO `dht11` driver, which the dht11 overlay
// loads and which decodes the DHT22's frame format too:
//
//	dtoverlay=dht11,gpiopin=4
//
// The kernel times the sensor's 1-wire-like pulses from interrupts, which
// user-space Go on a Pi cannot do reliably. Even so a read often fails:
// the kernel returns EIO when a frame's checksum or bit timing is wrong
// and ETIMEDOUT when the sensor does not answer. Both are ordinary; Sense
// reports them as ErrReadFailed and the Poller's retry (retry_backoff)
// takes the next reading. The kernel keeps a measurement for 2 s and both
// attributes come from the same one, so poll no faster than every 2 s.
//
// The package owns finding the IIO device (by number, or by the text of
// its `name` file), reading and range-checking the two attributes; the
// timing is the kernel's.
package dht22

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/edged/edged/sensors"
)

// devicesDir is where the kernel lists IIO devices, relative to the sysfs
// root.
const devicesDir = "sys/bus/iio/devices"

// DefaultDevice is used when neither device nor name is given: the first
// IIO device, which is the DHT on a Pi with no other IIO hardware.
const DefaultDevice = "iio:device0"

// The attributes the dht11 driver provides, in the order Sense reads them.
const (
	tempFile  = "in_temp_input"             // milli-degrees Celsius
	humidFile = "in_humidityrelative_input" // milli-percent
)

// hint tells a Pi user how to load the kernel driver and find the device.
const hint = "add dtoverlay=dht11,gpiopin=4 (your data pin) to /boot/firmware/config.txt and reboot; check with ls /sys/bus/iio/devices and cat /sys/bus/iio/devices/iio:device*/name"

// Errors callers may branch on; each is returned wrapped with the device.
var (
	// ErrNoDevice: no IIO device of that number or name (the overlay is
	// not loaded, or the name is wrong).
	ErrNoDevice = errors.New("dht22: iio device not found")
	// ErrReadFailed: the kernel failed to read the sensor (EIO: bad
	// checksum or timing; ETIMEDOUT: no answer). Common and transient;
	// the underlying errno is wrapped too.
	ErrReadFailed = errors.New("dht22: sensor read failed")
	// ErrFormat: an attribute is not a decimal integer.
	ErrFormat = errors.New("dht22: unexpected sysfs format")
	// ErrRange: a value outside the DHT22's -40..80 °C or 0..100 %RH.
	ErrRange = errors.New("dht22: value out of range")
)

// Opts are the dht22 keys of a sensor's YAML block. Give device or
// iio_name, not both; with neither, the device is iio:device0. (The key is
// not plain `name`: that is every sensor's display name.)
type Opts struct {
	// Device is the IIO device directory, e.g. "iio:device0".
	Device string `yaml:"device"`
	// Name selects the IIO device whose `name` file holds this text, e.g.
	// "dht11@4"; it survives device renumbering when other IIO hardware
	// (an ADC) is added.
	Name string `yaml:"iio_name"`
	// SysfsRoot prefixes the sysfs path; the registry sets it from
	// drivers.Env.SysfsRoot, so it is not a YAML key.
	SysfsRoot string `yaml:"-"`
}

// DefaultOpts returns options on the real root file system and the
// default device.
func DefaultOpts() Opts { return Opts{SysfsRoot: "/"} }

// Validate checks the options; errors are *sensors.FieldError naming the
// key. The device's shape is checked strictly because it becomes a path.
func (o *Opts) Validate() error {
	if o.Device != "" && o.Name != "" {
		return sensors.FieldErrorf("iio_name", "give device or iio_name, not both")
	}
	if d, ok := strings.CutPrefix(o.Device, "iio:device"); o.Device != "" && (!ok || d == "" || len(d) > 4 || strings.Trim(d, "0123456789") != "") {
		return sensors.FieldErrorf("device", "%q is not an IIO device like \"iio:device0\"", o.Device)
	}
	if o.Name != "" && (strings.ContainsAny(o.Name, "/\n\x00") || len(o.Name) > 64) {
		return sensors.FieldErrorf("iio_name", "%q cannot be an IIO device name", o.Name)
	}
	if o.SysfsRoot == "" {
		return sensors.FieldErrorf("sysfs_root", "must not be empty")
	}
	return nil
}

// Quantities lists what the sensor measures, in the order Sense fills dst.
func (o *Opts) Quantities() []sensors.Quantity {
	return []sensors.Quantity{sensors.Temperature, sensors.Humidity}
}

// file is the part of *os.File that Dev uses; tests inject files that
// fail as the kernel does.
type file interface {
	io.ReaderAt
	io.Closer
}

// Dev is one DHT22. It keeps both attribute files open between readings
// and re-reads them from offset 0, which makes the kernel produce a fresh
// value (sysfs regenerates an attribute on every read from offset 0), so
// a steady loop does not allocate. Any error closes them; the next Sense
// looks the device up again, which finds it after a renumbering. Dev is
// not safe for concurrent use.
type Dev struct {
	opts  Opts
	devs  string // the IIO devices directory
	name  string
	open  func(string) (file, error)
	files [2]file
	paths [2]string
	buf   [32]byte
	q     []sensors.Quantity
}

var _ sensors.Sensor = (*Dev)(nil)

// New returns the DHT22 behind the IIO device opts selects, which must
// exist: a missing device is a configuration error (the overlay is not
// loaded), reported with the line that loads it.
func New(opts Opts) (*Dev, error) {
	return newDev(opts, func(p string) (file, error) { return os.Open(p) })
}

func newDev(opts Opts, open func(string) (file, error)) (*Dev, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("dht22: %w", err)
	}
	d := &Dev{
		opts: opts,
		devs: filepath.Join(opts.SysfsRoot, devicesDir),
		open: open,
		q:    opts.Quantities(),
	}
	switch {
	case opts.Name != "":
		d.name = "dht22(" + opts.Name + ")"
	case opts.Device != "":
		d.name = "dht22(" + opts.Device + ")"
	default:
		d.name = "dht22(" + DefaultDevice + ")"
	}
	if _, err := d.find(); err != nil {
		return nil, err
	}
	return d, nil
}

// find returns the directory of the IIO device.
func (d *Dev) find() (string, error) {
	if d.opts.Name == "" {
		dev := d.opts.Device
		if dev == "" {
			dev = DefaultDevice
		}
		dir := filepath.Join(d.devs, dev)
		if _, err := os.Stat(filepath.Join(dir, tempFile)); err != nil {
			return "", fmt.Errorf("%w: %s: no %s (%s)", ErrNoDevice, d.name, filepath.Join(dir, tempFile), hint)
		}
		return dir, nil
	}
	dirs, _ := filepath.Glob(filepath.Join(d.devs, "iio:device*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "name"))
		if err == nil && string(bytes.TrimSpace(b)) == d.opts.Name {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w: %s: no device in %s has name %q (%s)", ErrNoDevice, d.name, d.devs, d.opts.Name, hint)
}

// String names the sensor by its device or name, e.g.
// "dht22(iio:device0)".
func (d *Dev) String() string { return d.name }

// Quantities returns temperature and humidity.
func (d *Dev) Quantities() []sensors.Quantity { return d.q }

// Sense reads the temperature (°C) into dst[0] and the relative humidity
// (%) into dst[1]. The kernel blocks each read for the measurement (a few
// milliseconds, or its timeout); ctx is checked before them but cannot
// interrupt them. dst is written only when both values are good.
func (d *Dev) Sense(ctx context.Context, dst []float64) error {
	if len(dst) < 2 {
		return fmt.Errorf("dht22: %s: dst has %d elements, want 2", d.name, len(dst))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dht22: %s: %w", d.name, err)
	}
	if d.files[0] == nil {
		if err := d.openFiles(); err != nil {
			return err
		}
	}
	t, err := d.read(0, -40000, 80000)
	if err != nil {
		return err
	}
	rh, err := d.read(1, 0, 100000)
	if err != nil {
		return err
	}
	dst[0], dst[1] = float64(t)/1000, float64(rh)/1000
	return nil
}

// read reads attribute i and checks it lies in lo..hi (milli-units).
func (d *Dev) read(i int, lo, hi int) (int, error) {
	n, err := d.files[i].ReadAt(d.buf[:], 0)
	if err != nil && err != io.EOF {
		d.closeFiles()
		return 0, fmt.Errorf("%w: %s: read %s: %w", ErrReadFailed, d.name, d.paths[i], err)
	}
	v, ok := parseMilli(d.buf[:n])
	if !ok {
		return 0, fmt.Errorf("%w: %s: %s is %q", ErrFormat, d.name, d.paths[i], d.buf[:n])
	}
	if v < lo || v > hi {
		return 0, fmt.Errorf("%w: %s: %s is %d, want %d..%d", ErrRange, d.name, d.paths[i], v, lo, hi)
	}
	return v, nil
}

func (d *Dev) openFiles() error {
	dir, err := d.find()
	if err != nil {
		return err
	}
	for i, f := range [2]string{tempFile, humidFile} {
		p := filepath.Join(dir, f)
		fh, err := d.open(p)
		if err != nil {
			d.closeFiles()
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%w: %s: no %s (%s)", ErrNoDevice, d.name, p, hint)
			}
			return fmt.Errorf("dht22: %s: %w", d.name, err)
		}
		d.files[i], d.paths[i] = fh, p
	}
	return nil
}

// Halt closes the attribute files; Sense opens them again if called later.
func (d *Dev) Halt() error {
	d.closeFiles()
	return nil
}

func (d *Dev) closeFiles() {
	for i, f := range d.files {
		if f != nil {
			_ = f.Close()
			d.files[i] = nil
		}
	}
}

// parseMilli reads a decimal integer followed by optional white space, at
// most 7 digits (so it cannot overflow an int on 32-bit ARM).
func parseMilli(b []byte) (int, bool) {
	b = bytes.TrimSpace(b)
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 7 {
		return 0, false
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}
