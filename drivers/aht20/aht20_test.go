package aht20

import (
	"context"
	"errors"
	"math"
	"slices"
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

// reading25C50 is a measurement of 25.00 °C and 50.00 %RH as datasheet
// 5.4 step 4 (figure 11) lays it out: status 0x1C (idle, calibration
// enabled), humidity 0x80000 (half of 2^20), temperature 0x60000 (75/200
// of 2^20), then CRC-8 (poly 0x31, init 0xFF) over the six bytes.
var reading25C50 = []byte{0x1C, 0x80, 0x00, 0x06, 0x00, 0x00, 0x4E}

var (
	status    = i2ctest.IO{Addr: Addr, R: []byte{0x18}}             // 5.4 step 1: calibrated, idle
	statusRaw = i2ctest.IO{Addr: Addr, R: []byte{0x10}}             // 5.4 step 1: calibration bit clear
	initCmd   = i2ctest.IO{Addr: Addr, W: []byte{0xBE, 0x08, 0x00}} // 5.4 step 1
	trigger   = i2ctest.IO{Addr: Addr, W: []byte{0xAC, 0x33, 0x00}} // 5.4 step 2
)

func read(b []byte) i2ctest.IO { return i2ctest.IO{Addr: Addr, R: b} }

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestConversion(t *testing.T) {
	tests := []struct {
		data        []byte
		temp, humid float64
	}{
		{reading25C50[1:6], 25, 50},
		{[]byte{0, 0, 0, 0, 0}, -50, 0},
		{[]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, 200*float64(0xFFFFF)/(1<<20) - 50, 100 * float64(0xFFFFF) / (1 << 20)},
		{[]byte{0x66, 0x66, 0x65, 0xCC, 0xCD}, 200*float64(0x5CCCD)/(1<<20) - 50, 100 * float64(0x66666) / (1 << 20)},
		{[]byte{0x00, 0x00, 0x0F, 0xFF, 0xFF}, 200*float64(0xFFFFF)/(1<<20) - 50, 0}, // the shared byte's low nibble is temperature
		{[]byte{0x00, 0x00, 0xF0, 0x00, 0x00}, -50, 100 * 15.0 / (1 << 20)},          // and its high nibble humidity
	}
	for _, tt := range tests {
		rh, tr := Raw(tt.data)
		if got := Temperature(tr); !near(got, tt.temp) {
			t.Errorf("% x: temperature %v, want %v", tt.data, got, tt.temp)
		}
		if got := Humidity(rh); !near(got, tt.humid) {
			t.Errorf("% x: humidity %v, want %v", tt.data, got, tt.humid)
		}
	}
}

func TestOptsValidate(t *testing.T) {
	drivertest.RunOpts(t, DefaultOpts, (*Opts).Validate, func(o Opts) error {
		_, err := New(i2cbustest.NewDeadBus(), nil, o)
		return err
	}, []drivertest.OptsRow[Opts]{
		{Name: "default", Edit: func(*Opts) {}},
		{Name: "wrong address", Edit: func(o *Opts) { o.Address = 0x39 }, Field: "address"},
		{Name: "address out of range", Edit: func(o *Opts) { o.Address = 0x78 }, Field: "address"},
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

func sense(t *testing.T, d *Dev) ([]float64, error) {
	t.Helper()
	dst := []float64{math.NaN(), math.NaN()}
	err := d.Sense(context.Background(), dst)
	return dst, err
}

// busy is a reading taken while status bit 7 is set: the sensor is still
// measuring (5.3, table 10). Data and CRC are meaningless.
var busy = []byte{0x9C, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}

// TestSensePollsBusy: Sense polls the busy bit every 10 ms, a bounded
// number of times.
func TestSensePollsBusy(t *testing.T) {
	// "Ready on the second poll" is a TestConformance case.
	t.Run("stays busy", func(t *testing.T) {
		pb := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{status, trigger, read(busy), read(busy), read(busy), read(busy)}}
		d := newDev(t, pb, sensorstest.NewInstantClock())
		dst, err := sense(t, d)
		if !errors.Is(err, ErrBusy) || !math.IsNaN(dst[0]) {
			t.Fatalf("Sense = %v, %v; want ErrBusy", dst, err)
		}
		if err := pb.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSenseCRCFailure(t *testing.T) {
	bad := append([]byte(nil), reading25C50...)
	bad[3] ^= 0x01 // a flipped temperature bit, checksum unchanged
	pb := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{status, trigger, read(bad)}}
	d := newDev(t, pb, sensorstest.NewInstantClock())
	dst, err := sense(t, d)
	if !errors.Is(err, ErrCRC) || !math.IsNaN(dst[0]) || !math.IsNaN(dst[1]) {
		t.Fatalf("Sense = %v, %v; want ErrCRC and dst untouched", dst, err)
	}
	if d.CRCErrors() != 1 {
		t.Errorf("CRCErrors() = %d", d.CRCErrors())
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSenseLostCalibration: a reading whose calibration bit is clear (the
// sensor was reset by a supply glitch) is refused, and the next Sense
// initialises the sensor again.
func TestSenseLostCalibration(t *testing.T) {
	reset := []byte{0x14, 0x80, 0x00, 0x06, 0x00, 0x00, 0x94} // status 0x14: bit 3 clear; valid CRC
	pb := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
		status, trigger, read(reset),
		statusRaw, initCmd, trigger, read(reading25C50),
	}}
	d := newDev(t, pb, sensorstest.NewInstantClock())
	if _, err := sense(t, d); !errors.Is(err, ErrNotCalibrated) {
		t.Fatalf("Sense = %v, want ErrNotCalibrated", err)
	}
	if dst, err := sense(t, d); err != nil || !near(dst[1], 50) {
		t.Fatalf("Sense after re-initialising = %v, %v", dst, err)
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
}

// FuzzSense feeds arbitrary replies: Sense must never panic, and must
// succeed exactly when the sensor is idle, calibrated and the checksum is
// right, with values inside the sensor's scale.
func FuzzSense(f *testing.F) {
	f.Add(reading25C50)
	f.Add([]byte{0x1C, 0, 0, 0, 0, 0, 0x58})
	f.Add([]byte{0x1C, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7A})
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}) // a floating bus: busy forever
	f.Fuzz(func(t *testing.T, reply []byte) {
		if len(reply) != 7 {
			return
		}
		ops := []i2ctest.IO{status, trigger}
		for range maxPolls + 1 {
			ops = append(ops, read(reply))
		}
		pb := &i2ctest.Playback{DontPanic: true, Ops: ops}
		d := newDev(t, pb, sensorstest.NewInstantClock())
		dst := make([]float64, 2)
		err := d.Sense(context.Background(), dst)
		good := reply[0]&statusBusy == 0 && reply[0]&statusCalibrated != 0 && crc8.Sensirion(reply[:6]) == reply[6]
		if good != (err == nil) {
			t.Fatalf("reply % x: good %v, Sense error %v", reply, good, err)
		}
		if err == nil && (dst[0] < -50 || dst[0] >= 150 || dst[1] < 0 || dst[1] >= 100) {
			t.Fatalf("reply % x: out of scale %v", reply, dst)
		}
	})
}

// TestConformance runs datasheet 5.4 through the shared driver suite: the
// status check of step 1 once (with and without the initialisation and
// 10 ms wait it may call for), then trigger, 80 ms, read, polling every 10 ms while the
// sensor is busy. Halt sends nothing, and the sensor works afterwards.
func TestConformance(t *testing.T) {
	for _, tt := range []struct {
		name       string
		init, good []i2ctest.IO
		waits      []time.Duration
		says       []string
		initWaits  []time.Duration // before the first trigger
	}{
		{"calibrated", []i2ctest.IO{status}, []i2ctest.IO{trigger, read(reading25C50)},
			[]time.Duration{80 * time.Millisecond},
			[]string{"read status", "trigger measurement", "read measurement"}, nil},
		{"initialises", []i2ctest.IO{statusRaw, initCmd}, []i2ctest.IO{trigger, read(reading25C50)},
			[]time.Duration{80 * time.Millisecond},
			[]string{"read status", "initialise", "trigger measurement", "read measurement"},
			[]time.Duration{10 * time.Millisecond}},
		{"ready on the second poll", []i2ctest.IO{status}, []i2ctest.IO{trigger, read(busy), read(busy), read(reading25C50)},
			[]time.Duration{80 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond},
			[]string{"read status", "trigger measurement", "read measurement", "read measurement", "read measurement"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := conformance(tt.init, tt.good)
			c.Waits, c.FirstWaits, c.FailSays = tt.waits, slices.Concat(tt.initWaits, tt.waits), tt.says
			drivertest.Run(t, c)
		})
	}
}

// conformance is the suite case of a sensor whose first reading starts
// with init and whose readings are good, at the default options (bus 1,
// address 0x38, the only one).
func conformance(init, good []i2ctest.IO) drivertest.Case {
	o := DefaultOpts()
	return drivertest.Case{
		Name: "aht20",
		New: func(b i2c.Bus, clk sensors.Clock) (sensors.Sensor, error) {
			return New(b, clk, o)
		},
		Opts:       &o,
		Addr:       0x38,
		First:      slices.Concat(init, good),
		Good:       good,
		Want:       []float64{25, 50},
		Quantities: []sensors.Quantity{sensors.Temperature, sensors.Humidity},
		HaltTwice:  true,
		AfterHalt:  good,
	}
}

func BenchmarkSense(b *testing.B) {
	drivertest.Benchmark(b, conformance([]i2ctest.IO{status}, []i2ctest.IO{trigger, read(reading25C50)}))
}
