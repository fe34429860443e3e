package veml7700

import (
	"context"
	"errors"
	"math"
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

// Traffic, from the datasheet's command code table and its write/read
// word protocols (command code, then LSB, MSB).
func wr(reg byte, v uint16) i2ctest.IO {
	return i2ctest.IO{Addr: Addr, W: []byte{reg, byte(v), byte(v >> 8)}}
}

func rd(reg byte, v uint16) i2ctest.IO {
	return i2ctest.IO{Addr: Addr, W: []byte{reg}, R: []byte{byte(v), byte(v >> 8)}}
}

// configure is a (re)configuration to ALS_CONF value c: shut down with
// the new settings, power saving off, power on.
func configure(c uint16) []i2ctest.IO {
	return []i2ctest.IO{wr(0x00, c|1), wr(0x03, 0), wr(0x00, c)}
}

func join(parts ...[]i2ctest.IO) []i2ctest.IO {
	var out []i2ctest.IO
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// ALS_CONF_0 values (datasheet "ALS_CONF_0"): ALS_GAIN in bits 12:11,
// ALS_IT in bits 9:6.
const (
	confEighth100 = 0x1000 // gain 1/8 (10), 100 ms (0000)
	confEighth50  = 0x1200 // 1/8, 50 ms (1000)
	confEighth25  = 0x1300 // 1/8, 25 ms (1100)
	confFourth100 = 0x1800 // 1/4 (11), 100 ms
	conf1x100     = 0x0000 // 1 (00), 100 ms
	conf2x100     = 0x0800 // 2 (01), 100 ms
	conf2x200     = 0x0840 // 2, 200 ms (0001)
	conf2x800     = 0x08C0 // 2, 800 ms (0011)
)

func TestConf(t *testing.T) {
	tests := []struct {
		gain string
		it   time.Duration
		want uint16
	}{
		{GainEighth, 100 * time.Millisecond, confEighth100},
		{GainEighth, 50 * time.Millisecond, confEighth50},
		{GainEighth, 25 * time.Millisecond, confEighth25},
		{GainFourth, 100 * time.Millisecond, confFourth100},
		{Gain1, 100 * time.Millisecond, conf1x100},
		{Gain2, 100 * time.Millisecond, conf2x100},
		{Gain2, 200 * time.Millisecond, conf2x200},
		{Gain2, 400 * time.Millisecond, 0x0880},
		{Gain2, 800 * time.Millisecond, conf2x800},
		{Gain1, 800 * time.Millisecond, 0x00C0},
	}
	for _, tt := range tests {
		if got := conf(setting{tt.gain, tt.it}); got != tt.want {
			t.Errorf("conf(%s, %v) = %#04x, want %#04x", tt.gain, tt.it, got, tt.want)
		}
	}
}

func TestLux(t *testing.T) {
	tests := []struct {
		name    string
		als     uint16
		gain    float64
		it      time.Duration
		correct bool
		want    float64
	}{
		// Resolution table: 0.0042 lx/count at gain 2, 800 ms; 0.5376 at
		// gain 1/8, 100 ms; 2.1504 at gain 1/8, 25 ms.
		{"gain 2 800ms", 1000, 2, 800 * time.Millisecond, true, 4.2},
		{"gain 1/8 100ms", 1000, 0.125, 100 * time.Millisecond, false, 537.6},
		{"gain 1/4 100ms", 150, 0.25, 100 * time.Millisecond, true, 40.32},
		{"full scale 1/8 25ms", 65535, 0.125, 25 * time.Millisecond, false, 65535 * 2.1504},
		{"corrected above 1000 lx", 5000, 0.125, 100 * time.Millisecond, true, 3131.9384601681986},
		{"not corrected when off", 5000, 0.125, 100 * time.Millisecond, false, 2688},
		{"not corrected at 1000 lx or less", 1860, 0.125, 100 * time.Millisecond, true, 1860 * 0.5376},
		{"dark", 0, 2, 800 * time.Millisecond, true, 0},
	}
	for _, tt := range tests {
		if got := Lux(tt.als, tt.gain, tt.it, tt.correct); !near(got, tt.want) {
			t.Errorf("%s: Lux = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestCorrectWorkedExample is the application note's example (p.5):
// 1500 lx corrects to 1658 lx.
func TestCorrectWorkedExample(t *testing.T) {
	if got := Correct(1500); math.Round(got) != 1658 {
		t.Errorf("Correct(1500) = %v, want ≈ 1658", got)
	}
}

func TestOptsValidate(t *testing.T) {
	drivertest.RunOpts(t, DefaultOpts, (*Opts).Validate, func(o Opts) error {
		_, err := New(i2cbustest.NewDeadBus(), nil, o)
		return err
	}, []drivertest.OptsRow[Opts]{
		{Name: "default", Edit: func(*Opts) {}},
		{Name: "gain 1/8 25ms", Edit: func(o *Opts) { o.Gain, o.IntegrationTime = GainEighth, 25*time.Millisecond }},
		{Name: "gain 2 800ms", Edit: func(o *Opts) { o.Gain, o.IntegrationTime = Gain2, 800*time.Millisecond }},
		{Name: "gain 1/4 no correction", Edit: func(o *Opts) { o.Gain, o.Correction = GainFourth, false }},
		{Name: "gain 1", Edit: func(o *Opts) { o.Gain = Gain1 }},
		{Name: "gain 0.125 spelled as a number", Edit: func(o *Opts) { o.Gain = "0.125" }, Field: "gain"},
		{Name: "gain 4", Edit: func(o *Opts) { o.Gain = "4" }, Field: "gain"},
		{Name: "integration 300ms", Edit: func(o *Opts) { o.IntegrationTime = 300 * time.Millisecond }, Field: "integration_time"},
		{Name: "integration unset", Edit: func(o *Opts) { o.IntegrationTime = 0 }, Field: "integration_time"},
		{Name: "address 0x48 is the VEML6030's", Edit: func(o *Opts) { o.Address = 0x48 }, Field: "address"},
		{Name: "address out of range", Edit: func(o *Opts) { o.Address = 0x02 }, Field: "address"},
		{Name: "bus", Edit: func(o *Opts) { o.Bus = "" }, Field: "bus"},
	})
}

// settle is the wait after a (re)configuration: 2.5 ms start-up
// (application note) plus 1.25 integration times.
func settle(it time.Duration) time.Duration { return 2500*time.Microsecond + it + it/4 }

// TestAutoRange walks the application note's flow (fig. 24): start at
// gain 1/8 and 100 ms; at 100 counts or less raise the gain, then the
// time; above 10,000 counts shorten the time.
func TestAutoRange(t *testing.T) {
	tests := []struct {
		name  string
		ops   []i2ctest.IO
		want  float64
		waits time.Duration
		gain  string
		it    time.Duration
	}{
		{"in band at the start", join(configure(confEighth100), []i2ctest.IO{rd(0x04, 1000)}),
			537.6, settle(100 * time.Millisecond), GainEighth, 100 * time.Millisecond},
		{"dim: gain up once", join(
			configure(confEighth100), []i2ctest.IO{rd(0x04, 50)},
			configure(confFourth100), []i2ctest.IO{rd(0x04, 150)},
		), 40.32, 2 * settle(100*time.Millisecond), GainFourth, 100 * time.Millisecond},
		{"bright: time down twice, stops at 25 ms", join(
			configure(confEighth100), []i2ctest.IO{rd(0x04, 20000)},
			configure(confEighth50), []i2ctest.IO{rd(0x04, 18000)},
			configure(confEighth25), []i2ctest.IO{rd(0x04, 11000)},
		), Correct(11000 * 2.1504), settle(100*time.Millisecond) + settle(50*time.Millisecond) + settle(25*time.Millisecond), GainEighth, 25 * time.Millisecond},
		{"bright: time down once, corrected", join(
			configure(confEighth100), []i2ctest.IO{rd(0x04, 20000)},
			configure(confEighth50), []i2ctest.IO{rd(0x04, 9000)},
		), 14091.75986822125, settle(100*time.Millisecond) + settle(50*time.Millisecond), GainEighth, 50 * time.Millisecond},
		// Darkness: three steps (1/4, 1, 2 at 100 ms) use up MaxSteps;
		// the reading at gain 2 is reported and the next Sense starts at
		// 200 ms.
		{"dark: steps run out", join(
			configure(confEighth100), []i2ctest.IO{rd(0x04, 0)},
			configure(confFourth100), []i2ctest.IO{rd(0x04, 0)},
			configure(conf1x100), []i2ctest.IO{rd(0x04, 1)},
			configure(conf2x100), []i2ctest.IO{rd(0x04, 3)},
		), 3 * 0.0336, 4 * settle(100*time.Millisecond), Gain2, 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pb := &i2ctest.Playback{DontPanic: true, Ops: tt.ops}
			clk := sensorstest.NewInstantClock()
			d, _ := New(pb, clk, DefaultOpts())
			dst := []float64{math.NaN()}
			if err := d.Sense(context.Background(), dst); err != nil || !near(dst[0], tt.want) {
				t.Fatalf("Sense = %v, %v; want %v", dst[0], err, tt.want)
			}
			if _, _, total := clk.Waits(); total != tt.waits {
				t.Errorf("waited %v in total, want %v", total, tt.waits)
			}
			if g, it := d.Setting(); g != tt.gain || it != tt.it {
				t.Errorf("Setting() = %s, %v; want %s, %v", g, it, tt.gain, tt.it)
			}
			if err := pb.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestAutoRangeContinues: after the steps ran out, the next Sense
// reprograms the chip at the next rung and reads there.
func TestAutoRangeContinues(t *testing.T) {
	pb := &i2ctest.Playback{DontPanic: true, Ops: join(
		configure(confEighth100), []i2ctest.IO{rd(0x04, 0)},
		configure(confFourth100), []i2ctest.IO{rd(0x04, 0)},
		configure(conf1x100), []i2ctest.IO{rd(0x04, 0)},
		configure(conf2x100), []i2ctest.IO{rd(0x04, 0)},
		configure(conf2x200), []i2ctest.IO{rd(0x04, 500)},
		[]i2ctest.IO{rd(0x00, conf2x200), rd(0x04, 400)}, // steady: no reconfiguration
	)}
	d, _ := New(pb, sensorstest.NewInstantClock(), DefaultOpts())
	dst := make([]float64, 1)
	for i, want := range []float64{0, 500 * 0.0168, 400 * 0.0168} {
		if err := d.Sense(context.Background(), dst); err != nil || !near(dst[0], want) {
			t.Fatalf("Sense %d = %v, %v; want %v", i, dst[0], err, want)
		}
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSaturated(t *testing.T) {
	t.Run("fixed", func(t *testing.T) {
		pb := &i2ctest.Playback{DontPanic: true, Ops: join(configure(confEighth25), []i2ctest.IO{rd(0x04, 0xFFFF)})}
		o := DefaultOpts()
		o.Gain, o.IntegrationTime = GainEighth, 25*time.Millisecond
		d, _ := New(pb, sensorstest.NewInstantClock(), o)
		dst := []float64{-1}
		if err := d.Sense(context.Background(), dst); !errors.Is(err, ErrSaturated) || dst[0] != -1 {
			t.Fatalf("Sense = %v, %v", dst[0], err)
		}
		if d.Saturations() != 1 {
			t.Errorf("Saturations() = %d", d.Saturations())
		}
	})
	t.Run("auto at the least sensitive rung", func(t *testing.T) {
		pb := &i2ctest.Playback{DontPanic: true, Ops: join(
			configure(confEighth100), []i2ctest.IO{rd(0x04, 0xFFFF)},
			configure(confEighth50), []i2ctest.IO{rd(0x04, 0xFFFF)},
			configure(confEighth25), []i2ctest.IO{rd(0x04, 0xFFFF)},
		)}
		d, _ := New(pb, sensorstest.NewInstantClock(), DefaultOpts())
		if err := d.Sense(context.Background(), make([]float64, 1)); !errors.Is(err, ErrSaturated) {
			t.Fatalf("Sense = %v", err)
		}
		if err := pb.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestBrownOut: ALS_CONF reads back its reset value, so the driver
// reprograms the chip instead of trusting a reading at the wrong gain.
func TestBrownOut(t *testing.T) {
	o := DefaultOpts()
	o.Gain = GainEighth
	pb := &i2ctest.Playback{DontPanic: true, Ops: join(
		configure(confEighth100), []i2ctest.IO{rd(0x04, 1000)},
		[]i2ctest.IO{rd(0x00, 0x0001)}, // reset: gain 1, shut down
		configure(confEighth100), []i2ctest.IO{rd(0x04, 1000)},
	)}
	clk := sensorstest.NewInstantClock()
	d, _ := New(pb, clk, o)
	dst := make([]float64, 1)
	for range 2 {
		if err := d.Sense(context.Background(), dst); err != nil || !near(dst[0], 537.6) {
			t.Fatalf("Sense = %v, %v", dst[0], err)
		}
	}
	if d.Resets() != 1 {
		t.Errorf("Resets() = %d, want 1", d.Resets())
	}
	if n, _, _ := clk.Waits(); n != 2 {
		t.Errorf("waited %d times, want 2", n)
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSenseDoesNotAllocate(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []i2ctest.IO
		prep func(*Dev)
	}{
		// The steady path is the drivertest suite's.
		{"reconfigure and step", join(
			configure(confEighth100), []i2ctest.IO{rd(0x04, 50)},
			configure(confFourth100), []i2ctest.IO{rd(0x04, 150)},
		), func(d *Dev) { d.running, d.rung = false, ladderStart }},
	} {
		pb := &i2ctest.Playback{DontPanic: true}
		d, _ := New(i2cbus.NewBus("1", pb), sensorstest.NewInstantClock(), DefaultOpts())
		dst := make([]float64, 1)
		allocs := testing.AllocsPerRun(50, func() {
			pb.Ops, pb.Count = tc.ops, 0
			tc.prep(d)
			if err := d.Sense(context.Background(), dst); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: Sense allocates %v times per reading, want 0", tc.name, allocs)
		}
	}
}

func FuzzOptsValidate(f *testing.F) {
	f.Add("1", uint16(0x10), "auto", int64(100*time.Millisecond), true)
	f.Add("1", uint16(0x10), "1/8", int64(25*time.Millisecond), false)
	f.Add("", uint16(0x48), "2", int64(800*time.Millisecond), true)
	f.Add("1", uint16(0x10), "1/3", int64(-1), true)
	f.Fuzz(func(t *testing.T, bus string, addr uint16, gain string, it int64, corr bool) {
		o := Opts{Opts: i2cbus.Opts{Bus: bus, Address: addr}, Gain: gain, IntegrationTime: time.Duration(it), Correction: corr}
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
		// The register value decodes back to the setting, and no
		// reserved bit or ALS_SD is set.
		s := d.setting()
		c := conf(s)
		if c&^0x1BC0 != 0 || byte(c>>11&3) != gains[s.gain].code || byte(c>>6&0xF) != its[s.it] {
			t.Fatalf("conf(%+v) = %#04x", s, c)
		}
	})
}

func BenchmarkSenseSteady(b *testing.B) {
	bus := i2cbustest.NewBus([]i2ctest.IO{rd(0x00, confEighth100), rd(0x04, 1000)})
	bus.Loop = true
	d, _ := New(i2cbus.NewBus("1", bus), sensorstest.NewInstantClock(), DefaultOpts())
	d.running = true
	dst := make([]float64, 1)
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Sense(context.Background(), dst); err != nil {
			b.Fatal(err)
		}
	}
}

// TestConformance runs fixed settings and the automatic default through
// the shared driver suite: the first Sense programs the chip and waits
// one settling time; later ones confirm ALS_CONF and read ALS without
// waiting. Halt sets ALS_SD; the next Sense programs the chip again.
func TestConformance(t *testing.T) {
	for _, tt := range []struct {
		name string
		gain string
		it   time.Duration
		conf uint16
		als  uint16
		want float64
	}{
		{"1/8 100ms", GainEighth, 100 * time.Millisecond, confEighth100, 1000, 537.6},
		{"1/8 100ms, corrected above 1000 lx", GainEighth, 100 * time.Millisecond, confEighth100, 5000, 3131.9384601681986},
		{"2 800ms", Gain2, 800 * time.Millisecond, conf2x800, 1000, 4.2},
		{"2 800ms, dark", Gain2, 800 * time.Millisecond, conf2x800, 0, 0},
		{"auto in band at the start", GainAuto, 100 * time.Millisecond, confEighth100, 1000, 537.6},
	} {
		t.Run(tt.name, func(t *testing.T) {
			first := join(configure(tt.conf), []i2ctest.IO{rd(0x04, tt.als)})
			o := DefaultOpts()
			o.Gain, o.IntegrationTime = tt.gain, tt.it
			drivertest.Run(t, drivertest.Case{
				Name: "veml7700",
				New: func(b i2c.Bus, clk sensors.Clock) (sensors.Sensor, error) {
					return New(b, clk, o)
				},
				Opts:         &o,
				Addr:         0x10, // the only address
				First:        first,
				Good:         []i2ctest.IO{rd(0x00, tt.conf), rd(0x04, tt.als)},
				Want:         []float64{tt.want},
				Tolerance:    1e-9 * math.Max(1, tt.want),
				Quantities:   []sensors.Quantity{sensors.Illuminance},
				FirstWaits:   []time.Duration{settle(tt.it)},
				Waits:        []time.Duration{},
				FailSays:     []string{"shut down", "disable power saving", "write ALS_CONF", "read ALS"},
				Halt:         []i2ctest.IO{wr(0x00, tt.conf|1)},
				HaltFailSays: "shut down",
				AfterHalt:    first,
			})
		})
	}
}
