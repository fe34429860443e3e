package sht3x

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

// reading25C60 is a measurement of 25.00 °C and 60.00 %RH as the sensor
// sends it (datasheet 4.4, figure 14: T MSB, T LSB, CRC, RH MSB, RH LSB,
// CRC). 0x6666 = 0.4 * 65535 and 0x9999 = 0.6 * 65535, so the formulas of
// datasheet 4.13 give exact values; the CRCs follow datasheet 4.12.
var reading25C60 = []byte{0x66, 0x66, 0x93, 0x99, 0x99, 0xBE}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestConversion(t *testing.T) {
	tests := []struct {
		raw    uint16
		temp   float64
		humid  float64
		reason string
	}{
		{0x0000, -45, 0, "bottom of the scale"},
		{0xFFFF, 130, 100, "top of the scale"},
		{0x6666, 25, 40, "0.4 of full scale"},
		{0x9999, 60, 60, "0.6 of full scale"},
		{0x3333, -10, 20, "0.2 of full scale"},
	}
	for _, tt := range tests {
		if got := Temperature(tt.raw); !near(got, tt.temp) {
			t.Errorf("%s: Temperature(%#04x) = %v, want %v", tt.reason, tt.raw, got, tt.temp)
		}
		if got := Humidity(tt.raw); !near(got, tt.humid) {
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
		{Name: "alternative address", Edit: func(o *Opts) { o.Address = AltAddr }},
		{Name: "medium", Edit: func(o *Opts) { o.Repeatability = Medium }},
		{Name: "low", Edit: func(o *Opts) { o.Repeatability = Low }},
		{Name: "unknown repeatability", Edit: func(o *Opts) { o.Repeatability = "ultra" }, Field: "repeatability"},
		{Name: "empty repeatability", Edit: func(o *Opts) { o.Repeatability = "" }, Field: "repeatability"},
		{Name: "upper case", Edit: func(o *Opts) { o.Repeatability = "HIGH" }, Field: "repeatability"},
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
	badT := append([]byte(nil), reading25C60...)
	badT[2] ^= 0x01
	badRH := append([]byte(nil), reading25C60...)
	badRH[4] ^= 0x80 // a flipped data bit, checksum unchanged
	pb := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
		{Addr: Addr, W: []byte{0x24, 0x00}}, {Addr: Addr, R: badT},
		{Addr: Addr, W: []byte{0x24, 0x00}}, {Addr: Addr, R: badRH},
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
// exactly when a checksum is wrong, and must stay within the sensor's scale.
func FuzzSense(f *testing.F) {
	f.Add(reading25C60)
	f.Add([]byte{0xBE, 0xEF, 0x92, 0xBE, 0xEF, 0x92})
	f.Add([]byte{0, 0, 0x81, 0xFF, 0xFF, 0xAC})
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}) // a floating bus
	f.Fuzz(func(t *testing.T, reply []byte) {
		if len(reply) != 6 {
			return
		}
		pb := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
			{Addr: Addr, W: []byte{0x24, 0x00}}, {Addr: Addr, R: reply},
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

// suite is the conformance case of one repeatability: command codes of
// datasheet 4.3, table 9 ("clock stretching disabled"), waits of datasheet
// 2.2, table 4 (maximum).
func suite(rep, bus string, addr uint16, cmd []byte, wait time.Duration) drivertest.Case {
	good := []i2ctest.IO{{Addr: addr, W: cmd}, {Addr: addr, R: reading25C60}}
	o := DefaultOpts()
	o.Repeatability, o.Address, o.Bus = rep, addr, bus
	return drivertest.Case{
		Name: "sht3x",
		New: func(b i2c.Bus, clk sensors.Clock) (sensors.Sensor, error) {
			return New(b, clk, o)
		},
		Opts: &o,
		Bus:  bus, Addr: addr,
		Good:       good,
		Want:       []float64{25, 60},
		Quantities: []sensors.Quantity{sensors.Temperature, sensors.Humidity},
		Waits:      []time.Duration{wait},
		FailSays:   []string{"start measurement", "read measurement"},
		// Halt sends nothing: single-shot mode keeps no state, so the
		// device still works afterwards.
		HaltTwice: true,
		AfterHalt: good,
	}
}

func TestConformance(t *testing.T) {
	// The defaults: bus 1, address 0x44 (ADDR to VSS), high repeatability.
	t.Run(High, func(t *testing.T) {
		drivertest.Run(t, suite(High, "1", 0x44, []byte{0x24, 0x00}, 15500*time.Microsecond))
	})
	t.Run(Medium, func(t *testing.T) {
		drivertest.Run(t, suite(Medium, "1", Addr, []byte{0x24, 0x0B}, 6500*time.Microsecond))
	})
	t.Run(Low, func(t *testing.T) {
		drivertest.Run(t, suite(Low, "3", AltAddr, []byte{0x24, 0x16}, 4500*time.Microsecond))
	})
}

func BenchmarkSense(b *testing.B) {
	drivertest.Benchmark(b, suite(High, "1", Addr, []byte{0x24, 0x00}, 15500*time.Microsecond))
}
