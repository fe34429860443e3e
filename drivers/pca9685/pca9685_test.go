package pca9685

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"

	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/drivers/i2cbus/i2cbustest"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

// initOps is the start-up traffic at addr (Table 4 registers):
// MODE1 = AI|SLEEP (7.3.1, PRE_SCALE is writable only asleep, 7.3.5),
// ALL_LED_ON_L..ALL_LED_OFF_H with the full-off bit (7.3.4), MODE2 =
// OUTDRV (7.3.2), PRE_SCALE, MODE1 = AI (wake).
func initOps(addr uint16, prescale byte) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0x00, 0x30}},
		{Addr: addr, W: []byte{0xFA, 0x00, 0x00, 0x00, 0x10}},
		{Addr: addr, W: []byte{0x01, 0x04}},
		{Addr: addr, W: []byte{0xFE, prescale}},
		{Addr: addr, W: []byte{0x00, 0x20}},
	}
}

// led is one auto-incremented write of LEDn_ON_L, ON_H, OFF_L, OFF_H
// starting at 0x06 + 4n (7.3.3, Table 4).
func led(addr uint16, ch int, onL, onH, offL, offH byte) i2ctest.IO {
	return i2ctest.IO{Addr: addr, W: []byte{0x06 + 4*byte(ch), onL, onH, offL, offH}}
}

func fullOff(addr uint16, ch int) i2ctest.IO { return led(addr, ch, 0, 0, 0, 0x10) }
func fullOn(addr uint16, ch int) i2ctest.IO  { return led(addr, ch, 0, 0x10, 0, 0) }

func TestPrescale(t *testing.T) {
	tests := []struct {
		hz   float64
		want byte
		ok   bool
	}{
		{200, 0x1E, true}, // 7.3.5: "for an output frequency of 200 Hz ... prescale value = 30 (1Eh)"
		{50, 121, true},   // servos: round(122.07) - 1
		{1000, 5, true},
		{1526, 3, true}, // the fastest the hardware allows (7.3.5: minimum 3)
		{24, 253, true},
		{23.8, 255, true},
		{23.7, 0, false}, // would need prescale 256
		{1800, 0, false}, // would need prescale 2
		{0, 0, false},
		{-50, 0, false},
		{math.NaN(), 0, false},
		{math.Inf(1), 0, false},
	}
	for _, tt := range tests {
		got, err := Prescale(tt.hz)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("Prescale(%v) = %d, %v; want %d, ok %v", tt.hz, got, err, tt.want, tt.ok)
		}
	}
	if f := Frequency(0x1E); math.Abs(f-196.89) > 0.01 {
		t.Errorf("Frequency(30) = %v, want 196.89", f)
	}
}

// TestPeriphPrescaleIsOffByOne pins the reason for not wrapping periph's
// driver: its formula, (25 MHz/4096 + f/2) / f without the "- 1",
// gives 31 for 200 Hz where 7.3.5 gives 30.
func TestPeriphPrescaleIsOffByOne(t *testing.T) {
	f := 200 * physic.Hertz
	periph := (25*physic.MegaHertz/4096 + f/2) / f
	ours, err := Prescale(200)
	if err != nil || int64(periph) != int64(ours)+1 {
		t.Fatalf("periph prescale %d, ours %d (%v)", periph, ours, err)
	}
}

func TestOptsValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Opts)
		field string
	}{
		{"default", func(*Opts) {}, ""},
		{"last channel", func(o *Opts) { o.Channel = 15 }, ""},
		{"servo rate", func(o *Opts) { o.Frequency = 50 }, ""},
		{"safe on", func(o *Opts) { o.SafeState = On }, ""},
		{"all address pins high", func(o *Opts) { o.I2C.Address = 0x7F }, "address"},
		{"channel 16", func(o *Opts) { o.Channel = 16 }, "channel"},
		{"negative channel", func(o *Opts) { o.Channel = -1 }, "channel"},
		{"too fast", func(o *Opts) { o.Frequency = 25000 }, "frequency"},
		{"too slow", func(o *Opts) { o.Frequency = 10 }, "frequency"},
		{"no frequency", func(o *Opts) { o.Frequency = 0 }, "frequency"},
		{"safe state", func(o *Opts) { o.SafeState = "half" }, "safe_state"},
		{"bus", func(o *Opts) { o.I2C.Bus = "" }, "bus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOpts()
			tt.edit(&o)
			err := o.Validate()
			var fe *sensors.FieldError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate() = %v", err)
			case tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field):
				t.Fatalf("Validate() = %v, want a FieldError for %q", err, tt.field)
			}
		})
	}
}

