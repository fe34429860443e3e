package bme280

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/edged/edged/drivers/drivertest"
	"github.com/edged/edged/drivers/i2cbus/i2cbustest"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

// The trimming parameters of the compensation example in Bosch's BMP280
// datasheet (BST-BMP280-DS001, 3.12, table 16); the BME280 uses the same
// temperature and pressure formulas. The humidity parameters are those of
// a real BME280 (the datasheet has no humidity example): dig_H1 75,
// dig_H2 362, dig_H3 0, dig_H4 313, dig_H5 50, dig_H6 30.
var (
	exampleCal = Calibration{
		T1: 27504, T2: 26435, T3: -1000,
		P1: 36477, P2: -10685, P3: 3024, P4: 2855, P5: 140, P6: -7, P7: 15500, P8: -14600, P9: 6000,
		H1: 75, H2: 362, H3: 0, H4: 313, H5: 50, H6: 30,
	}
	// Registers 0x88..0xA1 holding exampleCal (little-endian words, 0xA0
	// unused, 0xA1 dig_H1), and 0xE1..0xE7 (dig_H4 = 0xE4<<4 | 0xE5&0xF,
	// dig_H5 = 0xE6<<4 | 0xE5>>4).
	calTPH = []byte{
		0x70, 0x6B, 0x43, 0x67, 0x18, 0xFC, 0x7D, 0x8E, 0x43, 0xD6, 0xD0, 0x0B, 0x27, 0x0B,
		0x8C, 0x00, 0xF9, 0xFF, 0x8C, 0x3C, 0xF8, 0xC6, 0x70, 0x17, 0x00, 0x4B,
	}
	calH = []byte{0x6A, 0x01, 0x00, 0x13, 0x29, 0x03, 0x1E}
)

// The example's raw values: adc_T 519888 and adc_P 415148 (BMP280
// datasheet 3.12), and adc_H 30000.
const (
	adcT = 519888
	adcP = 415148
	adcH = 30000
)

// What the integer formulas of 4.2.3 give for them: 2508 (25.08 °C; the
// example's double formula says 25.08), 25767233/256 Pa (the example says
// 100653.27 Pa) and 56317/1024 %RH.
const (
	wantT = 25.08
	wantP = 25767233.0 / 256
	wantH = 56317.0 / 1024
)

// The traffic of one set-up (5.4.1, 4.2.2, 5.4.3) and one forced
// measurement (3.3.3, 5.4.5, 4: burst read) at the default settings.
var (
	readID    = i2ctest.IO{Addr: Addr, W: []byte{0xD0}, R: []byte{0x60}}
	readCal1  = i2ctest.IO{Addr: Addr, W: []byte{0x88}, R: calTPH}
	readCal2  = i2ctest.IO{Addr: Addr, W: []byte{0xE1}, R: calH}
	writeSet  = i2ctest.IO{Addr: Addr, W: []byte{0xF2, 0x01, 0xF5, 0x00, 0xF4, 0x24}} // osrs 1/1/1, filter off, sleep
	setup     = []i2ctest.IO{readID, readCal1, readCal2, writeSet}
	startMeas = i2ctest.IO{Addr: Addr, W: []byte{0xF4, 0x25}} // forced mode
)

// burst is the reply of the 13-byte read from 0xF2: ctrl_hum, status,
// ctrl_meas, config, 0xF6, then press, temp (20 bits each, xlsb in bits
// 7:4) and hum (16 bits).
func burst(ctrlHum, status, ctrlMeas, config byte, p, t, h int) []byte {
	return []byte{ctrlHum, status, ctrlMeas, config, 0x00,
		byte(p >> 12), byte(p >> 4), byte(p << 4),
		byte(t >> 12), byte(t >> 4), byte(t << 4),
		byte(h >> 8), byte(h),
	}
}

func readMeas(reply []byte) i2ctest.IO {
	return i2ctest.IO{Addr: Addr, W: []byte{0xF2}, R: reply}
}

var good = readMeas(burst(0x01, 0x00, 0x24, 0x00, adcP, adcT, adcH))

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestParseCalibration(t *testing.T) {
	c, err := ParseCalibration([26]byte(calTPH), [7]byte(calH))
	if err != nil || c != exampleCal {
		t.Fatalf("ParseCalibration = %+v, %v; want %+v", c, err, exampleCal)
	}
	// dig_H4 and dig_H5 are signed 12-bit values sharing 0xE5.
	c, err = ParseCalibration([26]byte(calTPH), [7]byte{0, 0, 0, 0xFF, 0xEF, 0x80, 0})
	if err != nil || c.H4 != -1 || c.H5 != -2034 {
		t.Errorf("negative dig_H4/H5 = %d, %d, %v; want -1, -2034", c.H4, c.H5, err)
	}
	if _, err := ParseCalibration([26]byte{}, [7]byte{}); !errors.Is(err, ErrCalibration) {
		t.Errorf("all-zero calibration: %v", err)
	}
}

