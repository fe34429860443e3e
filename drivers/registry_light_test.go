package drivers_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
	"github.com/edged/edged/drivers/ads1x15"
	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/drivers/tsl2561"
	"github.com/edged/edged/drivers/veml7700"
	"github.com/edged/edged/sensors"
)

const lightConfig = `
device: {id: gh-01}
sensors:
  - {id: lux, driver: tsl2561, address: 0x29, gain: 1, integration_time: 13.7ms, package: cs}
  - {id: lux2, driver: tsl2561}
  - {id: sky, driver: veml7700, gain: 1/8, integration_time: 25ms, correction: false}
  - {id: sky2, driver: veml7700, bus: "3"}
  - id: ldr
    driver: ads1x15
    address: 0x49
    chip: ads1015
    channel: 2
    gain: 2.048
    data_rate: 1600
    ldr: {series_ohms: 10000, vcc: 3.3, ohms_at_10lx: 15000, gamma: 0.7, side: gnd}
  - {id: volts, driver: ads1x15}
`

// TestLightConfig decodes the light keys through the real config loader:
// gains written as YAML numbers and fractions, durations, the nested ldr
// block, defaults for keys not given.
func TestLightConfig(t *testing.T) {
	cfg, err := configs.Parse("light.yaml", []byte(lightConfig), drivers.Default, nil)
	if err != nil {
		t.Fatal(err)
	}
	lux := *cfg.Sensors[0].Opts.(*tsl2561.Opts)
	if want := (tsl2561.Opts{Opts: i2cbus.Opts{Bus: "1", Address: 0x29}, Gain: tsl2561.Gain1,
		IntegrationTime: 13700 * time.Microsecond, Package: tsl2561.PackageCS}); lux != want {
		t.Errorf("tsl2561 options %+v, want %+v", lux, want)
	}
	if lux2 := *cfg.Sensors[1].Opts.(*tsl2561.Opts); lux2 != tsl2561.DefaultOpts() {
		t.Errorf("tsl2561 defaults %+v", lux2)
	}
	sky := *cfg.Sensors[2].Opts.(*veml7700.Opts)
	if want := (veml7700.Opts{Opts: i2cbus.Opts{Bus: "1", Address: 0x10}, Gain: veml7700.GainEighth,
		IntegrationTime: 25 * time.Millisecond, Correction: false}); sky != want {
		t.Errorf("veml7700 options %+v, want %+v", sky, want)
	}
	if sky2 := *cfg.Sensors[3].Opts.(*veml7700.Opts); sky2.Bus != "3" || !sky2.Correction || sky2.Gain != veml7700.GainAuto {
		t.Errorf("veml7700 defaults %+v", sky2)
	}
	ldr := *cfg.Sensors[4].Opts.(*ads1x15.Opts)
	if ldr.LDR == nil || *ldr.LDR != (ads1x15.LDROpts{SeriesOhms: 10000, VCC: 3.3, OhmsAt10Lux: 15000, Gamma: 0.7, Side: ads1x15.SideGND}) {
		t.Fatalf("ldr options %+v", ldr.LDR)
	}
	ldr.LDR = nil
	if want := (ads1x15.Opts{Opts: i2cbus.Opts{Bus: "1", Address: 0x49}, Chip: ads1x15.ADS1015, Channel: 2,
		Gain: 2.048, DataRate: 1600}); ldr != want {
		t.Errorf("ads1x15 options %+v, want %+v", ldr, want)
	}
	if volts := *cfg.Sensors[5].Opts.(*ads1x15.Opts); volts != ads1x15.DefaultOpts() {
		t.Errorf("ads1x15 defaults %+v", volts)
	}
}

// TestLightConfigErrors checks that option errors point at the key.
func TestLightConfigErrors(t *testing.T) {
	checkConfigErrors(t, "sensors", []configError{
		{"tsl2561 address", "  - id: s\n    driver: tsl2561\n    address: 0x23\n", 5, "not a TSL2561 address"},
		{"tsl2561 gain", "  - id: s\n    driver: tsl2561\n    gain: 8\n", 5, "gain"},
		{"tsl2561 integration", "  - id: s\n    driver: tsl2561\n    integration_time: 100ms\n", 5, "integration_time"},
		{"veml7700 address", "  - id: s\n    driver: veml7700\n    address: 0x48\n", 5, "only address 0x10"},
		{"veml7700 gain", "  - id: s\n    driver: veml7700\n    gain: 0.125\n", 5, "gain"},
		{"veml7700 unknown key", "  - id: s\n    driver: veml7700\n    it: 25ms\n", 5, `unknown key "it"`},
		{"ads1x15 channel", "  - id: s\n    driver: ads1x15\n    channel: 4\n", 5, "channel: 4 is out of range 0..3"},
		{"ads1x15 data rate", "  - id: s\n    driver: ads1x15\n    data_rate: 1600\n", 5, "not an ADS1115 rate"},
		{"ads1x15 ldr incomplete", "  - id: s\n    driver: ads1x15\n    ldr: {series_ohms: 10000}\n", 5, "vcc"},
		{"ads1x15 ldr unknown key", "  - id: s\n    driver: ads1x15\n    ldr: {series_ohm: 10000}\n", 5, "series_ohm"},
		{"ads1x15 clash", "  - {id: a, driver: ads1x15}\n  - {id: b, driver: ads1x15, channel: 1}\n", 4, "already used"},
	})
	// A controller may not use a voltage-only ads1x15 as a light input.
	_, err := configs.Parse("bad.yaml", []byte("device: {id: x}\nsensors:\n  - {id: v, driver: ads1x15}\ncontrollers:\n  - {id: c, input: v/illuminance, setpoint: 1, pid: {kp: 1}}\n"), drivers.Default, nil)
	if err == nil || !strings.Contains(err.Error(), "does not measure illuminance") {
		t.Errorf("ads1x15 without ldr as a light input: %v", err)
	}
}

