package drivers_test

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/edged/edged/drivers"
	"github.com/edged/edged/drivers/ads1x15"
	"github.com/edged/edged/drivers/aht20"
	"github.com/edged/edged/drivers/am2320"
	"github.com/edged/edged/drivers/bh1750"
	"github.com/edged/edged/drivers/bme280"
	"github.com/edged/edged/drivers/dht22"
	"github.com/edged/edged/drivers/ds18b20"
	"github.com/edged/edged/drivers/htu21d"
	"github.com/edged/edged/drivers/pca9685"
	"github.com/edged/edged/drivers/relay"
	"github.com/edged/edged/drivers/sht3x"
	"github.com/edged/edged/drivers/sht4x"
	"github.com/edged/edged/drivers/sim"
	"github.com/edged/edged/drivers/sysfspwm"
	"github.com/edged/edged/drivers/tsl2561"
	"github.com/edged/edged/drivers/veml7700"
	"github.com/edged/edged/sensors"
)

var (
	th  = []sensors.Quantity{sensors.Temperature, sensors.Humidity}
	thp = []sensors.Quantity{sensors.Temperature, sensors.Humidity, sensors.Pressure}
	lux = []sensors.Quantity{sensors.Illuminance}
)

// TestDriverTable checks every entry of the table against its driver
// package: the options type NewOpts makes (fresh each time, with
// defaults that validate), sensor or actuator, on/off, the default bus
// and address of I2C sensors (whose options expose them to the config
// loader's clash check; pca9685's must not, or a chip's second channel
// would clash with its first), and the quantities a sensor's options
// declare before it opens.
func TestDriverTable(t *testing.T) {
	tests := []struct {
		name     string
		opts     any
		actuator bool
		onOff    bool
		addr     uint16 // I2CAddr's default; 0: the options have no I2CAddr
		q        []sensors.Quantity
		needs    string // a key without a default: the defaults fail naming it
	}{
		{"sim_light", &sim.LightOpts{}, false, false, 0, lux, ""},
		{"sim_climate", &sim.ClimateOpts{}, false, false, 0, th, ""},
		{"sim_relay", &sim.HeaterOpts{}, true, true, 0, nil, ""},
		{"sim_pwm", &sim.HeaterOpts{}, true, false, 0, nil, ""},
		{"sht3x", &sht3x.Opts{}, false, false, 0x44, th, ""},
		{"sht4x", &sht4x.Opts{}, false, false, 0x44, th, ""},
		{"bme280", &bme280.Opts{}, false, false, 0x76, thp, ""},
		{"aht20", &aht20.Opts{}, false, false, 0x38, th, ""},
		{"htu21d", &htu21d.Opts{}, false, false, 0x40, th, ""},
		{"si7021", &htu21d.Opts{}, false, false, 0x40, th, ""},
		{"am2320", &am2320.Opts{}, false, false, 0x5C, th, ""},
		{"bh1750", &bh1750.Opts{}, false, false, 0x23, lux, ""},
		{"tsl2561", &tsl2561.Opts{}, false, false, 0x39, lux, ""},
		{"veml7700", &veml7700.Opts{}, false, false, 0x10, lux, ""},
		{"ads1x15", &ads1x15.Opts{}, false, false, 0x48, []sensors.Quantity{sensors.Voltage}, ""},
		{"ds18b20", &ds18b20.Opts{}, false, false, 0, []sensors.Quantity{sensors.Temperature}, "device"},
		{"dht22", &dht22.Opts{}, false, false, 0, th, ""},
		{"sysfspwm", &sysfspwm.Opts{}, true, false, 0, nil, ""},
		{"relay", &relay.Opts{}, true, true, 0, nil, "pin"},
		{"pca9685", &pca9685.Opts{}, true, false, 0, nil, ""},
	}
	if len(tests) != len(drivers.Default) {
		t.Errorf("the table has %d drivers, this test %d: add the new ones here", len(drivers.Default), len(tests))
	}
	for _, tt := range tests {
		d, ok := drivers.Default[tt.name]
		if !ok {
			t.Errorf("driver %q is not in the table", tt.name)
			continue
		}
		if d.Name != tt.name || d.Doc == "" || (d.OpenActuator != nil) != tt.actuator || (d.OpenSensor != nil) == tt.actuator || d.OnOff != tt.onOff {
			t.Errorf("%s: name %q, doc %q, sensor %v, actuator %v, on/off %v", tt.name, d.Name, d.Doc, d.OpenSensor != nil, d.OpenActuator != nil, d.OnOff)
		}
		var o any
		if tt.actuator {
			o, ok = drivers.Default.ActuatorOpts(tt.name)
		} else {
			o, ok = drivers.Default.SensorOpts(tt.name)
		}
		if !ok || reflect.TypeOf(o) != reflect.TypeOf(tt.opts) {
			t.Errorf("%s: options %T, want %T", tt.name, o, tt.opts)
			continue
		}
		if a, b := d.NewOpts(), d.NewOpts(); a == b {
			t.Errorf("%s: NewOpts returned the same pointer twice", tt.name)
		}
		if v, ok := o.(interface{ Validate() error }); !ok {
			t.Errorf("%s: options have no Validate", tt.name)
		} else if err := v.Validate(); tt.needs == "" && err != nil {
			t.Errorf("%s: default options do not validate: %v", tt.name, err)
		} else if tt.needs != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.needs+":")) {
			t.Errorf("%s: default options: %v, want an error naming %q", tt.name, err, tt.needs)
		}
		a, ok := o.(interface{ I2CAddr() (string, uint16) })
		if ok != (tt.addr != 0) {
			t.Errorf("%s: I2CAddr implemented %v, want %v", tt.name, ok, tt.addr != 0)
		} else if ok {
			if bus, addr := a.I2CAddr(); bus != "1" || addr != tt.addr {
				t.Errorf("%s: default bus %q address %#x, want \"1\", %#x", tt.name, bus, addr, tt.addr)
			}
		}
		q, isQ := o.(interface{ Quantities() []sensors.Quantity })
		if isQ != (tt.q != nil) || (isQ && !slices.Equal(q.Quantities(), tt.q)) {
			t.Errorf("%s: options quantities implemented %v, want %v", tt.name, isQ, tt.q)
		}
	}
}

