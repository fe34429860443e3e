package am2320

import (
	"context"
	"errors"
	"math"
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

// example is the reply of the manual's figure 17 (8.2.4 step three):
// function code 0x03, length 4, humidity 0x0339 (82.5 %RH), temperature
// 0x0115 (27.7 °C), CRC 0xFEE1 low byte first.
var example = []byte{0x03, 0x04, 0x03, 0x39, 0x01, 0x15, 0xE1, 0xFE}

// The traffic of 8.2.4: step one wakes the sensor with its address (one
// zero byte follows, as Linux cannot send an address alone), step two is
// the read command of figure 16, step three the 8-byte reply.
var (
	wake = i2ctest.IO{Addr: Addr, W: []byte{0x00}}
	cmd  = i2ctest.IO{Addr: Addr, W: []byte{0x03, 0x00, 0x04}}
)

func reply(b []byte) i2ctest.IO { return i2ctest.IO{Addr: Addr, R: b} }

// errNACK is what the Linux I2C driver reports for an unacknowledged
// address (EREMOTEIO).
var errNACK = errors.New("sysfs-i2c: remote I/O error")

// asleep is a bus on which the sensor is asleep at the first wake-up
// byte: that write is NACKed and never reaches the playback, as on real
// hardware, where the sensor only wakes after it.
type asleep struct {
	i2ctest.Playback
	nacks int
}

func (b *asleep) Tx(addr uint16, w, r []byte) error {
	if len(w) == 1 && w[0] == 0x00 && r == nil {
		b.nacks++
		return errNACK
	}
	return b.Playback.Tx(addr, w, r)
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestCRC16(t *testing.T) {
	tests := []struct {
		in   []byte
		want uint16
	}{
		{example[:6], 0xFEE1},                                // figure 17
		{[]byte{0x03, 0x04, 0x01, 0xF4, 0x00, 0xFA}, 0xA531}, // the function code 0x03 example of 8.2.4: 50.0 %RH, 25.0 °C
		{nil, 0xFFFF}, // the initial value
	}
	for _, tt := range tests {
		if got := CRC16(tt.in); got != tt.want {
			t.Errorf("CRC16(% x) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
}

func TestTemperature(t *testing.T) {
	tests := []struct {
		raw  uint16
		want float64
	}{
		{0x0115, 27.7},  // figure 17
		{0x00FA, 25.0},  // 8.2.4 function code 0x03 example
		{0x010D, 26.9},  // 8.3.2 single-bus example
		{0x8065, -10.1}, // 8.3.2: below 0 °C the top bit is set
		{0x0000, 0},
		{0x8000, 0},
		{0x8190, -40}, // the bottom of the range
		{0x0320, 80},  // the top of the range
	}
	for _, tt := range tests {
		got := Temperature(tt.raw)
		if !near(got, tt.want) || math.Signbit(got) != math.Signbit(tt.want) {
			t.Errorf("Temperature(%#04x) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

func TestOptsValidate(t *testing.T) {
	drivertest.RunOpts(t, DefaultOpts, (*Opts).Validate, func(o Opts) error {
		_, err := New(i2cbustest.NewDeadBus(), nil, o)
		return err
	}, []drivertest.OptsRow[Opts]{
		{Name: "default", Edit: func(*Opts) {}},
		{Name: "wrong address", Edit: func(o *Opts) { o.Address = 0x5D }, Field: "address"},
		{Name: "address out of range", Edit: func(o *Opts) { o.Address = 0xB8 }, Field: "address"},
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

func sense(d *Dev) ([]float64, error) {
	dst := []float64{math.NaN(), math.NaN()}
	err := d.Sense(context.Background(), dst)
	return dst, err
}

// TestSenseAsleep is the usual case: the wake-up address is NACKed.
func TestSenseAsleep(t *testing.T) {
	b := &asleep{Playback: i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{cmd, reply(example)}}}
	clk := sensorstest.NewInstantClock()
	d := newDev(t, i2cbus.NewBus("1", b), clk)
	dst, err := sense(d)
	if err != nil {
		t.Fatal(err)
	}
	if !near(dst[0], 27.7) || !near(dst[1], 82.5) {
		t.Errorf("Sense = %v °C, %v %%RH; want 27.7, 82.5 (figure 17)", dst[0], dst[1])
	}
	if b.nacks != 1 {
		t.Errorf("%d wake-up writes, want 1", b.nacks)
	}
	// 8.2.4: at least 800 µs to wake, at least 1.5 ms before the read.
	if n, last, total := clk.Waits(); n != 2 || last != 2*time.Millisecond || total != 3*time.Millisecond {
		t.Errorf("waits %d, last %v, total %v; want 1ms then 2ms", n, last, total)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSenseAwake: a sensor still awake from a recent read acknowledges
// the wake-up byte, which is harmless.
func TestSenseAwake(t *testing.T) {
	neg := []byte{0x03, 0x04, 0x02, 0x92, 0x80, 0x65, 0xF0, 0x56} // 65.8 %RH, -10.1 °C (8.3.2)
	pb := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{wake, cmd, reply(neg)}}
	d := newDev(t, pb, sensorstest.NewInstantClock())
	dst, err := sense(d)
	if err != nil || !near(dst[0], -10.1) || !near(dst[1], 65.8) {
		t.Fatalf("Sense = %v, %v; want -10.1 °C, 65.8 %%RH", dst, err)
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSenseBadReplies(t *testing.T) {
	badCRC := append([]byte(nil), example...)
	badCRC[3] ^= 0x01
	tests := []struct {
		name  string
		reply []byte
		err   error
	}{
		{"crc", badCRC, ErrCRC},
		{"crc sent high byte first", []byte{0x03, 0x04, 0x03, 0x39, 0x01, 0x15, 0xFE, 0xE1}, ErrCRC},
		{"floating bus", []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, ErrCRC},
		{"not a register read (an error code)", []byte{0x80, 0x03, 0x00, 0, 0, 0, 0x5B, 0xDB}, ErrResponse},
		{"humidity 100.1 %RH", []byte{0x03, 0x04, 0x03, 0xE9, 0x00, 0xFA, 0xA0, 0x1B}, ErrRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if CRC16(tt.reply[:6]) == uint16(tt.reply[6])|uint16(tt.reply[7])<<8 && tt.err == ErrCRC {
				t.Fatal("test reply has a valid CRC")
			}
			b := &asleep{Playback: i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{cmd, reply(tt.reply)}}}
			d := newDev(t, b, sensorstest.NewInstantClock())
			dst, err := sense(d)
			if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), "am2320(") {
				t.Fatalf("Sense = %v, want %v", err, tt.err)
			}
			if !math.IsNaN(dst[0]) || !math.IsNaN(dst[1]) {
				t.Errorf("Sense wrote %v despite the error", dst)
			}
			if got, want := d.CRCErrors(), map[bool]uint64{true: 1, false: 0}[tt.err == ErrCRC]; got != want {
				t.Errorf("CRCErrors() = %d, want %d", got, want)
			}
		})
	}
}

// FuzzSense feeds arbitrary replies: Sense must never panic, must accept
// exactly the well-formed replies with a good CRC, and must stay within
// the registers' scale.
func FuzzSense(f *testing.F) {
	f.Add(example)
	f.Add([]byte{0x03, 0x04, 0x02, 0x92, 0x80, 0x65, 0xF0, 0x56})
	f.Add([]byte{0x03, 0x04, 0x03, 0xE9, 0x00, 0xFA, 0xA0, 0x1B})
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, r []byte) {
		if len(r) != 8 {
			return
		}
		b := &asleep{Playback: i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{cmd, reply(r)}}}
		d := newDev(t, b, sensorstest.NewInstantClock())
		dst, err := sense(d)
		good := CRC16(r[:6]) == uint16(r[6])|uint16(r[7])<<8 && r[0] == 0x03 && r[1] == 0x04 && uint16(r[2])<<8|uint16(r[3]) <= 1000
		if good != (err == nil) {
			t.Fatalf("reply % x: good %v, Sense error %v", r, good, err)
		}
		if err == nil && (math.Abs(dst[0]) > 3276.7 || dst[1] < 0 || dst[1] > 100) {
			t.Fatalf("reply % x: out of scale %v", r, dst)
		}
	})
}

// conformance runs the manual's example through the shared driver
// suite, with a sensor that is awake at the wake-up byte; a failing
// wake-up write is what a sleeping sensor does, so the suite must see it
// tolerated. 8.2.4: at least 800 µs to wake, at least 1.5 ms before the
// read. Halt sends nothing, and the sensor works afterwards.
func conformance() drivertest.Case {
	good := []i2ctest.IO{wake, cmd, reply(example)}
	o := DefaultOpts()
	return drivertest.Case{
		Name: "am2320",
		New: func(b i2c.Bus, clk sensors.Clock) (sensors.Sensor, error) {
			return New(b, clk, o)
		},
		Opts:       &o,
		Addr:       0x5C, // the only address
		Good:       good,
		Want:       []float64{27.7, 82.5},
		Quantities: []sensors.Quantity{sensors.Temperature, sensors.Humidity},
		Waits:      []time.Duration{time.Millisecond, 2 * time.Millisecond},
		WakeUp:     true,
		FailSays:   []string{"", "send read command", "read reply"},
		HaltTwice:  true,
		AfterHalt:  good,
	}
}

func TestConformance(t *testing.T) { drivertest.Run(t, conformance()) }

func BenchmarkSense(b *testing.B) {
	drivertest.Benchmark(b, conformance())
}
