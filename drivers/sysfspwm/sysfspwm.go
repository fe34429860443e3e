// Package sysfspwm drives one hardware PWM channel through the Linux
// kernel's PWM sysfs interface, /sys/class/pwm/pwmchipN/pwmM, for a MOSFET
// on a heater, a fan or a dimmable lamp.
//
// It owns the channel's export, its period, duty cycle, polarity and
// enable files, the safe state, and the software copy of the level. It
// does not drive the BCM283x PWM block directly: periph's bcm283x PWM needs
// root and /dev/mem and is unreliable on current Pi OS kernels, so the Pi
// gets its PWM from the kernel's pwm-bcm2835 driver through an overlay in
// /boot/firmware/config.txt:
//
//	dtoverlay=pwm,pin=18,func=2          # PWM0 on GPIO18 (header pin 12): pwmchip0, channel 0
//	dtoverlay=pwm-2chan,pin=18,func=2,pin2=19,func2=2   # channels 0 and 1 on GPIO18 and GPIO19
//
// The kernel refuses a duty cycle longer than the period (EINVAL), and
// refuses a polarity change while the channel is enabled (EBUSY). So every
// period change goes: disable, duty 0, period, duty, enable; and polarity
// is written only while disabled. The channel is never read back except to
// learn whether an export or a polarity change is needed.
//
// The sysfs root is injectable, so tests run against a fake tree.
package sysfspwm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edged/edged/sensors"
)

// Values of the `polarity` option, as the kernel spells them.
const (
	Normal   = "normal"
	Inversed = "inversed"
)

// Values of the `safe_state` option.
const (
	Off = "off" // duty 0
	On  = "on"  // duty = period (full on)
)

// classDir is where the kernel lists PWM chips, relative to the sysfs root.
const classDir = "sys/class/pwm"

// hint tells a Pi user how to get a PWM chip.
const hint = "enable the PWM overlay: dtoverlay=pwm,pin=18,func=2 (or pwm-2chan) in /boot/firmware/config.txt, reboot, then ls /sys/class/pwm"

// Export waits: udev may take a moment to create pwmN and fix its
// permissions after the export write.
const (
	exportPoll  = 20 * time.Millisecond
	exportPolls = 50 // one second in all
)

// Frequency bounds of the `frequency` option. At 1 MHz the period is
// 1000 ns, still many steps of a PWM clock in the tens of MHz; at 1 Hz it
// is 1e9 ns, which fits the 32-bit nanosecond fields of older kernels.
const (
	MinFrequency = 1
	MaxFrequency = 1_000_000
)

// Opts are the sysfspwm keys of an actuator's YAML block.
type Opts struct {
	// Chip is N of /sys/class/pwm/pwmchipN (0 with the pwm overlays).
	Chip int `yaml:"chip"`
	// Channel is the channel of the chip: 0 is GPIO18 with
	// dtoverlay=pwm,pin=18,func=2; 1 is the second pin of pwm-2chan.
	Channel int `yaml:"channel"`
	// Frequency is the PWM frequency in Hz; the period written is
	// round(1e9/frequency) ns. Fans like 25 kHz; heaters on an SSR want a
	// few Hz at most.
	Frequency float64 `yaml:"frequency"`
	// Polarity is normal (default: high for the duty part of the period)
	// or inversed, for a load that is on while the pin is low.
	Polarity string `yaml:"polarity"`
	// SafeState is off (default, duty 0) or on (full duty), applied on
	// open, on Halt, on Safe and after a failed Set.
	SafeState string `yaml:"safe_state"`
	// SysfsRoot prefixes the sysfs path; the registry sets it from
	// drivers.Env.SysfsRoot, so it is not a YAML key.
	SysfsRoot string `yaml:"-"`
}

// DefaultOpts returns pwmchip0 channel 0 at 1 kHz, normal polarity, safe
// state off, on the real root file system.
func DefaultOpts() Opts {
	return Opts{Frequency: 1000, Polarity: Normal, SafeState: Off, SysfsRoot: "/"}
}

