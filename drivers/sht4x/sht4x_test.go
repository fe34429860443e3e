package sht4x

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/edged/edged/drivers/crc8"
	"github.com/edged/edged/drivers/drivertest"
	"github.com/edged/edged/drivers/i2cbus/i2cbustest"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

// reading25C69 is a measurement of 25.00 °C and 69.00 %RH as the sensor
// sends it (datasheet "Communication and Data Transfer": T MSB, T LSB,
// CRC, RH MSB, RH LSB, CRC). 0x6666 = 0.4 * 65535 and 0x9999 = 0.6 *
// 65535, so the formulas of "Conversion of Signal Output" give exact
// values; the checksums follow "Checksum Calculation".
var reading25C69 = []byte{0x66, 0x66, 0x93, 0x99, 0x99, 0xBE}

func TestConversion(t *testing.T) {
	tests := []struct {
		raw    uint16
		temp   float64
		humid  float64
		reason string
	}{
		{0x0000, -45, 0, "bottom of the scale: -6 %RH is cropped to 0"},
		{0xFFFF, 130, 100, "top of the scale: 119 %RH is cropped to 100"},
		{0x6666, 25, 44, "0.4 of full scale"},
		{0x9999, 60, 69, "0.6 of full scale"},
		{0x0C4A, -36.599145494773786, 0.000610361, "just above 0 %RH: 125 * 3146 / 65535 = 6.00061"},
		{0xCCCC, 95, 94, "0.8 of full scale, below the crop"},
		{0xDAE1, 104.62653543907837, 100, "100.875 %RH is cropped"},
	}
	for _, tt := range tests {
		if got := Temperature(tt.raw); math.Abs(got-tt.temp) > 1e-9 {
			t.Errorf("%s: Temperature(%#04x) = %v, want %v", tt.reason, tt.raw, got, tt.temp)
		}
		if got := Humidity(tt.raw); math.Abs(got-tt.humid) > 1e-6 {
			t.Errorf("%s: Humidity(%#04x) = %v, want %v", tt.reason, tt.raw, got, tt.humid)
		}
	}
}

func TestOptsValidate(t *testing.T) {
	drivertest.RunOpts(t, DefaultOpts, (*Opts).Validate, func(o Opts) error {
		_, err := New(i2cbustest.NewDeadBus(), nil, o)
		return err
	}, []drivertest.OptsRow[Opts]{
		{Name: "default", Edit: func(*Opts) {}},
		{Name: "0x45", Edit: func(o *Opts) { o.Address = AltAddrB }},
		{Name: "0x46", Edit: func(o *Opts) { o.Address = AltAddrC }},
		{Name: "medium", Edit: func(o *Opts) { o.Precision = Medium }},
		{Name: "low", Edit: func(o *Opts) { o.Precision = Low }},
		{Name: "unknown precision", Edit: func(o *Opts) { o.Precision = "ultra" }, Field: "precision"},
		{Name: "empty precision", Edit: func(o *Opts) { o.Precision = "" }, Field: "precision"},
		{Name: "not an sht4x address", Edit: func(o *Opts) { o.Address = 0x40 }, Field: "address"},
		{Name: "address out of range", Edit: func(o *Opts) { o.Address = 0x7a }, Field: "address"},
		{Name: "no bus", Edit: func(o *Opts) { o.Bus = "" }, Field: "bus"},
	})
}

