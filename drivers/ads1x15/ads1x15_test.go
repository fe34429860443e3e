package ads1x15

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

// Traffic (datasheet "Writing To and Reading From the Registers"): a
// config write is the pointer 0x01 and the word MSB first; a read is the
// pointer, a repeated start and two bytes MSB first.
func writeConfig(a uint16, c uint16) i2ctest.IO {
	return i2ctest.IO{Addr: a, W: []byte{0x01, byte(c >> 8), byte(c)}}
}

func readReg(a uint16, reg byte, v uint16) i2ctest.IO {
	return i2ctest.IO{Addr: a, W: []byte{reg}, R: []byte{byte(v >> 8), byte(v)}}
}

// conversion is one single-shot conversion that is done after the first
// wait: start, OS bit set on the config read-back, result.
func conversion(a uint16, c uint16, result uint16) []i2ctest.IO {
	return []i2ctest.IO{writeConfig(a, c), readReg(a, 0x01, c), readReg(a, 0x00, result)}
}

// TestConfig pins the config words against the datasheet's "Config
// Register Field Descriptions": OS 15, MUX 14:12 (1xx = AINx vs GND),
// PGA 11:9, MODE 8 (1 = single-shot), DR 7:5, COMP_QUE 1:0 (11 = off).
func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Opts)
		want uint16
	}{
		// 1 100 001 1 100 00011: AIN0, ±4.096 V, 128 SPS.
		{"default", func(*Opts) {}, 0xC383},
		// 1 111 010 1 100 00011: AIN3, ±2.048 V, ADS1015 1600 SPS.
		{"ads1015 AIN3", func(o *Opts) { o.Chip, o.Channel, o.Gain, o.DataRate = ADS1015, 3, 2.048, 1600 }, 0xF583},
		// 1 101 000 1 111 00011: AIN1, ±6.144 V, 860 SPS.
		{"AIN1 6.144 860", func(o *Opts) { o.Channel, o.Gain, o.DataRate = 1, 6.144, 860 }, 0xD1E3},
		// 1 110 101 1 000 00011: AIN2, ±0.256 V, 8 SPS.
		{"AIN2 0.256 8", func(o *Opts) { o.Channel, o.Gain, o.DataRate = 2, 0.256, 8 }, 0xEB03},
	}
	for _, tt := range tests {
		o := DefaultOpts()
		tt.edit(&o)
		d, err := New(i2cbustest.NewDeadBus(), nil, o)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if d.Config() != tt.want {
			t.Errorf("%s: config %#04x, want %#04x", tt.name, d.Config(), tt.want)
		}
	}
}

func TestOptsValidate(t *testing.T) {
	ldr := func() *LDROpts { return &LDROpts{SeriesOhms: 10000, VCC: 3.3, OhmsAt10Lux: 15000, Gamma: 0.7} }
	drivertest.RunOpts(t, DefaultOpts, (*Opts).Validate, func(o Opts) error {
		_, err := New(i2cbustest.NewDeadBus(), nil, o)
		return err
	}, []drivertest.OptsRow[Opts]{
		{Name: "default", Edit: func(*Opts) {}},
		{Name: "address 0x4b", Edit: func(o *Opts) { o.Address = AddrSCL }},
		{Name: "ads1015 3300", Edit: func(o *Opts) { o.Chip, o.DataRate = ADS1015, 3300 }},
		{Name: "ldr", Edit: func(o *Opts) { o.LDR = ldr() }},
		{Name: "ldr gnd side", Edit: func(o *Opts) { o.LDR = ldr(); o.LDR.Side = SideGND }},
		{Name: "address 0x47", Edit: func(o *Opts) { o.Address = 0x47 }, Field: "address"},
		{Name: "address 0x4c", Edit: func(o *Opts) { o.Address = 0x4C }, Field: "address"},
		{Name: "bus", Edit: func(o *Opts) { o.Bus = "" }, Field: "bus"},
		{Name: "chip", Edit: func(o *Opts) { o.Chip = "ads1119" }, Field: "chip"},
		{Name: "channel 4", Edit: func(o *Opts) { o.Channel = 4 }, Field: "channel"},
		{Name: "channel -1", Edit: func(o *Opts) { o.Channel = -1 }, Field: "channel"},
		{Name: "gain 5", Edit: func(o *Opts) { o.Gain = 5 }, Field: "gain"},
		{Name: "gain NaN", Edit: func(o *Opts) { o.Gain = math.NaN() }, Field: "gain"},
		{Name: "ads1115 rate 1600", Edit: func(o *Opts) { o.DataRate = 1600 }, Field: "data_rate"},
		{Name: "ads1015 rate 8", Edit: func(o *Opts) { o.Chip, o.DataRate = ADS1015, 8 }, Field: "data_rate"},
		{Name: "ldr without series", Edit: func(o *Opts) { o.LDR = ldr(); o.LDR.SeriesOhms = 0 }, Field: "ldr"},
		{Name: "ldr vcc NaN", Edit: func(o *Opts) { o.LDR = ldr(); o.LDR.VCC = math.NaN() }, Field: "ldr"},
		{Name: "ldr vcc 12", Edit: func(o *Opts) { o.LDR = ldr(); o.LDR.VCC = 12 }, Field: "ldr"},
		{Name: "ldr r10 inf", Edit: func(o *Opts) { o.LDR = ldr(); o.LDR.OhmsAt10Lux = math.Inf(1) }, Field: "ldr"},
		{Name: "ldr gamma", Edit: func(o *Opts) { o.LDR = ldr(); o.LDR.Gamma = -0.7 }, Field: "ldr"},
		{Name: "ldr gamma tiny", Edit: func(o *Opts) { o.LDR = ldr(); o.LDR.Gamma = 0.01 }, Field: "ldr"},
		{Name: "ldr side", Edit: func(o *Opts) { o.LDR = ldr(); o.LDR.Side = "top" }, Field: "ldr"},
	})
}