// Validate checks the options; errors are *sensors.FieldError naming the key.
func (o *Opts) Validate() error {
	if o.Chip < 0 || o.Chip > 1023 {
		return sensors.FieldErrorf("chip", "%d is out of range 0..1023", o.Chip)
	}
	if o.Channel < 0 || o.Channel > 1023 {
		return sensors.FieldErrorf("channel", "%d is out of range 0..1023", o.Channel)
	}
	if math.IsNaN(o.Frequency) || o.Frequency < MinFrequency || o.Frequency > MaxFrequency {
		return sensors.FieldErrorf("frequency", "%v Hz is out of range %d..%d", o.Frequency, MinFrequency, MaxFrequency)
	}
	if o.Polarity != Normal && o.Polarity != Inversed {
		return sensors.FieldErrorf("polarity", "%q is not one of normal, inversed", o.Polarity)
	}
	if o.SafeState != Off && o.SafeState != On {
		return sensors.FieldErrorf("safe_state", "%q is not one of off, on", o.SafeState)
	}
	if o.SysfsRoot == "" {
		return sensors.FieldErrorf("sysfs_root", "must not be empty")
	}
	return nil
}

// Period returns the period in nanoseconds for the configured frequency.
func (o *Opts) Period() int64 { return PeriodNS(o.Frequency) }

// PeriodNS converts a frequency in Hz to a period in whole nanoseconds.
func PeriodNS(hz float64) int64 { return int64(math.Round(1e9 / hz)) }

// Sentinel errors callers can branch on.
var (
	// ErrNoChip: the sysfs root has no such pwmchip (overlay not loaded).
	ErrNoChip = errors.New("sysfspwm: no such PWM chip")
	// ErrExport: the channel directory did not appear after export.
	ErrExport = errors.New("sysfspwm: channel not exported")
	// ErrHalted is returned by Set after Halt.
	ErrHalted = errors.New("sysfspwm: halted")
)

// Dev is one PWM channel. It is safe for concurrent use: a control loop
// sets it while shutdown may put it in its safe state.
type Dev struct {
	dir    string // .../pwmchipN/pwmM
	name   string
	safeOn bool

	// write writes one attribute; tests swap it for a fake kernel.
	write func(path, value string) error

	mu     sync.Mutex
	period int64
	level  float64
	halted bool
}

var _ sensors.Actuator = (*Dev)(nil)

// Open exports the channel if needed, waiting for its directory on clock
// (nil means the system clock), then sets polarity and period and drives
// the safe state. If any step fails it still tries the safe duty, and
// returns the error.
func Open(ctx context.Context, clock sensors.Clock, opts Opts) (*Dev, error) {
	return open(ctx, clock, opts, writeAttr)
}

func open(ctx context.Context, clock sensors.Clock, opts Opts, write func(path, value string) error) (*Dev, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("sysfspwm: %w", err)
	}
	chip := filepath.Join(opts.SysfsRoot, classDir, "pwmchip"+strconv.Itoa(opts.Chip))
	d := &Dev{
		dir:    filepath.Join(chip, "pwm"+strconv.Itoa(opts.Channel)),
		name:   fmt.Sprintf("sysfspwm(pwmchip%d/pwm%d)", opts.Chip, opts.Channel),
		safeOn: opts.SafeState == On,
		write:  write,
	}
	if _, err := os.Stat(chip); err != nil {
		return nil, fmt.Errorf("%w %d (%s): %w", ErrNoChip, opts.Chip, hint, err)
	}
	if err := d.export(ctx, clock, chip, opts.Channel); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.setup(opts.Polarity, opts.Period()); err != nil {
		_ = d.applySafe()
		return nil, err
	}
	return d, nil
}

// export writes the channel number to the chip's export file unless the
// channel directory exists, then polls for the directory on clock.
func (d *Dev) export(ctx context.Context, clock sensors.Clock, chip string, channel int) error {
	if dirExists(d.dir) {
		return nil
	}
	if n, err := readInt(filepath.Join(chip, "npwm")); err == nil && int64(channel) >= n {
		return fmt.Errorf("%w: %s has %d channels, channel %d does not exist", ErrExport, filepath.Base(chip), n, channel)
	}
	if err := d.write(filepath.Join(chip, "export"), strconv.Itoa(channel)); err != nil {
		return fmt.Errorf("sysfspwm: %s: export: %w", d.name, err)
	}
	w := sensors.NewWaiter(clock)
	defer w.Stop()
	for range exportPolls {
		if dirExists(d.dir) {
			return nil
		}
		if err := w.Wait(ctx, exportPoll); err != nil {
			return fmt.Errorf("sysfspwm: %s: waiting for export: %w", d.name, err)
		}
	}
	if dirExists(d.dir) {
		return nil
	}
	return fmt.Errorf("%w: %s: %s did not appear within %v", ErrExport, d.name, d.dir, exportPoll*exportPolls)
}