func TestCompensate(t *testing.T) {
	c := exampleCal
	temp, p, h := c.Compensate(adcT, adcP, adcH)
	if temp != wantT || p != wantP || h != wantH {
		t.Fatalf("Compensate = %v °C, %v Pa, %v %%RH; want %v, %v, %v", temp, p, h, wantT, wantP, wantH)
	}
	if !near(p, 100653.27, 0.05) {
		t.Errorf("pressure %v Pa is not the datasheet example's 100653.27 Pa", p)
	}
	// The double-precision formulas of datasheet 8.1, written out here as
	// an independent check of the integer ones across the range.
	for _, raw := range []struct{ t, p, h int32 }{
		{adcT, adcP, adcH}, {450000, 300000, 20000}, {560000, 500000, 40000}, {400000, 350000, 25000},
	} {
		gt, gp, gh := c.Compensate(raw.t, raw.p, raw.h)
		wt, wp, wh := float8(&c, raw.t, raw.p, raw.h)
		if !near(gt, wt, 0.01) || !near(gp, wp, 0.1) || !near(gh, wh, 0.01) {
			t.Errorf("raw %+v: integer %v, %v, %v; double %v, %v, %v", raw, gt, gp, gh, wt, wp, wh)
		}
	}
	// Humidity is clamped to 0..100 %RH by the formula.
	if _, _, h := c.Compensate(adcT, adcP, 0); h != 0 {
		t.Errorf("adc_H 0: %v %%RH", h)
	}
	if _, _, h := c.Compensate(adcT, adcP, 0xFFFF); h != 100 {
		t.Errorf("adc_H 0xFFFF: %v %%RH", h)
	}
}

// float8 is the floating-point compensation of datasheet 8.1.
func float8(c *Calibration, adcT, adcP, adcH int32) (t, p, h float64) {
	v1 := (float64(adcT)/16384 - float64(c.T1)/1024) * float64(c.T2)
	x := float64(adcT)/131072 - float64(c.T1)/8192
	v2 := x * x * float64(c.T3)
	tFine := v1 + v2
	t = tFine / 5120

	v1 = tFine/2 - 64000
	v2 = v1 * v1 * float64(c.P6) / 32768
	v2 += v1 * float64(c.P5) * 2
	v2 = v2/4 + float64(c.P4)*65536
	v1 = (float64(c.P3)*v1*v1/524288 + float64(c.P2)*v1) / 524288
	v1 = (1 + v1/32768) * float64(c.P1)
	p = 1048576 - float64(adcP)
	p = (p - v2/4096) * 6250 / v1
	v1 = float64(c.P9) * p * p / 2147483648
	v2 = p * float64(c.P8) / 32768
	p += (v1 + v2 + float64(c.P7)) / 16

	h = tFine - 76800
	h = (float64(adcH) - (float64(c.H4)*64 + float64(c.H5)/16384*h)) *
		(float64(c.H2) / 65536 * (1 + float64(c.H6)/67108864*h*(1+float64(c.H3)/67108864*h)))
	h *= 1 - float64(c.H1)*h/524288
	return t, p, min(max(h, 0), 100)
}

func TestMeasureTime(t *testing.T) {
	tests := []struct {
		t, p, h int
		want    time.Duration
	}{
		{1, 1, 1, 9300 * time.Microsecond},      // 1.25 + 2.3 + 2.875 + 2.875: weather monitoring
		{2, 16, 1, 46100 * time.Microsecond},    // 1.25 + 4.6 + 37.375 + 2.875
		{16, 16, 16, 112800 * time.Microsecond}, // the longest
	}
	for _, tt := range tests {
		if got := MeasureTime(tt.t, tt.p, tt.h); got != tt.want {
			t.Errorf("MeasureTime(%d, %d, %d) = %v, want %v", tt.t, tt.p, tt.h, got, tt.want)
		}
	}
}