func TestOptsI2CAddrAndQuantities(t *testing.T) {
	o := DefaultOpts()
	if bus, addr := o.I2CAddr(); bus != "1" || addr != 0x48 {
		t.Errorf("I2CAddr() = %q, %#x", bus, addr)
	}
	if q := o.Quantities(); len(q) != 1 || q[0] != sensors.Voltage {
		t.Errorf("Quantities() = %v", q)
	}
	o.LDR = &LDROpts{}
	if q := o.Quantities(); len(q) != 2 || q[0] != sensors.Voltage || q[1] != sensors.Illuminance {
		t.Errorf("Quantities() with ldr = %v", q)
	}
}

func TestLDRLux(t *testing.T) {
	tests := []struct {
		name string
		l    LDROpts
		v    float64
		want float64
	}{
		// LDR on the vcc side at 1.65 V of 3.3 V: R = Rs = 10 kΩ, half
		// of R10, so lux = 10 * 2^(1/0.7).
		{"vcc side mid", LDROpts{SeriesOhms: 10000, VCC: 3.3, OhmsAt10Lux: 20000, Gamma: 0.7}, 1.65, 26.918003852647125},
		// LDR on the gnd side at 1.1 V: R = 10k * 1.1 / 2.2 = 5 kΩ.
		{"gnd side", LDROpts{SeriesOhms: 10000, VCC: 3.3, OhmsAt10Lux: 15000, Gamma: 0.8, Side: SideGND}, 1.1, 39.482220388574774},
		// R equal to R10 is 10 lx by definition.
		{"R10 is 10 lx", LDROpts{SeriesOhms: 15000, VCC: 3.3, OhmsAt10Lux: 15000, Gamma: 0.7}, 1.65, 10},
		{"vcc side 0 V is darkness", LDROpts{SeriesOhms: 10000, VCC: 3.3, OhmsAt10Lux: 15000, Gamma: 0.7}, 0, 0},
		{"vcc side slightly negative is darkness", LDROpts{SeriesOhms: 10000, VCC: 3.3, OhmsAt10Lux: 15000, Gamma: 0.7}, -0.000125, 0},
		{"gnd side at vcc is darkness", LDROpts{SeriesOhms: 10000, VCC: 3.3, OhmsAt10Lux: 15000, Gamma: 0.7, Side: SideGND}, 3.3, 0},
	}
	for _, tt := range tests {
		got, err := tt.l.Lux(tt.v)
		if err != nil || !near(got, tt.want) {
			t.Errorf("%s: Lux(%v) = %v, %v; want %v", tt.name, tt.v, got, err, tt.want)
		}
	}
	for _, l := range []LDROpts{
		{SeriesOhms: 10000, VCC: 3.3, OhmsAt10Lux: 15000, Gamma: 0.7},
		{SeriesOhms: 10000, VCC: 3.3, OhmsAt10Lux: 15000, Gamma: 0.7, Side: SideGND},
	} {
		v := 3.4 // above vcc on the vcc side: an LDR of negative resistance
		if l.Side == SideGND {
			v = 0
		}
		if _, err := l.Lux(v); err == nil || !strings.Contains(err.Error(), "zero LDR resistance") {
			t.Errorf("side %q at %v V: %v", l.Side, v, err)
		}
	}
}