// defaultAddr returns the address in a driver's default options and
// a setter for it: the embedded i2cbus.Opts of a sensor, the I2C field
// of pca9685's.
func defaultAddr(t *testing.T, opts any) (addr uint16, set func(uint16), ok bool) {
	t.Helper()
	v := reflect.ValueOf(opts).Elem()
	f := v.FieldByName("Address")
	if !f.IsValid() {
		if i := v.FieldByName("I2C"); i.IsValid() {
			f = i.FieldByName("Address")
		}
	}
	if !f.IsValid() {
		return 0, nil, false
	}
	return uint16(f.Uint()), func(a uint16) { f.SetUint(uint64(a)) }, true
}

// TestDriverTableI2C checks each entry's addresses against its driver:
// an I2C driver (options with an address) lists addresses, the first is
// its default, and every one validates; other drivers list none.
func TestDriverTableI2C(t *testing.T) {
	for name, d := range drivers.Default {
		opts := d.NewOpts()
		def, _, isI2C := defaultAddr(t, opts)
		if !isI2C {
			if d.I2C != nil {
				t.Errorf("%s: lists I2C addresses %v but its options have no address", name, d.I2C)
			}
			continue
		}
		if len(d.I2C) == 0 || d.I2C[0] != def {
			t.Errorf("%s: I2C %v does not start with the default address %#x", name, d.I2C, def)
		}
		for _, a := range d.I2C {
			o := d.NewOpts()
			_, set, _ := defaultAddr(t, o)
			set(a)
			if err := o.(interface{ Validate() error }).Validate(); err != nil {
				t.Errorf("%s: listed address %#x does not validate: %v", name, a, err)
			}
		}
	}
}

// TestAtAddress pins what `edged i2c scan` names at each datasheet
// address (the table the scan used to carry itself).
func TestAtAddress(t *testing.T) {
	want := map[uint16]string{
		0x10: "veml7700", 0x23: "bh1750", 0x29: "tsl2561", 0x38: "aht20", 0x39: "tsl2561",
		0x40: "htu21d pca9685 si7021", 0x44: "sht3x sht4x", 0x45: "sht3x sht4x", 0x46: "sht4x",
		0x48: "ads1x15", 0x49: "ads1x15 tsl2561", 0x4A: "ads1x15", 0x4B: "ads1x15",
		0x5C: "am2320 bh1750", 0x70: "pca9685", 0x76: "bme280", 0x77: "bme280",
	}
	for a := uint16(0); a < 0x80; a++ {
		if got := strings.Join(drivers.Default.AtAddress(a), " "); got != want[a] {
			t.Errorf("AtAddress(%#x) = %q, want %q", a, got, want[a])
		}
	}
}

