package drivers_test

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
	"github.com/edged/edged/drivers/bh1750"
	"github.com/edged/edged/drivers/ds18b20"
	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/drivers/relay"
	"github.com/edged/edged/drivers/relay/relaytest"
	"github.com/edged/edged/drivers/sht3x"
	"github.com/edged/edged/sensors"
)

const hwConfig = `
device: {id: gh-01}
sensors:
  - {id: air, driver: sht3x, bus: "1", address: 0x45, repeatability: medium}
  - {id: light, driver: bh1750, address: 0x5c, resolution: high2, mtreg: 138}
  - {id: soil, driver: ds18b20, device: 28-0316a2795eff}
  - {id: lamp, driver: bh1750}
actuators:
  - {id: heater, driver: relay, pin: GPIO17, active_low: true}
  - {id: fan, driver: relay, pin: GPIO27, safe_state: "on"}
`

// TestHardwareConfig decodes the hardware keys through the real config
// loader: inline bus/address, hex addresses, defaults for keys not given.
func TestHardwareConfig(t *testing.T) {
	cfg, err := configs.Parse("hw.yaml", []byte(hwConfig), drivers.Default, nil)
	if err != nil {
		t.Fatal(err)
	}
	air := *cfg.Sensors[0].Opts.(*sht3x.Opts)
	if want := (sht3x.Opts{Opts: i2cbus.Opts{Bus: "1", Address: 0x45}, Repeatability: sht3x.Medium}); air != want {
		t.Errorf("sht3x options %+v, want %+v", air, want)
	}
	light := *cfg.Sensors[1].Opts.(*bh1750.Opts)
	if want := (bh1750.Opts{Opts: i2cbus.Opts{Bus: "1", Address: 0x5c}, Resolution: bh1750.High2, MTreg: 138}); light != want {
		t.Errorf("bh1750 options %+v, want %+v", light, want)
	}
	soil := *cfg.Sensors[2].Opts.(*ds18b20.Opts)
	if soil.Device != "28-0316a2795eff" {
		t.Errorf("ds18b20 options %+v", soil)
	}
	if lamp := *cfg.Sensors[3].Opts.(*bh1750.Opts); lamp != bh1750.DefaultOpts() {
		t.Errorf("bh1750 defaults %+v, want %+v", lamp, bh1750.DefaultOpts())
	}
	heater := *cfg.Actuators[0].Opts.(*relay.Opts)
	if want := (relay.Opts{Pin: "GPIO17", ActiveLow: true, SafeState: relay.Off}); heater != want {
		t.Errorf("relay options %+v, want %+v", heater, want)
	}
	if fan := *cfg.Actuators[1].Opts.(*relay.Opts); fan.SafeState != relay.On {
		t.Errorf("relay safe_state %q, want on", fan.SafeState)
	}
}

// TestHardwareConfigErrors checks that option errors point at the key.
func TestHardwareConfigErrors(t *testing.T) {
	checkConfigErrors(t, "sensors", []configError{
		{"address range", "  - id: s\n    driver: sht3x\n    address: 0x7a\n", 5, "address 0x7a is out of range 0x03..0x77"},
		{"repeatability", "  - id: s\n    driver: sht3x\n    repeatability: best\n", 5, "repeatability"},
		{"mtreg", "  - id: s\n    driver: bh1750\n    mtreg: 300\n", 5, "mtreg: 300 is out of range 31..254"},
		{"resolution", "  - id: s\n    driver: bh1750\n    resolution: max\n", 5, "resolution"},
		{"device id", "  - id: s\n    driver: ds18b20\n    device: 28-XYZ\n", 5, "device"},
		{"sysfs_root is not a key", "  - id: s\n    driver: ds18b20\n    device: 28-0316a2795eff\n    sysfs_root: /tmp\n", 6, "sysfs_root"},
		{"address clash", "  - {id: a, driver: sht3x}\n  - {id: b, driver: sht3x, address: 0x44}\n", 4, "already used"},
	})
	_, err := configs.Parse("bad.yaml", []byte("device: {id: x}\nactuators:\n  - id: r\n    driver: relay\n    pin: GPIO17\n    safe_state: last\n"), drivers.Default, nil)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:6:") {
		t.Errorf("relay safe_state: %v", err)
	}
}

