package drivers_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/drivers/pca9685"
	"github.com/edged/edged/drivers/sysfspwm"
)

const outputConfig = `
device: {id: gh-01}
actuators:
  - {id: fan, driver: sysfspwm, frequency: 25000, safe_state: "on"}
  - {id: lamp, driver: sysfspwm, chip: 0, channel: 1, polarity: inversed}
  - {id: heater, driver: pca9685, channel: 0}
  - {id: pump, driver: pca9685, channel: 15, frequency: 200, safe_state: "on"}
  - {id: strip, driver: pca9685, bus: "3", address: 0x41, frequency: 1000}
`

// TestOutputConfig decodes the output keys through the real config loader:
// two channels of one PCA9685 at one address are one chip, not a clash.
func TestOutputConfig(t *testing.T) {
	cfg, err := configs.Parse("out.yaml", []byte(outputConfig), drivers.Default, nil)
	if err != nil {
		t.Fatal(err)
	}
	fan := *cfg.Actuators[0].Opts.(*sysfspwm.Opts)
	want := sysfspwm.DefaultOpts()
	want.Frequency, want.SafeState = 25000, sysfspwm.On
	if fan != want {
		t.Errorf("fan %+v, want %+v", fan, want)
	}
	lamp := *cfg.Actuators[1].Opts.(*sysfspwm.Opts)
	if lamp.Channel != 1 || lamp.Polarity != sysfspwm.Inversed || lamp.Frequency != 1000 {
		t.Errorf("lamp %+v", lamp)
	}
	if heater := *cfg.Actuators[2].Opts.(*pca9685.Opts); heater != pca9685.DefaultOpts() {
		t.Errorf("heater %+v, want the defaults %+v", heater, pca9685.DefaultOpts())
	}
	pump := *cfg.Actuators[3].Opts.(*pca9685.Opts)
	if pump.Channel != 15 || pump.SafeState != pca9685.On || pump.I2C.Address != 0x40 {
		t.Errorf("pump %+v", pump)
	}
	strip := *cfg.Actuators[4].Opts.(*pca9685.Opts)
	if want := (pca9685.Opts{I2C: i2cbus.Opts{Bus: "3", Address: 0x41}, Frequency: 1000, SafeState: pca9685.Off}); strip != want {
		t.Errorf("strip %+v, want %+v", strip, want)
	}
}

func TestOutputConfigErrors(t *testing.T) {
	checkConfigErrors(t, "actuators", []configError{
		{"pwm frequency", "  - id: a\n    driver: sysfspwm\n    frequency: 0\n", 5, "frequency"},
		{"pwm polarity", "  - id: a\n    driver: sysfspwm\n    polarity: inverted\n", 5, "polarity"},
		{"pwm sysfs_root is not a key", "  - id: a\n    driver: sysfspwm\n    sysfs_root: /tmp\n", 5, "sysfs_root"},
		{"pca channel", "  - id: a\n    driver: pca9685\n    channel: 16\n", 5, "channel: 16 is out of range 0..15"},
		{"pca frequency", "  - id: a\n    driver: pca9685\n    frequency: 25000\n", 5, "frequency"},
		{"pca address", "  - id: a\n    driver: pca9685\n    address: 0x7a\n", 5, "address 0x7a is out of range"},
		{"pca safe state", "  - id: a\n    driver: pca9685\n    safe_state: last\n", 5, "safe_state"},
	})
}