func TestSummary(t *testing.T) {
	for _, tt := range []struct{ driver, want string }{
		{"ads1x15", "; I2C 0x48-0x4B"},
		{"tsl2561", "; I2C 0x39, 0x29, 0x49"},
		{"sht4x", "; I2C 0x44-0x46"},
		{"pca9685", "; I2C 0x40, 0x70"},
		{"bme280", "forced mode; I2C 0x76, 0x77"},
	} {
		if got := drivers.Default[tt.driver].Summary(); !strings.HasSuffix(got, tt.want) {
			t.Errorf("%s: Summary() = %q, want it to end %q", tt.driver, got, tt.want)
		}
	}
	if got := drivers.Default["relay"].Summary(); strings.Contains(got, "I2C") || got != drivers.Default["relay"].Doc {
		t.Errorf("relay: Summary() = %q, want its Doc alone", got)
	}
}

var (
	hexAddr   = regexp.MustCompile(`0x([0-9A-Fa-f]{2})(?:(?:\.\.|-)0x([0-9A-Fa-f]{2}))?`)
	readmeRow = regexp.MustCompile("^\\| `([a-z0-9_]+)` \\|")
)

// addrsIn returns the addresses in s, expanding ranges (0x49..0x4B).
func addrsIn(s string) []uint16 {
	var out []uint16
	for _, m := range hexAddr.FindAllStringSubmatch(s, -1) {
		lo, _ := strconv.ParseUint(m[1], 16, 8)
		hi := lo
		if m[2] != "" {
			hi, _ = strconv.ParseUint(m[2], 16, 8)
		}
		for a := lo; a <= hi; a++ {
			out = append(out, uint16(a))
		}
	}
	return out
}

// TestREADMEDriverAddresses keeps the README's driver tables in step with
// the driver table: every sensor driver has a row; an I2C sensor's
// `address` key gives its default first and exactly its addresses;
// pca9685's key table gives its default; and the sentence on shared
// addresses is what the table says.
func TestREADMEDriverAddresses(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	rows := map[string]string{}
	for _, line := range strings.Split(readme, "\n") {
		if m := readmeRow.FindStringSubmatch(line); m != nil {
			if _, dup := rows[m[1]]; !dup {
				rows[m[1]] = line
			}
		}
	}
	for _, name := range drivers.Default.Names(false) {
		d := drivers.Default[name]
		row, ok := rows[name]
		if !ok {
			t.Errorf("README: no row for sensor driver %s", name)
			continue
		}
		i := strings.Index(row, "`address` (")
		if len(d.I2C) == 0 {
			if i >= 0 {
				t.Errorf("README: %s is not on I2C but its row has an address", name)
			}
			continue
		}
		if i < 0 {
			t.Errorf("README: the %s row has no `address` (...)", name)
			continue
		}
		key := row[i : i+strings.Index(row[i:], ")")]
		got := addrsIn(key)
		if len(got) == 0 || got[0] != d.I2C[0] {
			t.Errorf("README: %s %s: the default is %#x", name, key, d.I2C[0])
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(d.I2C))
		if !slices.Equal(got, want) {
			t.Errorf("README: %s %s lists %v, the driver table %v", name, key, got, want)
		}
	}
	pca := drivers.Default["pca9685"].I2C
	if want := fmt.Sprintf("| `address` | `%#02x` |", pca[0]); !strings.Contains(readme, want) {
		t.Errorf("README: the pca9685 keys lack %q", want)
	}

	// The addresses more than one driver can sit at.
	var shared []string
	for a := uint16(0); a < 0x80; a++ {
		if ns := drivers.Default.AtAddress(a); len(ns) > 1 {
			shared = append(shared, fmt.Sprintf("0x%02X (%s)", a, strings.Join(ns, ", ")))
		}
	}
	want := "Addresses several drivers share: " + strings.Join(shared, ", ") + "."
	if !strings.Contains(strings.Join(strings.Fields(readme), " "), want) {
		t.Errorf("README lacks the sentence %q", want)
	}
}
