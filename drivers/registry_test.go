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
)

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
