package htu21d

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

// The worked examples of the HTU21D(F) datasheet, "CRC Checksum" and the
// conversion sections: temperature 0x683A with checksum 0x7C (24.7 °C),
// humidity 0x4E85 with checksum 0x6B (32.3 %RH). The two low bits of each
// LSB are status bits and are cleared before converting, so the exact
// values are those of 0x6838 and 0x4E84.
var (
	tempReply  = []byte{0x68, 0x3A, 0x7C}
	humidReply = []byte{0x4E, 0x85, 0x6B}
	wantTemp   = -46.85 + 175.72*26680.0/65536 // 24.6864 °C
	wantHumid  = -6 + 125*20100.0/65536        // 32.3377 %RH
)

// sequence is one Sense as the datasheet's "Communication sequence" (no
// hold master) draws it: command, wait, read, for temperature then
// humidity.
func sequence(addr uint16, t, rh []byte) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0xF3}}, {Addr: addr, R: t},
		{Addr: addr, W: []byte{0xF5}}, {Addr: addr, R: rh},
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestConversion(t *testing.T) {
	tests := []struct {
		raw         uint16
		temp, humid float64
		reason      string
	}{
		{0x683A, wantTemp, -6 + 125*26680.0/65536, "datasheet temperature example"},
		{0x4E85, -46.85 + 175.72*20100.0/65536, wantHumid, "datasheet humidity example"},
		{0x7C80, -46.85 + 175.72*31872.0/65536, 54.791015625, "mid scale, 54.79 %RH"},
		{0x0000, -46.85, 0, "bottom: -6 %RH is cropped"},
		{0x0003, -46.85, 0, "status bits alone are no value"},
		{0xFFFC, -46.85 + 175.72*65532.0/65536, 100, "top: 118.99 %RH is cropped"},
		{0x0C4C, -46.85 + 175.72*3148.0/65536, -6 + 125*3148.0/65536, "just above 0 %RH"},
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
		{Name: "behind a translator", Edit: func(o *Opts) { o.Address = 0x41 }},
		{Name: "address out of range", Edit: func(o *Opts) { o.Address = 0x80 }, Field: "address"},
		{Name: "reserved address", Edit: func(o *Opts) { o.Address = 0x01 }, Field: "address"},
		{Name: "no bus", Edit: func(o *Opts) { o.Bus = "" }, Field: "bus"},
	})
}

func newDev(t testing.TB, bus i2c.Bus, clk sensors.Clock) *Dev {
	t.Helper()
	d, err := New(bus, clk, DefaultOpts())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSenseCRCFailure(t *testing.T) {
	badT := []byte{0x68, 0x3A, 0x7D}
	badRH := []byte{0x4F, 0x85, 0x6B} // a flipped data bit, checksum unchanged
	ops := append([]i2ctest.IO{{Addr: Addr, W: []byte{0xF3}}, {Addr: Addr, R: badT}}, sequence(Addr, tempReply, badRH)...)
	pb := &i2ctest.Playback{DontPanic: true, Ops: ops}
	d := newDev(t, pb, sensorstest.NewInstantClock())
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
// exactly when a checksum is wrong, and must stay within the scale.
func FuzzSense(f *testing.F) {
	f.Add(tempReply, humidReply)
	f.Add([]byte{0, 0, 0}, []byte{0, 0, 0})
	f.Add([]byte{0xFF, 0xFF, 0xFF}, []byte{0xFF, 0xFF, 0xFF}) // a floating bus
	f.Fuzz(func(t *testing.T, tr, hr []byte) {
		if len(tr) != 3 || len(hr) != 3 {
			return
		}
		pb := &i2ctest.Playback{DontPanic: true, Ops: sequence(Addr, tr, hr)}
		d := newDev(t, pb, sensorstest.NewInstantClock())
		dst := make([]float64, 2)
		err := d.Sense(context.Background(), dst)
		good := crc8.Checksum(0x00, tr[:2]) == tr[2] && crc8.Checksum(0x00, hr[:2]) == hr[2]
		if good != (err == nil) {
			t.Fatalf("replies % x, % x: checksums good %v, Sense error %v", tr, hr, good, err)
		}
		if err == nil && (dst[0] < -46.85 || dst[0] > 128.88 || dst[1] < 0 || dst[1] > 100) {
			t.Fatalf("replies % x, % x: out of scale %v", tr, hr, dst)
		}
	})
}

// conformance runs the datasheet's worked example through the shared
// driver suite. The waits are the HTU21D's maximum conversion times at
// 14-bit temperature (50 ms) and 12-bit humidity (16 ms), "Electrical and
// general items". Halt sends nothing, and the sensor works afterwards.
func conformance() drivertest.Case {
	good := sequence(Addr, tempReply, humidReply)
	o := DefaultOpts()
	return drivertest.Case{
		Name: "htu21d",
		New: func(b i2c.Bus, clk sensors.Clock) (sensors.Sensor, error) {
			return New(b, clk, o)
		},
		Opts:       &o,
		Addr:       0x40, // the only address
		Good:       good,
		Want:       []float64{wantTemp, wantHumid},
		Quantities: []sensors.Quantity{sensors.Temperature, sensors.Humidity},
		Waits:      []time.Duration{50 * time.Millisecond, 16 * time.Millisecond},
		FailSays:   []string{"start temperature measurement", "read temperature", "start humidity measurement", "read humidity"},
		HaltTwice:  true,
		AfterHalt:  good,
	}
}

func TestConformance(t *testing.T) { drivertest.Run(t, conformance()) }

func BenchmarkSense(b *testing.B) {
	drivertest.Benchmark(b, conformance())
}
