package tsl2561

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/edged/edged/drivers/drivertest"
	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/drivers/i2cbus/i2cbustest"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// Byte sequences, all from the datasheet's "Register Set" and "Command
// Register" sections: CMD bit 0x80 | register address, WORD bit 0x20 for
// the two-byte channel reads.
var (
	opPowerUp   = func(a uint16) i2ctest.IO { return i2ctest.IO{Addr: a, W: []byte{0x80, 0x03}} }
	opReadCtrl  = func(a uint16, v byte) i2ctest.IO { return i2ctest.IO{Addr: a, W: []byte{0x80}, R: []byte{v}} }
	opTiming    = func(a uint16, v byte) i2ctest.IO { return i2ctest.IO{Addr: a, W: []byte{0x81, v}} }
	opCH0       = func(a uint16, v uint16) i2ctest.IO { return i2ctest.IO{Addr: a, W: []byte{0xAC}, R: le(v)} }
	opCH1       = func(a uint16, v uint16) i2ctest.IO { return i2ctest.IO{Addr: a, W: []byte{0xAE}, R: le(v)} }
	opPowerDown = func(a uint16) i2ctest.IO { return i2ctest.IO{Addr: a, W: []byte{0x80, 0x00}} }
)

// le is a channel value as the chip sends it: DATAxLOW, then DATAxHIGH.
func le(v uint16) []byte { return []byte{byte(v), byte(v >> 8)} }

// integration is the traffic of one integration: timing register, a
// power cycle that restarts the ADC, then both channels.
func integration(a uint16, timing byte, ch0, ch1 uint16) []i2ctest.IO {
	return []i2ctest.IO{opTiming(a, timing), opPowerDown(a), opPowerUp(a), opCH0(a, ch0), opCH1(a, ch1)}
}

// reading is the traffic of one Sense with one integration: power up,
// control register read-back, the integration, power down.
func reading(a uint16, timing byte, ch0, ch1 uint16) []i2ctest.IO {
	ops := []i2ctest.IO{opPowerUp(a), opReadCtrl(a, 0x03)}
	ops = append(ops, integration(a, timing, ch0, ch1)...)
	return append(ops, opPowerDown(a))
}

func TestLux(t *testing.T) {
	// Expected values are the datasheet's "Calculating Lux" formulas
	// evaluated by hand (Python) for one ratio in every segment.
	tests := []struct {
		name     string
		ch0, ch1 uint16
		scale    float64
		cs       bool
		want     float64
	}{
		{"T ratio 0.2", 1000, 200, 1, false, 23.886211045078653},
		{"T ratio 0.55", 1000, 550, 1, false, 5.35},
		{"T ratio 0.7", 1000, 700, 1, false, 2.09},
		{"T ratio 1.0", 1000, 1000, 1, false, 0.34},
		{"T ratio 1.4 is infrared", 1000, 1400, 1, false, 0},
		{"CS ratio 0.2", 1000, 200, 1, true, 25.269876047954263},
		{"CS ratio 0.6", 1000, 600, 1, true, 5.44},
		{"CS ratio 0.7", 1000, 700, 1, true, 3.1},
		{"CS ratio 0.9", 1000, 900, 1, true, 1.04},
		{"1x gain", 100, 20, 16, false, 38.21793767212585},
		{"13.7 ms", 100, 20, 322.0 / 11, false, 69.92145415013934},
		{"101 ms 1x", 100, 20, 16 * 322.0 / 81, false, 151.92809790647559},
		{"dark", 0, 0, 1, false, 0},
		{"only infrared", 0, 500, 1, false, 0},
	}
	for _, tt := range tests {
		if got := Lux(tt.ch0, tt.ch1, tt.scale, tt.cs); !near(got, tt.want) {
			t.Errorf("%s: Lux(%d, %d, %v, %v) = %v, want %v", tt.name, tt.ch0, tt.ch1, tt.scale, tt.cs, got, tt.want)
		}
	}
}