// TestPCA9685ChannelsShareChip opens two channels through the registry:
// the chip starts once (datasheet 7.3.1-7.3.5 sequence, 200 Hz = prescale
// 0x1E), each channel writes its safe state (7.3.3), and a third channel
// asking for another frequency is refused.
func TestPCA9685ChannelsShareChip(t *testing.T) {
	pb := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
		{Addr: 0x40, W: []byte{0x00, 0x30}},
		{Addr: 0x40, W: []byte{0xFA, 0x00, 0x00, 0x00, 0x10}},
		{Addr: 0x40, W: []byte{0x01, 0x04}},
		{Addr: 0x40, W: []byte{0xFE, 0x1E}},
		{Addr: 0x40, W: []byte{0x00, 0x20}},
		{Addr: 0x40, W: []byte{0x06, 0x00, 0x00, 0x00, 0x10}}, // heater, channel 0: full off
		{Addr: 0x40, W: []byte{0x42, 0x00, 0x10, 0x00, 0x00}}, // pump, channel 15: full on
		{Addr: 0x40, W: []byte{0x06, 0x00, 0x00, 0x00, 0x08}}, // heater 50 %
		{Addr: 0x40, W: []byte{0x06, 0x00, 0x00, 0x00, 0x10}}, // heater Halt
		{Addr: 0x40, W: []byte{0x42, 0x00, 0x10, 0x00, 0x00}}, // pump Halt
	}}
	env := playbackEnv(t, pb)
	heaterOpts := pca9685.DefaultOpts()
	heater, err := drivers.Default.OpenActuator(env, "pca9685", "heater", &heaterOpts)
	if err != nil {
		t.Fatal(err)
	}
	pumpOpts := pca9685.DefaultOpts()
	pumpOpts.Channel, pumpOpts.SafeState = 15, pca9685.On
	pump, err := drivers.Default.OpenActuator(env, "pca9685", "pump", &pumpOpts)
	if err != nil {
		t.Fatal(err)
	}
	fastOpts := pca9685.DefaultOpts()
	fastOpts.Channel, fastOpts.Frequency = 1, 1000
	if _, err := drivers.Default.OpenActuator(env, "pca9685", "fast", &fastOpts); !errors.Is(err, pca9685.ErrFrequency) || !strings.Contains(err.Error(), `actuator "fast"`) {
		t.Fatalf("third channel at another frequency: %v", err)
	}
	dupOpts := pca9685.DefaultOpts()
	if _, err := drivers.Default.OpenActuator(env, "pca9685", "dup", &dupOpts); !errors.Is(err, pca9685.ErrChannelUsed) || !strings.Contains(err.Error(), `"heater"`) {
		t.Fatalf("second actuator on channel 0: %v", err)
	}
	if pump.Level() != 1 || heater.Level() != 0 {
		t.Errorf("levels %v, %v after open", heater.Level(), pump.Level())
	}
	if err := heater.Set(0.5); err != nil {
		t.Fatal(err)
	}
	for _, a := range []interface{ Halt() error }{heater, pump} {
		if err := a.Halt(); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Close(); err != nil {
		t.Fatalf("env.Close (Playback checks every op was used): %v", err)
	}
}

// TestSysfsPWMOpen opens a kernel PWM channel under the Env's sysfs root.
func TestSysfsPWMOpen(t *testing.T) {
	env := playbackEnv(t, nil)
	t.Cleanup(func() { env.Close() })
	dir := filepath.Join(env.SysfsRoot, "sys/class/pwm/pwmchip0/pwm0")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"period": "0", "duty_cycle": "0", "enable": "0", "polarity": "normal"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o := sysfspwm.DefaultOpts() // SysfsRoot "/": the registry replaces it
	o.SafeState = sysfspwm.On
	fan, err := drivers.Default.OpenActuator(env, "sysfspwm", "fan", &o)
	if err != nil {
		t.Fatal(err)
	}
	if err := fan.Set(0.25); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"period": "1000000", "duty_cycle": "250000", "enable": "1"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
	if err := fan.Halt(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "duty_cycle")); string(b) != "1000000" || fan.Level() != 1 {
		t.Errorf("after Halt duty %q level %v, want the safe full duty", b, fan.Level())
	}
}