func TestOptsValidate(t *testing.T) {
	drivertest.RunOpts(t, DefaultOpts, (*Opts).Validate, func(o Opts) error {
		_, err := New(i2cbustest.NewDeadBus(), nil, o)
		return err
	}, []drivertest.OptsRow[Opts]{
		{Name: "default", Edit: func(*Opts) {}},
		{Name: "0x77", Edit: func(o *Opts) { o.Address = AltAddr }},
		{Name: "all 16", Edit: func(o *Opts) {
			o.TemperatureOversampling, o.PressureOversampling, o.HumidityOversampling, o.IIRFilter = 16, 16, 16, 16
		}},
		{Name: "wrong address", Edit: func(o *Opts) { o.Address = 0x40 }, Field: "address"},
		{Name: "temperature 3", Edit: func(o *Opts) { o.TemperatureOversampling = 3 }, Field: "temperature_oversampling"},
		{Name: "temperature skipped", Edit: func(o *Opts) { o.TemperatureOversampling = 0 }, Field: "temperature_oversampling"},
		{Name: "pressure 32", Edit: func(o *Opts) { o.PressureOversampling = 32 }, Field: "pressure_oversampling"},
		{Name: "humidity -1", Edit: func(o *Opts) { o.HumidityOversampling = -1 }, Field: "humidity_oversampling"},
		{Name: "filter 1", Edit: func(o *Opts) { o.IIRFilter = 1 }, Field: "iir_filter"},
		{Name: "filter 32", Edit: func(o *Opts) { o.IIRFilter = 32 }, Field: "iir_filter"},
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

func sense(d *Dev) ([]float64, error) {
	dst := []float64{math.NaN(), math.NaN(), math.NaN()}
	err := d.Sense(context.Background(), dst)
	return dst, err
}

func untouched(dst []float64) bool {
	return math.IsNaN(dst[0]) && math.IsNaN(dst[1]) && math.IsNaN(dst[2])
}

func TestSenseSetupErrors(t *testing.T) {
	tests := []struct {
		name string
		ops  []i2ctest.IO
		err  error
		msg  string
	}{
		{"bmp280", []i2ctest.IO{{Addr: Addr, W: []byte{0xD0}, R: []byte{0x58}}}, ErrChipID, "BMP280"},
		{"other chip", []i2ctest.IO{{Addr: Addr, W: []byte{0xD0}, R: []byte{0xFF}}}, ErrChipID, "0xff"},
		{"zero calibration", []i2ctest.IO{readID, {Addr: Addr, W: []byte{0x88}, R: make([]byte, 26)}, readCal2}, ErrCalibration, "dig_T1 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pb := &i2ctest.Playback{DontPanic: true, Ops: tt.ops}
			d := newDev(t, pb, sensorstest.NewInstantClock(), nil)
			dst, err := sense(d)
			if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), "bme280(") {
				t.Fatalf("Sense = %v, want %v mentioning %q", err, tt.err, tt.msg)
			}
			if !untouched(dst) {
				t.Errorf("dst written: %v", dst)
			}
			if err := pb.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSenseBadReadings(t *testing.T) {
	tests := []struct {
		name  string
		reply []byte
		err   error
	}{
		{"measuring", burst(0x01, 0x08, 0x24, 0x00, adcP, adcT, adcH), ErrBusy},
		{"still in forced mode", burst(0x01, 0x00, 0x25, 0x00, adcP, adcT, adcH), ErrBusy},
		{"pressure skipped", burst(0x01, 0x00, 0x24, 0x00, 0x80000, adcT, adcH), ErrNoData},
		{"humidity skipped", burst(0x01, 0x00, 0x24, 0x00, adcP, adcT, 0x8000), ErrNoData},
		{"too hot", burst(0x01, 0x00, 0x24, 0x00, adcP, 800000, adcH), ErrRange},
		{"pressure beyond 1100 hPa", burst(0x01, 0x00, 0x24, 0x00, 100000, adcT, adcH), ErrRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pb := &i2ctest.Playback{DontPanic: true, Ops: append(append([]i2ctest.IO{}, setup...), startMeas, readMeas(tt.reply))}
			d := newDev(t, pb, sensorstest.NewInstantClock(), nil)
			dst, err := sense(d)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Sense = %v, want %v", err, tt.err)
			}
			if !untouched(dst) {
				t.Errorf("dst written: %v", dst)
			}
			if err := pb.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSenseDetectsReset: a supply glitch resets the registers to zero
// (5.4.3-5.4.6: reset values 0x00). The read-back shows it, the reading is
// refused, and the next Sense sets the sensor up again.
func TestSenseDetectsReset(t *testing.T) {
	ops := append(append([]i2ctest.IO{}, setup...), startMeas, readMeas(burst(0x00, 0x00, 0x00, 0x00, 0x80000, 0x80000, 0x8000)))
	ops = append(append(ops, setup...), startMeas, good)
	pb := &i2ctest.Playback{DontPanic: true, Ops: ops}
	d := newDev(t, pb, sensorstest.NewInstantClock(), nil)
	if _, err := sense(d); !errors.Is(err, ErrReset) {
		t.Fatalf("Sense = %v, want ErrReset", err)
	}
	if dst, err := sense(d); err != nil || dst[0] != wantT {
		t.Fatalf("Sense after the reset = %v, %v", dst, err)
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
}

// FuzzSense feeds arbitrary calibration and measurement bytes: Sense must
// never panic, and whatever it accepts must lie in the operating range.
func FuzzSense(f *testing.F) {
	f.Add(calTPH, calH, burst(0x01, 0x00, 0x24, 0x00, adcP, adcT, adcH))
	f.Add(calTPH, calH, burst(0x01, 0x00, 0x24, 0x00, 0xFFFFF, 0xFFFFF, 0xFFFF))
	f.Add(calTPH, calH, burst(0x01, 0x00, 0x24, 0x00, 0, 0, 0))
	f.Add(make([]byte, 26), make([]byte, 7), make([]byte, 13))
	ff := make([]byte, 26)
	for i := range ff {
		ff[i] = 0xFF
	}
	f.Add(ff, ff[:7], burst(0x01, 0x00, 0x24, 0x00, adcP, adcT, adcH))
	f.Fuzz(func(t *testing.T, tph, h, reply []byte) {
		if len(tph) != 26 || len(h) != 7 || len(reply) != 13 {
			return
		}
		pb := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
			readID,
			{Addr: Addr, W: []byte{0x88}, R: tph},
			{Addr: Addr, W: []byte{0xE1}, R: h},
			writeSet, startMeas, readMeas(reply),
		}}
		d := newDev(t, pb, sensorstest.NewInstantClock(), nil)
		dst, err := sense(d)
		if err == nil && (dst[0] < -40 || dst[0] > 85 || dst[1] < 0 || dst[1] > 100 || dst[2] < 30000 || dst[2] > 110000) {
			t.Fatalf("accepted out-of-range values %v", dst)
		}
	})
}

// TestConformance runs the compensation example through the shared driver
// suite at the default settings and at non-default ones, which pins the
// register values of ctrl_hum osrs_h (table 20), config filter (table 28),
// ctrl_meas osrs_t, osrs_p and mode (tables 22-25) and the maximum
// measurement time of 9.1. The set-up (5.4.1, 4.2.2, 5.4.3) comes once,
// then a forced measurement (3.3.3, 5.4.5, 4: burst read) per reading.
func TestConformance(t *testing.T) {
	const a = AltAddr
	for _, tt := range []struct {
		name       string
		addr       uint16
		edit       func(*Opts)
		init, good []i2ctest.IO
		wait       time.Duration
	}{
		{"defaults", 0x76, nil, setup, []i2ctest.IO{startMeas, good}, 9300 * time.Microsecond},
		{"settings", a, func(o *Opts) {
			o.Address, o.TemperatureOversampling, o.PressureOversampling, o.HumidityOversampling, o.IIRFilter = a, 2, 16, 4, 16
		}, []i2ctest.IO{
			{Addr: a, W: []byte{0xD0}, R: []byte{0x60}},
			{Addr: a, W: []byte{0x88}, R: calTPH},
			{Addr: a, W: []byte{0xE1}, R: calH},
			{Addr: a, W: []byte{0xF2, 0x03, 0xF5, 0x10, 0xF4, 0x54}}, // h x4, filter 16, t x2, p x16, sleep
		}, []i2ctest.IO{
			{Addr: a, W: []byte{0xF4, 0x55}},
			{Addr: a, W: []byte{0xF2}, R: burst(0x03, 0x00, 0x54, 0x10, adcP, adcT, adcH)},
		}, 1250*time.Microsecond + 4600*time.Microsecond + 37375*time.Microsecond + 9775*time.Microsecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			drivertest.Run(t, conformance(tt.addr, tt.edit, tt.init, tt.good, tt.wait))
		})
	}
}

// conformance is the suite case of the options edit makes from the
// defaults, with the set-up traffic init and the reading traffic good.
// Halt sends nothing: forced mode leaves the sensor asleep.
func conformance(addr uint16, edit func(*Opts), init, good []i2ctest.IO, wait time.Duration) drivertest.Case {
	o := DefaultOpts()
	if edit != nil {
		edit(&o)
	}
	return drivertest.Case{
		Name: "bme280",
		New: func(b i2c.Bus, clk sensors.Clock) (sensors.Sensor, error) {
			return New(b, clk, o)
		},
		Opts:       &o,
		Addr:       addr,
		First:      slices.Concat(init, good),
		Good:       good,
		Want:       []float64{wantT, wantH, wantP},
		Exact:      true,
		Quantities: []sensors.Quantity{sensors.Temperature, sensors.Humidity, sensors.Pressure},
		Waits:      []time.Duration{wait},
		FirstWaits: []time.Duration{wait},
		FailSays:   []string{"read chip id", "read calibration 0x88", "read calibration 0xe1", "write settings", "start forced measurement", "read measurement"},
		HaltTwice:  true,
		AfterHalt:  good,
	}
}

func BenchmarkSense(b *testing.B) {
	drivertest.Benchmark(b, conformance(Addr, nil, setup, []i2ctest.IO{startMeas, good}, 9300*time.Microsecond))
}