// TestHardwareOpenSharesBus opens two I2C sensors on bus "1" through the
// registry; they use the Env's one bus, and Env.Close closes it.
func TestHardwareOpenSharesBus(t *testing.T) {
	pb := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
		{Addr: 0x44, W: []byte{0x24, 0x00}},
		{Addr: 0x44, R: []byte{0x66, 0x66, 0x93, 0x99, 0x99, 0xBE}},
		{Addr: 0x23, W: []byte{0x01}}, {Addr: 0x23, W: []byte{0x42}}, {Addr: 0x23, W: []byte{0x65}}, {Addr: 0x23, W: []byte{0x20}},
		{Addr: 0x23, R: []byte{0x83, 0x90}},
		{Addr: 0x23, W: []byte{0x00}}, // Halt: power down
	}}
	env := playbackEnv(t, pb)
	air, err := drivers.Default.OpenSensor(env, "sht3x", "air", drivers.Default["sht3x"].NewOpts())
	if err != nil {
		t.Fatal(err)
	}
	light, err := drivers.Default.OpenSensor(env, "bh1750", "light", drivers.Default["bh1750"].NewOpts())
	if err != nil {
		t.Fatal(err)
	}
	if air.String() != "sht3x(i2c 1, 0x44)" || light.String() != "bh1750(i2c 1, 0x23)" {
		t.Errorf("names %q, %q", air, light)
	}
	v := make([]float64, 2)
	if err := air.Sense(context.Background(), v); err != nil || math.Abs(v[0]-25) > 1e-9 || math.Abs(v[1]-60) > 1e-9 {
		t.Fatalf("air: %v, %v", v, err)
	}
	if err := light.Sense(context.Background(), v[:1]); err != nil || math.Abs(v[0]-33680/1.2) > 1e-9 {
		t.Fatalf("light: %v, %v", v[0], err)
	}
	for _, s := range []sensors.Sensor{air, light} {
		if err := s.Halt(); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Close(); err != nil {
		t.Fatalf("env.Close (Playback checks every op was used): %v", err)
	}
}

func TestHardwareOpenErrors(t *testing.T) {
	env := playbackEnv(t, nil)
	t.Cleanup(func() { env.Close() })

	o := sht3x.DefaultOpts()
	o.Bus = "edged-test-no-such-bus"
	_, err := drivers.Default.OpenSensor(env, "sht3x", "air", &o)
	if !errors.Is(err, i2cbus.ErrNoBus) || !strings.Contains(err.Error(), `"air"`) || !strings.Contains(err.Error(), "raspi-config") {
		t.Errorf("sht3x on a missing bus: %v", err)
	}

	_, err = drivers.Default.OpenSensor(env, "bh1750", "light", &sht3x.Opts{})
	if err == nil || !strings.Contains(err.Error(), "bh1750") {
		t.Errorf("bh1750 with sht3x options: %v", err)
	}

	_, err = drivers.Default.OpenActuator(env, "relay", "heater", &relay.Opts{Pin: "EDGED_TEST_NO_PIN", SafeState: relay.Off})
	if !errors.Is(err, relay.ErrNoPin) || !strings.Contains(err.Error(), "EDGED_TEST_NO_PIN") {
		t.Errorf("relay on a missing pin: %v", err)
	}

	do := ds18b20.Opts{Device: "28-0316a2795eff"}
	_, err = drivers.Default.OpenSensor(env, "ds18b20", "soil", &do)
	if err == nil || !strings.Contains(err.Error(), "w1-gpio") {
		t.Errorf("ds18b20 without a 1-wire bus: %v", err)
	}
}

// TestHardwareOpenSysfsAndGPIO opens the ds18b20 under the Env's sysfs
// root and a relay on a registered fake pin.
func TestHardwareOpenSysfsAndGPIO(t *testing.T) {
	env := playbackEnv(t, nil)
	t.Cleanup(func() { env.Close() })
	dir := filepath.Join(env.SysfsRoot, "sys/bus/w1/devices/28-0316a2795eff")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "temperature"), []byte("21375\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := ds18b20.DefaultOpts() // SysfsRoot "/": the registry replaces it
	o.Device = "28-0316a2795eff"
	soil, err := drivers.Default.OpenSensor(env, "ds18b20", "soil", &o)
	if err != nil {
		t.Fatal(err)
	}
	defer soil.Halt()
	v := make([]float64, 1)
	if err := soil.Sense(context.Background(), v); err != nil || v[0] != 21.375 {
		t.Fatalf("soil: %v, %v", v[0], err)
	}

	p := &relaytest.Pin{N: "EDGED_TEST_REGISTRY_PIN"}
	if err := gpioreg.Register(p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gpioreg.Unregister(p.N) })
	heater, err := drivers.Default.OpenActuator(env, "relay", "heater", &relay.Opts{Pin: p.N, ActiveLow: true, SafeState: relay.Off})
	if err != nil {
		t.Fatal(err)
	}
	if p.Electrical() != gpio.High || heater.Level() != 0 {
		t.Fatalf("relay opened at pin %v, level %v; want active-low off", p.Electrical(), heater.Level())
	}
	if err := heater.Set(1); err != nil || p.Electrical() != gpio.Low {
		t.Fatalf("Set(1): %v, pin %v", err, p.Electrical())
	}
	if err := heater.Halt(); err != nil || p.Electrical() != gpio.High {
		t.Fatalf("Halt: %v, pin %v", err, p.Electrical())
	}
	if p.Reads() != 0 {
		t.Fatal("the relay read its output pin")
	}
}