func TestChipStartAndChannels(t *testing.T) {
	ops := append(initOps(0x41, 0x1E),
		fullOff(0x41, 3),
		fullOn(0x41, 15),                      // a fan whose safe state is on
		led(0x41, 3, 0x00, 0x00, 0x33, 0x03),  // 20 %: 819 counts, as 7.3.3 Example 1's duty
		led(0x41, 15, 0x00, 0x00, 0x00, 0x08), // 50 %: off at 2048
		fullOn(0x41, 3),
		led(0x41, 3, 0x00, 0x00, 0x01, 0x00), // 1/4096, the smallest step
		fullOff(0x41, 3),                     // below half a step rounds to full off
		fullOn(0x41, 15),                     // Halt: safe on
	)
	pb := &i2ctest.Playback{DontPanic: true, Ops: ops}
	clk := sensorstest.NewInstantClock()
	c, err := NewChip(i2cbus.NewBus("1", pb), clk, 0x41, 200)
	if err != nil {
		t.Fatal(err)
	}
	if n, last, _ := clk.Waits(); n != 1 || last != 500*time.Microsecond {
		t.Errorf("waited %d times, last %v; want once, 500µs (7.3.1 oscillator start-up)", n, last)
	}
	o := DefaultOpts()
	o.I2C.Address, o.Channel = 0x41, 3
	heater, err := c.Channel("heater", o)
	if err != nil {
		t.Fatal(err)
	}
	o.Channel, o.SafeState = 15, On
	fan, err := c.Channel("fan", o)
	if err != nil {
		t.Fatal(err)
	}
	if heater.Level() != 0 || fan.Level() != 1 {
		t.Errorf("levels after open %v, %v; want the safe states 0, 1", heater.Level(), fan.Level())
	}
	if got := heater.String(); got != "pca9685(i2c 1, 0x41, channel 3)" {
		t.Errorf("String() = %q", got)
	}
	for _, step := range []struct {
		d     *Dev
		level float64
	}{{heater, 0.2}, {fan, 0.5}, {heater, 1}, {heater, 1.0 / 4096}, {heater, 0.0001}} {
		if err := step.d.Set(step.level); err != nil {
			t.Fatalf("%s Set(%v) = %v", step.d, step.level, err)
		}
		if step.d.Level() != step.level {
			t.Errorf("%s Level() = %v, want %v", step.d, step.d.Level(), step.level)
		}
	}
	if err := fan.Halt(); err != nil {
		t.Fatal(err)
	}
	if err := fan.Set(0.5); !errors.Is(err, ErrHalted) {
		t.Errorf("Set after Halt = %v", err)
	}
	for _, bad := range []float64{-0.01, 1.01, math.NaN()} {
		if err := heater.Set(bad); err == nil {
			t.Errorf("Set(%v) succeeded", bad)
		}
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestChannelClaims(t *testing.T) {
	ops := append(initOps(Addr, 121), fullOff(Addr, 0), fullOff(Addr, 1), fullOff(Addr, 0), fullOff(Addr, 0))
	pb := &i2ctest.Playback{DontPanic: true, Ops: ops}
	c, err := NewChip(pb, sensorstest.NewInstantClock(), Addr, 50)
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOpts()
	o.Frequency = 50
	a, err := c.Channel("a", o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Channel("b", o); !errors.Is(err, ErrChannelUsed) || !strings.Contains(err.Error(), `used by "a"`) {
		t.Fatalf("second claim = %v", err)
	}
	o2 := o
	o2.Channel, o2.Frequency = 1, 200
	if _, err := c.Channel("c", o2); !errors.Is(err, ErrFrequency) || !strings.Contains(err.Error(), "prescale 121") {
		t.Fatalf("other frequency = %v", err)
	}
	o2.Frequency, o2.Channel = 50.1, 16 // the chip's prescale step, but no such channel
	if _, err := c.Channel("d", o2); err == nil {
		t.Fatal("channel 16 opened")
	}
	o2.Channel = 1
	if _, err := c.Channel("d", o2); err != nil {
		t.Fatalf("50.1 Hz is the chip's prescale step too: %v", err)
	}
	if err := a.Halt(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Channel("b", o); err != nil {
		t.Fatalf("claim after Halt = %v", err)
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestErrors(t *testing.T) {
	t.Run("no chip", func(t *testing.T) {
		_, err := NewChip(i2cbus.NewBus("1", i2cbustest.NewDeadBus()), sensorstest.NewInstantClock(), Addr, 200)
		if !errors.Is(err, i2cbustest.ErrBus) || !strings.Contains(err.Error(), "pca9685(i2c 1, 0x40): sleep with auto-increment") {
			t.Fatalf("NewChip = %v", err)
		}
	})
	t.Run("NACK at prescale", func(t *testing.T) {
		b := i2cbustest.NewBus(initOps(Addr, 0x1E)[:4])
		b.Fail = 3 // the prescale write
		_, err := NewChip(b, sensorstest.NewInstantClock(), Addr, 200)
		if !errors.Is(err, i2cbustest.ErrBus) || !strings.Contains(err.Error(), "prescale") {
			t.Fatalf("NewChip = %v", err)
		}
		if err := b.Check(); err != nil {
			t.Error(err)
		}
	})
	t.Run("bad chip options", func(t *testing.T) {
		if _, err := NewChip(i2cbustest.NewDeadBus(), nil, 0x80, 200); err == nil {
			t.Error("address 0x80 accepted")
		}
		if _, err := NewChip(i2cbustest.NewDeadBus(), nil, Addr, 5000); err == nil {
			t.Error("5 kHz accepted")
		}
	})
	t.Run("oscillator wait is on the injected clock", func(t *testing.T) {
		pb := &i2ctest.Playback{DontPanic: true, Ops: initOps(Addr, 0x1E)}
		clk := sensorstest.NewInstantClock()
		if _, err := NewChip(pb, clk, Addr, 200); err != nil {
			t.Fatal(err)
		}
		if _, _, total := clk.Waits(); total != wakeWait {
			t.Errorf("waited %v on the injected clock, want %v", total, wakeWait)
		}
	})
	t.Run("failed Set drives the safe state", func(t *testing.T) {
		// 5 init writes, the open's safe write, then Set fails (op 6:
		// 0.3 is round(1228.8) = 0x04CD counts) and the driver writes the
		// safe state (full on) again.
		ops := append(initOps(Addr, 0x1E), fullOn(Addr, 7), led(Addr, 7, 0, 0, 0xCD, 0x04), fullOn(Addr, 7))
		b := i2cbustest.NewBus(ops)
		b.Fail = 6
		c, err := NewChip(b, sensorstest.NewInstantClock(), Addr, 200)
		if err != nil {
			t.Fatal(err)
		}
		o := DefaultOpts()
		o.Channel, o.SafeState = 7, On
		d, err := c.Channel("pump", o)
		if err != nil {
			t.Fatal(err)
		}
		err = d.Set(0.3)
		if !errors.Is(err, i2cbustest.ErrBus) || !strings.Contains(err.Error(), "channel 7): set level 0.3") {
			t.Fatalf("Set = %v", err)
		}
		if d.Level() != 1 {
			t.Errorf("Level() = %v after the safe write, want 1", d.Level())
		}
		if err := b.Check(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("failed safe write at open frees the channel", func(t *testing.T) {
		b := i2cbustest.NewBus(initOps(Addr, 0x1E), []i2ctest.IO{fullOff(Addr, 0), fullOff(Addr, 0)})
		b.Fail = 5 // the first safe write
		c, err := NewChip(b, sensorstest.NewInstantClock(), Addr, 200)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Channel("x", DefaultOpts()); !errors.Is(err, i2cbustest.ErrBus) {
			t.Fatalf("Channel = %v", err)
		}
		if _, err := c.Channel("x", DefaultOpts()); err != nil {
			t.Fatalf("Channel after a failed open = %v", err)
		}
		if err := b.Check(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzOptsValidate checks that Validate returns only FieldErrors, and that
// valid options always give a prescale the hardware accepts (7.3.5) and
// registers inside the LED block.
func FuzzOptsValidate(f *testing.F) {
	f.Add("1", uint16(0x40), 0, 200.0, "off")
	f.Add("1", uint16(0x7f), 16, 1527.0, "on")
	f.Add("", uint16(0x41), -1, 23.7, "half")
	f.Add("I2C1", uint16(0x70), 15, 50.0, "on")
	f.Fuzz(func(t *testing.T, bus string, addr uint16, ch int, hz float64, safe string) {
		o := Opts{I2C: i2cbus.Opts{Bus: bus, Address: addr}, Channel: ch, Frequency: hz, SafeState: safe}
		err := o.Validate()
		if err != nil {
			var fe *sensors.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %v, not a FieldError", err)
			}
			return
		}
		p, err := Prescale(hz)
		if err != nil || p < 3 {
			t.Fatalf("valid frequency %v gives prescale %d, %v", hz, p, err)
		}
		if reg := 0x06 + 4*ch; reg+3 > 0x45 {
			t.Fatalf("channel %d maps to register %#x beyond LED15_OFF_H", ch, reg)
		}
	})
}