func TestOptsValidate(t *testing.T) {
	drivertest.RunOpts(t, DefaultOpts, (*Opts).Validate, func(o Opts) error {
		_, err := New(i2cbustest.NewDeadBus(), nil, o)
		return err
	}, []drivertest.OptsRow[Opts]{
		{Name: "default", Edit: func(*Opts) {}},
		{Name: "address 0x29", Edit: func(o *Opts) { o.Address = AddrLow }},
		{Name: "address 0x49", Edit: func(o *Opts) { o.Address = AddrHigh }},
		{Name: "13.7ms", Edit: func(o *Opts) { o.IntegrationTime = 13700 * time.Microsecond }},
		{Name: "101ms gain 1", Edit: func(o *Opts) { o.IntegrationTime, o.Gain = 101*time.Millisecond, Gain1 }},
		{Name: "gain 16 cs", Edit: func(o *Opts) { o.Gain, o.Package = Gain16, PackageCS }},
		{Name: "address not a tsl2561", Edit: func(o *Opts) { o.Address = 0x23 }, Field: "address"},
		{Name: "address out of range", Edit: func(o *Opts) { o.Address = 0x7a }, Field: "address"},
		{Name: "bus", Edit: func(o *Opts) { o.Bus = "" }, Field: "bus"},
		{Name: "gain 8", Edit: func(o *Opts) { o.Gain = "8" }, Field: "gain"},
		{Name: "integration 100ms", Edit: func(o *Opts) { o.IntegrationTime = 100 * time.Millisecond }, Field: "integration_time"},
		{Name: "integration unset", Edit: func(o *Opts) { o.IntegrationTime = 0 }, Field: "integration_time"},
		{Name: "package", Edit: func(o *Opts) { o.Package = "fn" }, Field: "package"},
	})
}

func TestOptsI2CAddrAndQuantities(t *testing.T) {
	o := DefaultOpts()
	if bus, addr := o.I2CAddr(); bus != "1" || addr != 0x39 {
		t.Errorf("I2CAddr() = %q, %#x", bus, addr)
	}
	if q := o.Quantities(); len(q) != 1 || q[0] != sensors.Illuminance {
		t.Errorf("Quantities() = %v", q)
	}
}

// TestSense runs every gain, integration time, package and address row
// through the shared driver suite, which checks the traffic, the value and
// the integration wait of each.
func TestSense(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Opts)
		// timing is the TIMING register byte (datasheet "Timing
		// Register"): GAIN bit 4, INTEG bits 1:0.
		timing   byte
		ch0, ch1 uint16
		want     float64
		wait     time.Duration
	}{
		{"402ms 16x", func(o *Opts) { o.Gain = Gain16 }, 0x12, 1000, 200, 23.886211045078653, 443 * time.Millisecond},
		{"402ms 1x", func(o *Opts) { o.Gain = Gain1 }, 0x02, 100, 20, 38.21793767212585, 443 * time.Millisecond},
		{"13.7ms 16x", func(o *Opts) { o.Gain, o.IntegrationTime = Gain16, 13700*time.Microsecond }, 0x10, 100, 20, 69.92145415013934, 15 * time.Millisecond},
		{"101ms 1x", func(o *Opts) { o.Gain, o.IntegrationTime = Gain1, 101*time.Millisecond }, 0x01, 100, 20, 151.92809790647559, 112 * time.Millisecond},
		{"cs package", func(o *Opts) { o.Gain, o.Package = Gain16, PackageCS }, 0x12, 1000, 600, 5.44, 443 * time.Millisecond},
		{"auto starts at 16x", func(*Opts) {}, 0x12, 1000, 200, 23.886211045078653, 443 * time.Millisecond},
		{"address 0x49", func(o *Opts) { o.Gain, o.Address = Gain16, AddrHigh }, 0x12, 1000, 200, 23.886211045078653, 443 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOpts()
			tt.edit(&o)
			a := o.Address
			good := reading(a, tt.timing, tt.ch0, tt.ch1)
			drivertest.Run(t, drivertest.Case{
				Name: "tsl2561",
				New: func(b i2c.Bus, clk sensors.Clock) (sensors.Sensor, error) {
					return New(b, clk, o)
				},
				Opts:       &o,
				Addr:       a,
				Good:       good,
				Want:       []float64{tt.want},
				Tolerance:  1e-9 * math.Max(1, tt.want),
				Quantities: []sensors.Quantity{sensors.Illuminance},
				Waits:      []time.Duration{tt.wait},
				// Once powered up, a failed or cancelled Sense powers the
				// chip down, so the ADC does not go on integrating.
				PowerDown: []i2ctest.IO{opPowerDown(a)},
				FailSays: []string{"power up", "read control register", fmt.Sprintf("write timing register %#02x", tt.timing),
					"power down to restart", "power up to restart", "read channel register 0x0c", "read channel register 0x0e", "power down"},
				// Halt powers the chip down (CONTROL 0x00); Sense powers it
				// up again.
				Halt:         []i2ctest.IO{opPowerDown(a)},
				HaltFailSays: "power down",
				AfterHalt:    good,
			})
		})
	}
}

