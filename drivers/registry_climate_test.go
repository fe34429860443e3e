package drivers_test

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
	"github.com/edged/edged/drivers/aht20"
	"github.com/edged/edged/drivers/am2320"
	"github.com/edged/edged/drivers/bme280"
	"github.com/edged/edged/drivers/dht22"
	"github.com/edged/edged/drivers/htu21d"
	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/drivers/sht4x"
	"github.com/edged/edged/sensors"
)

const climateConfig = `
device: {id: gh-01}
sensors:
  - {id: a, driver: sht4x, address: 0x46, precision: low}
  - {id: b, driver: bme280, bus: "3", address: 0x77, temperature_oversampling: 2, pressure_oversampling: 16, humidity_oversampling: 1, iir_filter: 4}
  - {id: c, driver: aht20}
  - {id: d, driver: si7021, bus: "4"}
  - {id: e, driver: am2320, interval: 5s}
  - {id: f, driver: dht22, iio_name: "dht11@4", name: Greenhouse door}
  - {id: g, driver: dht22, device: iio:device1}
  - {id: h, driver: bme280}
`

// TestClimateConfig decodes the climate keys through the real config
// loader: inline bus/address, hex addresses, defaults for keys not given.
func TestClimateConfig(t *testing.T) {
	cfg, err := configs.Parse("climate.yaml", []byte(climateConfig), drivers.Default, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := *cfg.Sensors[0].Opts.(*sht4x.Opts), (sht4x.Opts{Opts: i2cbus.Opts{Bus: "1", Address: 0x46}, Precision: sht4x.Low}); got != want {
		t.Errorf("sht4x %+v, want %+v", got, want)
	}
	want := bme280.Opts{Opts: i2cbus.Opts{Bus: "3", Address: 0x77}, TemperatureOversampling: 2, PressureOversampling: 16, HumidityOversampling: 1, IIRFilter: 4}
	if got := *cfg.Sensors[1].Opts.(*bme280.Opts); got != want {
		t.Errorf("bme280 %+v, want %+v", got, want)
	}
	if got := *cfg.Sensors[2].Opts.(*aht20.Opts); got != aht20.DefaultOpts() {
		t.Errorf("aht20 %+v", got)
	}
	if got := *cfg.Sensors[3].Opts.(*htu21d.Opts); got != (htu21d.Opts{Opts: i2cbus.Opts{Bus: "4", Address: 0x40}}) {
		t.Errorf("si7021 %+v", got)
	}
	if got := *cfg.Sensors[4].Opts.(*am2320.Opts); got != am2320.DefaultOpts() {
		t.Errorf("am2320 %+v", got)
	}
	if got := *cfg.Sensors[5].Opts.(*dht22.Opts); got.Name != "dht11@4" || got.Device != "" || cfg.Sensors[5].Name != "Greenhouse door" {
		t.Errorf("dht22 by name %+v (display name %q)", got, cfg.Sensors[5].Name)
	}
	if got := *cfg.Sensors[6].Opts.(*dht22.Opts); got.Device != "iio:device1" || got.Name != "" {
		t.Errorf("dht22 by device %+v", got)
	}
	if got := *cfg.Sensors[7].Opts.(*bme280.Opts); got != bme280.DefaultOpts() {
		t.Errorf("bme280 defaults %+v, want %+v", got, bme280.DefaultOpts())
	}
}

// TestClimateConfigErrors checks that option errors point at the key.
func TestClimateConfigErrors(t *testing.T) {
	checkConfigErrors(t, "sensors", []configError{
		{"sht4x address", "  - id: s\n    driver: sht4x\n    address: 0x40\n", 5, "not an SHT4x address"},
		{"sht4x precision", "  - id: s\n    driver: sht4x\n    precision: best\n", 5, "precision"},
		{"bme280 oversampling", "  - id: s\n    driver: bme280\n    pressure_oversampling: 3\n", 5, "pressure_oversampling: 3 is not one of 1, 2, 4, 8, 16"},
		{"bme280 filter", "  - id: s\n    driver: bme280\n    iir_filter: 1\n", 5, "iir_filter"},
		{"aht20 address", "  - id: s\n    driver: aht20\n    address: 0x39\n", 5, "no address pin"},
		{"am2320 address", "  - id: s\n    driver: am2320\n    address: 0x5d\n", 5, "no address pin"},
		{"htu21d address", "  - id: s\n    driver: htu21d\n    address: 0x80\n", 5, "out of range"},
		{"dht22 device", "  - id: s\n    driver: dht22\n    device: ../../etc\n", 5, "device"},
		{"dht22 both", "  - id: s\n    driver: dht22\n    device: iio:device0\n    iio_name: dht11@4\n", 6, "not both"},
		{"dht22 sysfs_root is not a key", "  - id: s\n    driver: dht22\n    sysfs_root: /tmp\n", 5, "sysfs_root"},
		{"address clash sht4x/sht3x", "  - {id: a, driver: sht3x}\n  - {id: b, driver: sht4x}\n", 4, "already used"},
		{"address clash htu21d/si7021", "  - {id: a, driver: htu21d}\n  - {id: b, driver: si7021}\n", 4, "already used"},
	})
}

// TestClimateOpenSharesBus opens every climate I2C sensor on bus "1"
// through the registry, takes one reading from each over the one shared
// bus (the traffic of each driver's datasheet, as its package tests pin
// it), and checks Env.Close finds every op used.
func TestClimateOpenSharesBus(t *testing.T) {
	pb := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
		// sht4x: measure high precision, read T 0x6666 and RH 0x9999.
		{Addr: 0x44, W: []byte{0xFD}}, {Addr: 0x44, R: []byte{0x66, 0x66, 0x93, 0x99, 0x99, 0xBE}},
		// aht20: status, trigger, 7-byte reading of 25 °C and 50 %RH.
		{Addr: 0x38, R: []byte{0x18}}, {Addr: 0x38, W: []byte{0xAC, 0x33, 0x00}},
		{Addr: 0x38, R: []byte{0x1C, 0x80, 0x00, 0x06, 0x00, 0x00, 0x4E}},
		// htu21d: the datasheet's temperature and humidity examples.
		{Addr: 0x40, W: []byte{0xF3}}, {Addr: 0x40, R: []byte{0x68, 0x3A, 0x7C}},
		{Addr: 0x40, W: []byte{0xF5}}, {Addr: 0x40, R: []byte{0x4E, 0x85, 0x6B}},
		// am2320: wake-up (acknowledged here), read command, figure 17's reply.
		{Addr: 0x5C, W: []byte{0x00}}, {Addr: 0x5C, W: []byte{0x03, 0x00, 0x04}},
		{Addr: 0x5C, R: []byte{0x03, 0x04, 0x03, 0x39, 0x01, 0x15, 0xE1, 0xFE}},
		// bme280: chip id, calibration, settings, forced measurement, burst read.
		{Addr: 0x76, W: []byte{0xD0}, R: []byte{0x60}},
		{Addr: 0x76, W: []byte{0x88}, R: []byte{
			0x70, 0x6B, 0x43, 0x67, 0x18, 0xFC, 0x7D, 0x8E, 0x43, 0xD6, 0xD0, 0x0B, 0x27, 0x0B,
			0x8C, 0x00, 0xF9, 0xFF, 0x8C, 0x3C, 0xF8, 0xC6, 0x70, 0x17, 0x00, 0x4B}},
		{Addr: 0x76, W: []byte{0xE1}, R: []byte{0x6A, 0x01, 0x00, 0x13, 0x29, 0x03, 0x1E}},
		{Addr: 0x76, W: []byte{0xF2, 0x01, 0xF5, 0x00, 0xF4, 0x24}},
		{Addr: 0x76, W: []byte{0xF4, 0x25}},
		{Addr: 0x76, W: []byte{0xF2}, R: []byte{0x01, 0x00, 0x24, 0x00, 0x00, 0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00, 0x75, 0x30}},
		// sht4x Halt: soft reset.
		{Addr: 0x44, W: []byte{0x94}},
	}}
	env := playbackEnv(t, pb)
	tests := []struct {
		driver, str string
		want        []float64
	}{
		{"sht4x", "sht4x(i2c 1, 0x44)", []float64{25, 69}},
		{"aht20", "aht20(i2c 1, 0x38)", []float64{25, 50}},
		{"si7021", "htu21d(i2c 1, 0x40)", []float64{-46.85 + 175.72*26680.0/65536, -6 + 125*20100.0/65536}},
		{"am2320", "am2320(i2c 1, 0x5c)", []float64{27.7, 82.5}},
		{"bme280", "bme280(i2c 1, 0x76)", []float64{25.08, 56317.0 / 1024, 25767233.0 / 256}},
	}
	var opened []sensors.Sensor
	for _, tt := range tests {
		s, err := drivers.Default.OpenSensor(env, tt.driver, tt.driver, drivers.Default[tt.driver].NewOpts())
		if err != nil {
			t.Fatal(err)
		}
		opened = append(opened, s)
		if s.String() != tt.str {
			t.Errorf("%s: String() = %q, want %q", tt.driver, s, tt.str)
		}
		dst := make([]float64, len(s.Quantities()))
		if err := s.Sense(context.Background(), dst); err != nil {
			t.Fatalf("%s: %v", tt.driver, err)
		}
		for i := range dst {
			if math.Abs(dst[i]-tt.want[i]) > 1e-9 {
				t.Errorf("%s: %v is %v, want %v", tt.driver, s.Quantities()[i], dst[i], tt.want[i])
			}
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

func TestClimateOpenErrors(t *testing.T) {
	env := playbackEnv(t, nil)
	t.Cleanup(func() { env.Close() })

	for _, name := range []string{"sht4x", "bme280", "aht20", "htu21d", "si7021", "am2320"} {
		// The options come from YAML, as in the daemon, so one loop
		// covers every options type.
		cfg, err := configs.Parse("c.yaml", []byte("device: {id: x}\nsensors:\n  - {id: s, driver: "+name+", bus: edged-test-no-such-bus}\n"), drivers.Default, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = drivers.Default.OpenSensor(env, name, "air", cfg.Sensors[0].Opts)
		if !errors.Is(err, i2cbus.ErrNoBus) || !strings.Contains(err.Error(), `"air"`) || !strings.Contains(err.Error(), "raspi-config") {
			t.Errorf("%s on a missing bus: %v", name, err)
		}
		_, err = drivers.Default.OpenSensor(env, name, "air", &dht22.Opts{})
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s with dht22 options: %v", name, err)
		}
	}

	_, err := drivers.Default.OpenSensor(env, "dht22", "door", drivers.Default["dht22"].NewOpts())
	if !errors.Is(err, dht22.ErrNoDevice) || !strings.Contains(err.Error(), "dtoverlay=dht11") {
		t.Errorf("dht22 without the overlay: %v", err)
	}
}

// TestClimateOpenDHT22 opens the dht22 under the Env's sysfs root, by IIO
// name.
func TestClimateOpenDHT22(t *testing.T) {
	env := playbackEnv(t, nil)
	t.Cleanup(func() { env.Close() })
	dir := filepath.Join(env.SysfsRoot, "sys/bus/iio/devices/iio:device1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, v := range map[string]string{"name": "dht11@4\n", "in_temp_input": "21400\n", "in_humidityrelative_input": "55300\n"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o := dht22.DefaultOpts() // SysfsRoot "/": the registry replaces it
	o.Name = "dht11@4"
	s, err := drivers.Default.OpenSensor(env, "dht22", "door", &o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Halt()
	v := make([]float64, 2)
	if err := s.Sense(context.Background(), v); err != nil || v[0] != 21.4 || v[1] != 55.3 {
		t.Fatalf("dht22: %v, %v", v, err)
	}
}