// TestSense runs every chip, channel, gain, rate and LDR row through the
// shared driver suite, which checks the config word, the value and the
// conversion wait of each.
func TestSense(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*Opts)
		cfg    uint16
		result uint16
		want   []float64
		wait   time.Duration
	}{
		// ADS1115: 125 µV per count at ±4.096 V (datasheet table "Full-Scale
		// Range and Corresponding LSB Size").
		{"ads1115 2.048 V", func(*Opts) {}, 0xC383, 0x4000, []float64{2.048}, 8643750 * time.Nanosecond},
		{"ads1115 one count below zero", func(*Opts) {}, 0xC383, 0xFFFF, []float64{-0.000125}, 8643750 * time.Nanosecond},
		{"ads1115 zero", func(*Opts) {}, 0xC383, 0x0000, []float64{0}, 8643750 * time.Nanosecond},
		{"ads1115 at 0x49, 860 SPS", func(o *Opts) { o.Address, o.Channel, o.Gain, o.DataRate = AddrVDD, 1, 6.144, 860 }, 0xD1E3, 0x7FFE,
			[]float64{32766 * 6.144 / 32768}, 1329069 * time.Nanosecond},
		// ADS1015: 12 bits left-justified, 1 mV per count at ±2.048 V.
		{"ads1015 1.000 V", func(o *Opts) { o.Chip, o.Channel, o.Gain, o.DataRate = ADS1015, 3, 2.048, 1600 }, 0xF583, 0x3E80, []float64{1}, 737500 * time.Nanosecond},
		{"ads1015 -1 count", func(o *Opts) { o.Chip, o.Channel, o.Gain, o.DataRate = ADS1015, 3, 2.048, 1600 }, 0xF583, 0xFFF0, []float64{-0.001}, 737500 * time.Nanosecond},
		{"ldr", func(o *Opts) { o.LDR = &LDROpts{SeriesOhms: 10000, VCC: 3.3, OhmsAt10Lux: 20000, Gamma: 0.7} }, 0xC383, 0x3390,
			[]float64{1.65, 26.918003852647125}, 8643750 * time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOpts()
			tt.edit(&o)
			drivertest.Run(t, suite(o, conversion(o.Address, tt.cfg, tt.result), tt.want, []time.Duration{tt.wait}))
		})
	}
	// A conversion still running after the wait (OS bit 0 on read-back)
	// is polled again a tenth of a period later.
	t.Run("polls OS", func(t *testing.T) {
		const a = AddrGND
		busy := uint16(0xC383) &^ 0x8000
		drivertest.Run(t, suite(DefaultOpts(), []i2ctest.IO{
			writeConfig(a, 0xC383),
			readReg(a, 0x01, busy),
			readReg(a, 0x01, busy),
			readReg(a, 0x01, 0xC383),
			readReg(a, 0x00, 0x4000),
		}, []float64{2.048}, []time.Duration{8643750 * time.Nanosecond, 781250 * time.Nanosecond, 781250 * time.Nanosecond}))
	})
}

// suite is the conformance case of one configuration and conversion.
// Single-shot mode powers down by itself, so Halt sends nothing.
func suite(o Opts, good []i2ctest.IO, want []float64, waits []time.Duration) drivertest.Case {
	q := []sensors.Quantity{sensors.Voltage}
	if o.LDR != nil {
		q = append(q, sensors.Illuminance)
	}
	says := []string{"start conversion"}
	for range len(good) - 2 {
		says = append(says, "read config")
	}
	return drivertest.Case{
		Name: "ads1x15",
		New: func(b i2c.Bus, clk sensors.Clock) (sensors.Sensor, error) {
			return New(b, clk, o)
		},
		Opts:       &o,
		Addr:       o.Address,
		String:     fmt.Sprintf("%s(i2c 1, %#x, AIN%d)", o.Chip, o.Address, o.Channel),
		Good:       good,
		Want:       want,
		Tolerance:  1e-9 * math.Max(1, slices.Max(want)),
		Quantities: q,
		Waits:      waits,
		FailSays:   append(says, "read conversion"),
		HaltTwice:  true,
		AfterHalt:  good,
	}
}