// TestAutoGain: a saturated 16x integration is repeated at 1x within the
// same Sense; a dim 1x reading moves the next Sense back to 16x.
func TestAutoGain(t *testing.T) {
	const a = AddrFloat
	ops := []i2ctest.IO{opPowerUp(a), opReadCtrl(a, 0x03)}
	ops = append(ops, integration(a, 0x12, 0xFFFF, 0x1000)...) // 16x saturates
	ops = append(ops, integration(a, 0x02, 100, 20)...)        // 1x: dim, fits 16x
	ops = append(ops, opPowerDown(a))
	ops = append(ops, reading(a, 0x12, 1000, 200)...) // next Sense at 16x
	pb := &i2ctest.Playback{DontPanic: true, Ops: ops}
	clk := sensorstest.NewInstantClock()
	d, _ := New(pb, clk, DefaultOpts())
	dst := make([]float64, 1)
	if err := d.Sense(context.Background(), dst); err != nil || !near(dst[0], 38.21793767212585) {
		t.Fatalf("first Sense = %v, %v", dst[0], err)
	}
	if d.Saturations() != 1 {
		t.Errorf("Saturations() = %d, want 1", d.Saturations())
	}
	if err := d.Sense(context.Background(), dst); err != nil || !near(dst[0], 23.886211045078653) {
		t.Fatalf("second Sense = %v, %v", dst[0], err)
	}
	if n, _, total := clk.Waits(); n != 3 || total != 3*443*time.Millisecond {
		t.Errorf("waits %d totalling %v, want 3 integrations", n, total)
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSaturated(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(*Opts)
		ops      []i2ctest.IO
		wantWait int
	}{
		// The full-scale counts are 65535 at 402 ms, 37177 at 101 ms and
		// 5047 at 13.7 ms.
		{"fixed 16x", func(o *Opts) { o.Gain = Gain16 }, reading(AddrFloat, 0x12, 65535, 100), 1},
		{"CH1 saturates", func(o *Opts) { o.Gain = Gain1 }, reading(AddrFloat, 0x02, 60000, 65535), 1},
		{"101ms", func(o *Opts) { o.Gain, o.IntegrationTime = Gain1, 101*time.Millisecond }, reading(AddrFloat, 0x01, 37177, 100), 1},
		{"13.7ms", func(o *Opts) { o.Gain, o.IntegrationTime = Gain1, 13700*time.Microsecond }, reading(AddrFloat, 0x00, 5047, 100), 1},
		{"auto saturates at 1x too", func(*Opts) {}, slices.Concat(
			[]i2ctest.IO{opPowerUp(AddrFloat), opReadCtrl(AddrFloat, 0x03)},
			integration(AddrFloat, 0x12, 65535, 65535),
			integration(AddrFloat, 0x02, 65535, 40000),
			[]i2ctest.IO{opPowerDown(AddrFloat)},
		), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOpts()
			tt.edit(&o)
			pb := &i2ctest.Playback{DontPanic: true, Ops: tt.ops}
			clk := sensorstest.NewInstantClock()
			d, _ := New(pb, clk, o)
			dst := []float64{-1}
			err := d.Sense(context.Background(), dst)
			if !errors.Is(err, ErrSaturated) || dst[0] != -1 {
				t.Fatalf("Sense = %v, %v; want ErrSaturated and dst untouched", dst[0], err)
			}
			if n, _, _ := clk.Waits(); n != tt.wantWait {
				t.Errorf("%d integrations, want %d", n, tt.wantWait)
			}
			if err := pb.Close(); err != nil {
				t.Fatal(err) // the chip was powered down
			}
		})
	}
	// One count below full scale at 13.7 ms is a valid reading.
	o := DefaultOpts()
	o.Gain, o.IntegrationTime = Gain16, 13700*time.Microsecond
	pb := &i2ctest.Playback{DontPanic: true, Ops: reading(AddrFloat, 0x10, 5046, 1000)}
	d, _ := New(pb, sensorstest.NewInstantClock(), o)
	if err := d.Sense(context.Background(), make([]float64, 1)); err != nil {
		t.Fatalf("5046 counts at 13.7 ms: %v", err)
	}
}