// setup brings the channel to a known state: disabled, duty 0, the
// polarity if it differs, the period, the safe duty, enabled. d.mu is held.
func (d *Dev) setup(polarity string, period int64) error {
	if err := d.attr("enable", "0"); err != nil {
		return err
	}
	if err := d.attr("duty_cycle", "0"); err != nil {
		return err
	}
	cur, err := os.ReadFile(filepath.Join(d.dir, "polarity"))
	switch {
	case err == nil && strings.TrimSpace(string(cur)) != polarity:
		if err := d.attr("polarity", polarity); err != nil {
			return err
		}
	case err != nil && polarity != Normal:
		return fmt.Errorf("sysfspwm: %s: polarity %s: %w", d.name, polarity, err)
	}
	if err := d.attr("period", strconv.FormatInt(period, 10)); err != nil {
		return err
	}
	d.period = period
	if err := d.setDuty(d.safeDuty()); err != nil {
		return err
	}
	if err := d.attr("enable", "1"); err != nil {
		return err
	}
	d.level = d.safeLevel()
	return nil
}

// String names the channel, e.g. "sysfspwm(pwmchip0/pwm0)".
func (d *Dev) String() string { return d.name }

// Set writes duty_cycle = round(level * period). Levels outside 0..1 (and
// NaN) are an error, not clamped. If the write fails the channel is driven
// to its safe state, since its duty is then unknown.
func (d *Dev) Set(level float64) error {
	if math.IsNaN(level) || level < 0 || level > 1 {
		return fmt.Errorf("sysfspwm: %s: level %v is outside 0..1", d.name, level)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.halted {
		return fmt.Errorf("%w: %s", ErrHalted, d.name)
	}
	if err := d.setDuty(int64(math.Round(level * float64(d.period)))); err != nil {
		return errors.Join(err, d.applySafe())
	}
	d.level = level
	return nil
}

// SetFrequency changes the period: disable, duty 0, period, the duty for
// the current level, enable. The kernel checks duty <= period on every
// write, so writing the new period while the old duty is longer would
// fail, and a changing period under a running channel glitches the load.
func (d *Dev) SetFrequency(hz float64) error {
	if math.IsNaN(hz) || hz < MinFrequency || hz > MaxFrequency {
		return fmt.Errorf("sysfspwm: %s: frequency %v Hz is out of range %d..%d", d.name, hz, MinFrequency, MaxFrequency)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.halted {
		return fmt.Errorf("%w: %s", ErrHalted, d.name)
	}
	period := PeriodNS(hz)
	err := d.attr("enable", "0")
	if err == nil {
		err = d.attr("duty_cycle", "0")
	}
	if err == nil {
		if err = d.attr("period", strconv.FormatInt(period, 10)); err == nil {
			d.period = period
		}
	}
	if err == nil {
		err = d.setDuty(int64(math.Round(d.level * float64(d.period))))
	}
	if err == nil {
		err = d.attr("enable", "1")
	}
	if err != nil {
		return errors.Join(err, d.applySafe())
	}
	return nil
}

// Period returns the period in nanoseconds last written.
func (d *Dev) Period() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.period
}

// Level returns the level last set successfully, from software.
func (d *Dev) Level() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.level
}

// Safe drives the safe duty. It works after Halt too.
func (d *Dev) Safe() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applySafe()
}

// Halt drives the safe duty and refuses further Sets. The channel stays
// exported and enabled, so it holds the safe duty until the process or
// the kernel changes it: an unexported channel's output is up to the
// kernel driver.
func (d *Dev) Halt() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.halted = true
	return d.applySafe()
}

// applySafe writes the safe duty and makes sure the channel is enabled,
// so a safe "on" actually drives. d.mu is held.
func (d *Dev) applySafe() error {
	if err := d.setDuty(d.safeDuty()); err != nil {
		return err
	}
	if err := d.attr("enable", "1"); err != nil {
		return err
	}
	d.level = d.safeLevel()
	return nil
}

func (d *Dev) safeDuty() int64 {
	if d.safeOn {
		return d.period
	}
	return 0
}

func (d *Dev) safeLevel() float64 {
	if d.safeOn {
		return 1
	}
	return 0
}

// setDuty writes duty_cycle. d.mu is held.
func (d *Dev) setDuty(ns int64) error {
	return d.attr("duty_cycle", strconv.FormatInt(ns, 10))
}

// attr writes one attribute of the channel; the error names the file.
func (d *Dev) attr(name, value string) error {
	if err := d.write(filepath.Join(d.dir, name), value); err != nil {
		return fmt.Errorf("sysfspwm: %s: write %s=%s: %w", d.name, name, value, err)
	}
	return nil
}

// writeAttr writes a sysfs attribute in one write(2), as the kernel wants.
func writeAttr(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func readInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("sysfspwm: %s: %w", p, err)
	}
	return n, nil
}