// TestRunningOptsPCA9685: once a chip is started, a channel asking for
// another frequency gets the chip's (the old entry's value when it gives
// the chip's rate), and "frequency" is named; a channel at the chip's
// rate, one on a chip not started, and other drivers' options come back
// as they are. The reload uses it so a frequency change is reported as
// needing a restart instead of failing every reload.
func TestRunningOptsPCA9685(t *testing.T) {
	env := playbackEnv(t, &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
		{Addr: 0x40, W: []byte{0x00, 0x30}},
		{Addr: 0x40, W: []byte{0xFA, 0x00, 0x00, 0x00, 0x10}},
		{Addr: 0x40, W: []byte{0x01, 0x04}},
		{Addr: 0x40, W: []byte{0xFE, 0x1E}},
		{Addr: 0x40, W: []byte{0x00, 0x20}},
		{Addr: 0x40, W: []byte{0x06, 0x00, 0x00, 0x00, 0x10}}, // channel 0 safe
		{Addr: 0x40, W: []byte{0x06, 0x00, 0x00, 0x00, 0x10}}, // Halt
	}})
	heater := pca9685.DefaultOpts()
	heater.Frequency = 199 // prescale 0x1E, as 200
	unused := heater
	unused.I2C.Address = 0x41
	unused.Frequency = 1000
	if got, keys := drivers.RunningOpts(env, "pca9685", &unused, nil); got != any(&unused) || keys != nil {
		t.Errorf("chip not started: %+v %q, want the opts as they are", got, keys)
	}
	a, err := drivers.Default.OpenActuator(env, "pca9685", "heater", &heater)
	if err != nil {
		t.Fatal(err)
	}
	fast := heater
	fast.Frequency = 1000
	fast.SafeState = pca9685.On
	for _, tc := range []struct {
		name     string
		opts     any
		old      any
		wantHz   float64
		wantKeys []string
	}{
		{"same rate", &heater, nil, 199, nil},
		{"200 Hz is the same prescale", &pca9685.Opts{I2C: heater.I2C, Frequency: 200}, nil, 200, nil},
		{"another rate, a new entry: the chip's", &fast, nil, 199, []string{"frequency"}},
		{"another rate, the old entry's", &fast, &pca9685.Opts{I2C: heater.I2C, Frequency: 200}, 200, []string{"frequency"}},
		{"old entry on another chip", &fast, &unused, 199, []string{"frequency"}},
		{"another chip", &unused, nil, 1000, nil},
	} {
		got, keys := drivers.RunningOpts(env, "pca9685", tc.opts, tc.old)
		o := got.(*pca9685.Opts)
		if o.Frequency != tc.wantHz || !slices.Equal(keys, tc.wantKeys) {
			t.Errorf("%s: %v Hz %q, want %v Hz %q", tc.name, o.Frequency, keys, tc.wantHz, tc.wantKeys)
		}
		if keys == nil && got != tc.opts {
			t.Errorf("%s: fitting opts were copied", tc.name)
		}
		if keys != nil && (o.SafeState != tc.opts.(*pca9685.Opts).SafeState || tc.opts.(*pca9685.Opts).Frequency == o.Frequency) {
			t.Errorf("%s: %+v from %+v: only the frequency may change, and the input must not", tc.name, o, tc.opts)
		}
	}
	so := sysfspwm.DefaultOpts()
	if got, keys := drivers.RunningOpts(env, "sysfspwm", &so, nil); got != any(&so) || keys != nil {
		t.Errorf("sysfspwm: %+v %q", got, keys)
	}
	if err := a.Halt(); err != nil {
		t.Fatal(err)
	}
	if err := env.Close(); err != nil {
		t.Fatalf("env.Close (Playback checks every op was used, none added): %v", err)
	}
}

func TestOutputOpenErrors(t *testing.T) {
	env := playbackEnv(t, nil)
	t.Cleanup(func() { env.Close() })
	po := pca9685.DefaultOpts()
	po.I2C.Bus = "edged-test-no-such-bus"
	_, err := drivers.Default.OpenActuator(env, "pca9685", "strip", &po)
	if !errors.Is(err, i2cbus.ErrNoBus) || !strings.Contains(err.Error(), `"strip"`) || !strings.Contains(err.Error(), "raspi-config") {
		t.Errorf("pca9685 on a missing bus: %v", err)
	}
	so := sysfspwm.DefaultOpts()
	_, err = drivers.Default.OpenActuator(env, "sysfspwm", "fan", &so)
	if !errors.Is(err, sysfspwm.ErrNoChip) || !strings.Contains(err.Error(), "dtoverlay=pwm") {
		t.Errorf("sysfspwm without a chip: %v", err)
	}
	if _, err := drivers.Default.OpenActuator(env, "pca9685", "x", &so); err == nil || !strings.Contains(err.Error(), "pca9685") {
		t.Errorf("pca9685 with sysfspwm options: %v", err)
	}
	bad := pca9685.DefaultOpts()
	bad.Channel = 99
	if _, err := drivers.Default.OpenActuator(env, "pca9685", "x", &bad); err == nil || !strings.Contains(err.Error(), "channel") {
		t.Errorf("pca9685 with channel 99: %v", err)
	}
}