func FuzzOptsValidate(f *testing.F) {
	f.Add("1", uint16(0x39), "auto", int64(402*time.Millisecond), "t")
	f.Add("1", uint16(0x29), "1", int64(13700*time.Microsecond), "cs")
	f.Add("", uint16(0x49), "16", int64(101*time.Millisecond), "t")
	f.Add("1", uint16(0x7a), "x", int64(-1), "")
	f.Fuzz(func(t *testing.T, bus string, addr uint16, gain string, it int64, pkg string) {
		o := Opts{Opts: i2cbus.Opts{Bus: bus, Address: addr}, Gain: gain, IntegrationTime: time.Duration(it), Package: pkg}
		err := o.Validate()
		if err != nil {
			var fe *sensors.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %v, not a FieldError", err)
			}
			return
		}
		d, err := New(i2cbustest.NewDeadBus(), nil, o)
		if err != nil {
			t.Fatalf("New rejected valid opts %+v: %v", o, err)
		}
		if d.t.wait <= o.IntegrationTime || d.t.clip == 0 {
			t.Fatalf("timing %+v for %v", d.t, o.IntegrationTime)
		}
	})
}

func TestNotTSL2561(t *testing.T) {
	const a = AddrFloat
	o := DefaultOpts()
	o.Gain = Gain16
	pb := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{opPowerUp(a), opReadCtrl(a, 0x50), opPowerDown(a)}}
	d, _ := New(pb, sensorstest.NewInstantClock(), o)
	dst := []float64{-1}
	if err := d.Sense(context.Background(), dst); !errors.Is(err, ErrNotTSL2561) || dst[0] != -1 {
		t.Fatalf("Sense = %v, %v; want ErrNotTSL2561 and dst untouched", dst[0], err)
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err) // the chip was powered down
	}
}

// TestFailedPowerDownWritesNothing pins a bug the drivertest suite found:
// when the power-down that ends a reading failed, Sense returned the error
// but had already written the lux value into dst.
func TestFailedPowerDownWritesNothing(t *testing.T) {
	ops := reading(AddrFloat, 0x12, 1000, 200)
	b := i2cbustest.NewBus(ops)
	b.Fail = len(ops) - 1
	d, _ := New(b, sensorstest.NewInstantClock(), DefaultOpts())
	dst := []float64{-1}
	err := d.Sense(context.Background(), dst)
	if !errors.Is(err, i2cbustest.ErrBus) || !strings.Contains(err.Error(), "power down") {
		t.Fatalf("Sense = %v, want the power-down error", err)
	}
	if dst[0] != -1 {
		t.Errorf("a failed Sense wrote %v lx", dst[0])
	}
}

func BenchmarkSense(b *testing.B) {
	bus := i2cbustest.NewBus(reading(AddrFloat, 0x12, 1000, 200))
	bus.Loop = true
	d, _ := New(i2cbus.NewBus("1", bus), sensorstest.NewInstantClock(), DefaultOpts())
	dst := make([]float64, 1)
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Sense(context.Background(), dst); err != nil {
			b.Fatal(err)
		}
	}
}