func TestSenseErrors(t *testing.T) {
	const a = AddrGND
	busy := uint16(0xC383) &^ 0x8000
	ldr := &LDROpts{SeriesOhms: 10000, VCC: 3.3, OhmsAt10Lux: 20000, Gamma: 0.7}
	tests := []struct {
		name string
		ldr  *LDROpts
		ops  []i2ctest.IO
		is   error
		msg  string
	}{
		{"clipped ads1115", nil, conversion(a, 0xC383, 0x7FFF), ErrClipped, "code 0x7fff"},
		{"never finishes", nil, []i2ctest.IO{
			writeConfig(a, 0xC383), readReg(a, 0x01, busy), readReg(a, 0x01, busy), readReg(a, 0x01, busy), readReg(a, 0x01, busy),
		}, ErrBusy, "still converting"},
		{"another device", nil, []i2ctest.IO{writeConfig(a, 0xC383), readReg(a, 0x01, 0x8583)}, ErrConfigMismatch, "read 0x8583"},
		{"ldr above vcc", ldr, conversion(a, 0xC383, 0x7000), nil, "zero LDR resistance"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOpts()
			o.LDR = tt.ldr
			pb := &i2ctest.Playback{DontPanic: true, Ops: tt.ops}
			d, _ := New(pb, sensorstest.NewInstantClock(), o)
			dst := []float64{-1, -1}
			err := d.Sense(context.Background(), dst)
			if err == nil || (tt.is != nil && !errors.Is(err, tt.is)) || !strings.Contains(err.Error(), tt.msg) ||
				!strings.Contains(err.Error(), "ads1115(playback, 0x48, AIN0)") {
				t.Fatalf("Sense = %v", err)
			}
			if dst[0] != -1 || dst[1] != -1 {
				t.Errorf("dst written on error: %v", dst)
			}
		})
	}
	t.Run("ads1015 clipped", func(t *testing.T) {
		o := DefaultOpts()
		o.Chip, o.DataRate = ADS1015, 1600
		d, _ := New(&i2ctest.Playback{DontPanic: true, Ops: conversion(a, 0xC383, 0x7FF0)}, sensorstest.NewInstantClock(), o)
		if err := d.Sense(context.Background(), make([]float64, 1)); !errors.Is(err, ErrClipped) {
			t.Fatalf("Sense = %v", err)
		}
	})
}

func FuzzOptsValidate(f *testing.F) {
	f.Add("1", uint16(0x48), "ads1115", 0, 4.096, 128, false, 10000.0, 3.3, 15000.0, 0.7, "")
	f.Add("1", uint16(0x4b), "ads1015", 3, 0.256, 3300, true, 10000.0, 3.3, 15000.0, 0.7, "gnd")
	f.Add("", uint16(0x47), "x", -1, 5.0, 7, true, 0.0, 12.0, -1.0, 0.0, "top")
	f.Fuzz(func(t *testing.T, bus string, addr uint16, chip string, ch int, gain float64, rate int,
		withLDR bool, rs, vcc, r10, gamma float64, side string) {
		o := Opts{Opts: i2cbus.Opts{Bus: bus, Address: addr}, Chip: chip, Channel: ch, Gain: gain, DataRate: rate}
		if withLDR {
			o.LDR = &LDROpts{SeriesOhms: rs, VCC: vcc, OhmsAt10Lux: r10, Gamma: gamma, Side: side}
		}
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
		c := d.Config()
		if c>>15 != 1 || int(c>>12&7) != 4+ch || c>>8&1 != 1 || c&3 != 3 || d.wait <= 0 {
			t.Fatalf("config %#04x, wait %v for %+v", c, d.wait, o)
		}
		// Valid LDR options map every voltage in range to a finite,
		// non-negative lux or an error, never NaN.
		if o.LDR != nil {
			for _, v := range []float64{-0.001, 0, vcc / 3, vcc / 2, vcc, vcc + 0.1} {
				lux, err := o.LDR.Lux(v)
				if err == nil && (math.IsNaN(lux) || math.IsInf(lux, 0) || lux < 0) {
					t.Fatalf("Lux(%v) = %v for %+v", v, lux, *o.LDR)
				}
			}
		}
	})
}

func BenchmarkSense(b *testing.B) {
	bus := i2cbustest.NewBus(conversion(AddrGND, 0xC383, 0x4000))
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