// TestLightOpenSharesBus opens the three light drivers on bus "1" through
// the registry, reads each once and halts them; Env.Close checks through
// Playback that every byte the datasheets prescribe went out, in order.
func TestLightOpenSharesBus(t *testing.T) {
	pb := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
		// tsl2561: power up, read back, timing 16x/402 ms, power cycle,
		// CH0, CH1, power down.
		{Addr: 0x39, W: []byte{0x80, 0x03}},
		{Addr: 0x39, W: []byte{0x80}, R: []byte{0x03}},
		{Addr: 0x39, W: []byte{0x81, 0x12}},
		{Addr: 0x39, W: []byte{0x80, 0x00}},
		{Addr: 0x39, W: []byte{0x80, 0x03}},
		{Addr: 0x39, W: []byte{0xAC}, R: []byte{0xE8, 0x03}},
		{Addr: 0x39, W: []byte{0xAE}, R: []byte{0xC8, 0x00}},
		{Addr: 0x39, W: []byte{0x80, 0x00}},
		// veml7700: shut down with gain 1/8, 100 ms; PSM off; power on; ALS.
		{Addr: 0x10, W: []byte{0x00, 0x01, 0x10}},
		{Addr: 0x10, W: []byte{0x03, 0x00, 0x00}},
		{Addr: 0x10, W: []byte{0x00, 0x00, 0x10}},
		{Addr: 0x10, W: []byte{0x04}, R: []byte{0xE8, 0x03}},
		// ads1x15: start AIN0 ±4.096 V 128 SPS, OS done, conversion.
		{Addr: 0x48, W: []byte{0x01, 0xC3, 0x83}},
		{Addr: 0x48, W: []byte{0x01}, R: []byte{0xC3, 0x83}},
		{Addr: 0x48, W: []byte{0x00}, R: []byte{0x40, 0x00}},
		// Halt: tsl2561 power down, veml7700 shut down; ads1x15 sends nothing.
		{Addr: 0x39, W: []byte{0x80, 0x00}},
		{Addr: 0x10, W: []byte{0x00, 0x01, 0x10}},
	}}
	env := playbackEnv(t, pb)
	var opened []sensors.Sensor
	for _, name := range []string{"tsl2561", "veml7700", "ads1x15"} {
		s, err := drivers.Default.OpenSensor(env, name, name, drivers.Default[name].NewOpts())
		if err != nil {
			t.Fatal(err)
		}
		opened = append(opened, s)
	}
	names := []string{"tsl2561(i2c 1, 0x39)", "veml7700(i2c 1, 0x10)", "ads1115(i2c 1, 0x48, AIN0)"}
	want := []float64{23.886211045078653, 537.6, 2.048}
	for i, s := range opened {
		if s.String() != names[i] {
			t.Errorf("name %q, want %q", s, names[i])
		}
		v := []float64{math.NaN()}
		if err := s.Sense(context.Background(), v); err != nil || math.Abs(v[0]-want[i]) > 1e-9 {
			t.Fatalf("%s: %v, %v; want %v", s, v[0], err, want[i])
		}
	}
	for _, s := range opened {
		if err := s.Halt(); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Close(); err != nil {
		t.Fatalf("env.Close (Playback checks every op was used): %v", err)
	}
}

func TestLightOpenErrors(t *testing.T) {
	env := playbackEnv(t, nil)
	t.Cleanup(func() { env.Close() })
	for _, name := range []string{"tsl2561", "veml7700", "ads1x15"} {
		o := drivers.Default[name].NewOpts()
		switch o := o.(type) {
		case *tsl2561.Opts:
			o.Bus = "edged-test-no-such-bus"
		case *veml7700.Opts:
			o.Bus = "edged-test-no-such-bus"
		case *ads1x15.Opts:
			o.Bus = "edged-test-no-such-bus"
		}
		_, err := drivers.Default.OpenSensor(env, name, "s", o)
		if !errors.Is(err, i2cbus.ErrNoBus) || !strings.Contains(err.Error(), "raspi-config") {
			t.Errorf("%s on a missing bus: %v", name, err)
		}
		_, err = drivers.Default.OpenSensor(env, name, "s", &struct{}{})
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s with foreign options: %v", name, err)
		}
	}
}