func newDev(t testing.TB, bus i2c.Bus, clk sensors.Clock, edit func(*Opts)) *Dev {
	t.Helper()
	o := DefaultOpts()
	if edit != nil {
		edit(&o)
	}
	d, err := New(bus, clk, o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSenseCRCFailure(t *testing.T) {
	badT := append([]byte(nil), reading25C69...)
	badT[2] ^= 0x01
	badRH := append([]byte(nil), reading25C69...)
	badRH[4] ^= 0x80 // a flipped data bit, checksum unchanged
	pb := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
		{Addr: Addr, W: []byte{0xFD}}, {Addr: Addr, R: badT},
		{Addr: Addr, W: []byte{0xFD}}, {Addr: Addr, R: badRH},
	}}
	d := newDev(t, pb, sensorstest.NewInstantClock(), nil)
	for i, word := range []string{"temperature", "humidity"} {
		dst := []float64{math.NaN(), math.NaN()}
		err := d.Sense(context.Background(), dst)
		if !errors.Is(err, ErrCRC) || !strings.Contains(err.Error(), word) {
			t.Fatalf("Sense = %v, want ErrCRC naming %s", err, word)
		}
		if !math.IsNaN(dst[0]) || !math.IsNaN(dst[1]) {
			t.Errorf("Sense wrote %v despite a CRC failure", dst)
		}
		if got := d.CRCErrors(); got != uint64(i+1) {
			t.Errorf("CRCErrors() = %d, want %d", got, i+1)
		}
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
}

// FuzzSense feeds arbitrary replies: Sense must never panic, must fail
// exactly when a checksum is wrong, and must stay within 0..100 %RH.
func FuzzSense(f *testing.F) {
	f.Add(reading25C69)
	f.Add([]byte{0, 0, 0x81, 0, 0, 0x81})
	f.Add([]byte{0xFF, 0xFF, 0xAC, 0xFF, 0xFF, 0xAC})
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}) // a floating bus
	f.Fuzz(func(t *testing.T, reply []byte) {
		if len(reply) != 6 {
			return
		}
		pb := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
			{Addr: Addr, W: []byte{0xFD}}, {Addr: Addr, R: reply},
		}}
		d := newDev(t, pb, sensorstest.NewInstantClock(), nil)
		dst := make([]float64, 2)
		err := d.Sense(context.Background(), dst)
		good := crc8.Sensirion(reply[0:2]) == reply[2] && crc8.Sensirion(reply[3:5]) == reply[5]
		if good != (err == nil) {
			t.Fatalf("reply % x: checksums good %v, Sense error %v", reply, good, err)
		}
		if err == nil && (dst[0] < -45 || dst[0] > 130 || dst[1] < 0 || dst[1] > 100) {
			t.Fatalf("reply % x: out of scale %v", reply, dst)
		}
	})
}

// suite is the conformance case of one precision: commands of datasheet
// "Command Overview", waits the maximum measurement durations of the
// timing table. Halt sends the soft reset (0x94), after which the sensor
// still works.
func suite(prec string, addr uint16, cmd byte, wait time.Duration) drivertest.Case {
	good := []i2ctest.IO{{Addr: addr, W: []byte{cmd}}, {Addr: addr, R: reading25C69}}
	o := DefaultOpts()
	o.Precision, o.Address = prec, addr
	return drivertest.Case{
		Name: "sht4x",
		New: func(b i2c.Bus, clk sensors.Clock) (sensors.Sensor, error) {
			return New(b, clk, o)
		},
		Opts:         &o,
		Addr:         addr,
		Good:         good,
		Want:         []float64{25, 69},
		Quantities:   []sensors.Quantity{sensors.Temperature, sensors.Humidity},
		Waits:        []time.Duration{wait},
		FailSays:     []string{"start measurement", "read measurement"},
		Halt:         []i2ctest.IO{{Addr: addr, W: []byte{0x94}}},
		HaltFailSays: "soft reset",
		AfterHalt:    good,
	}
}

func TestConformance(t *testing.T) {
	// The defaults: bus 1, address 0x44 (SHT4x-A), high precision.
	t.Run(High, func(t *testing.T) { drivertest.Run(t, suite(High, 0x44, 0xFD, 8300*time.Microsecond)) })
	t.Run(Medium, func(t *testing.T) { drivertest.Run(t, suite(Medium, AltAddrB, 0xF6, 4500*time.Microsecond)) })
	t.Run(Low, func(t *testing.T) { drivertest.Run(t, suite(Low, AltAddrC, 0xE0, 1600*time.Microsecond)) })
}

func BenchmarkSense(b *testing.B) {
	drivertest.Benchmark(b, suite(High, Addr, 0xFD, 8300*time.Microsecond))
}
