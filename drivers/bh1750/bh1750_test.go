package bh1750

import (
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
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// script is the traffic of one reading at addr: Power On, MTreg high and
// low bits, the one-time measurement instruction (p.5, p.11), then the
// two-byte result (p.7).
func script(addr uint16, mtHigh, mtLow, op byte, reply []byte) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0x01}},
		{Addr: addr, W: []byte{mtHigh}},
		{Addr: addr, W: []byte{mtLow}},
		{Addr: addr, W: []byte{op}},
		{Addr: addr, R: reply},
	}
}

func TestLux(t *testing.T) {
	tests := []struct {
		count uint16
		mt    int
		want  float64
	}{
		// p.7, "measurement sequence example": High Byte 1000_0011, Low Byte
		// 1001_0000 -> (2^15 + 2^9 + 2^8 + 2^7 + 2^4) / 1.2 ≈ 28067 lx.
		{0x8390, 69, 33680 / 1.2},
		{0, 69, 0},
		{0xFFFF, 69, 65535 / 1.2},
		{120, 138, 50}, // twice the measurement time: half the lux per count (p.11)
		{120, 31, 120 / 1.2 * 69 / 31.0},
	}
	for _, tt := range tests {
		if got := Lux(tt.count, tt.mt); !near(got, tt.want) {
			t.Errorf("Lux(%#04x, %d) = %v, want %v", tt.count, tt.mt, got, tt.want)
		}
	}
	if got := Lux(0x8390, 69); math.Round(got) != 28067 {
		t.Errorf("datasheet example gives %v, want ≈ 28067", got)
	}
}

func TestOptsValidate(t *testing.T) {
	drivertest.RunOpts(t, DefaultOpts, (*Opts).Validate, func(o Opts) error {
		_, err := New(i2cbustest.NewDeadBus(), nil, o)
		return err
	}, []drivertest.OptsRow[Opts]{
		{Name: "default", Edit: func(*Opts) {}},
		{Name: "alternative address", Edit: func(o *Opts) { o.Address = AltAddr }},
		{Name: "high2", Edit: func(o *Opts) { o.Resolution = High2 }},
		{Name: "low", Edit: func(o *Opts) { o.Resolution = Low }},
		{Name: "mtreg min", Edit: func(o *Opts) { o.MTreg = 31 }},
		{Name: "mtreg max", Edit: func(o *Opts) { o.MTreg = 254 }},
		{Name: "mtreg below", Edit: func(o *Opts) { o.MTreg = 30 }, Field: "mtreg"},
		{Name: "mtreg above", Edit: func(o *Opts) { o.MTreg = 255 }, Field: "mtreg"},
		{Name: "mtreg unset", Edit: func(o *Opts) { o.MTreg = 0 }, Field: "mtreg"},
		{Name: "unknown resolution", Edit: func(o *Opts) { o.Resolution = "medium" }, Field: "resolution"},
		{Name: "address", Edit: func(o *Opts) { o.Address = 0x7a }, Field: "address"},
		{Name: "bus", Edit: func(o *Opts) { o.Bus = "" }, Field: "bus"},
	})
}

// TestSense runs every resolution and MTreg row through the shared driver
// suite, which checks the traffic (the one-time opcodes, not periph's
// continuous mode), the value and the measurement time of each.
func TestSense(t *testing.T) {
	tests := []struct {
		name          string
		res           string
		mt            int
		addr          uint16
		mtHigh, mtLow byte // p.11: 01000_MT[7:5], 011_MT[4:0]
		op            byte
		reply         []byte
		want          float64
		wait          time.Duration
	}{
		{"datasheet example", High, 69, 0x23, 0x42, 0x65, 0x20, []byte{0x83, 0x90}, 33680 / 1.2, 180 * time.Millisecond},
		{"high2 halves", High2, 69, Addr, 0x42, 0x65, 0x21, []byte{0x83, 0x90}, 33680 / 1.2 / 2, 180 * time.Millisecond},
		{"low", Low, 69, AltAddr, 0x42, 0x65, 0x23, []byte{0x00, 0x78}, 100, 24 * time.Millisecond},
		// p.11 example: MTreg 138 (1000_1010) doubles time and sensitivity.
		{"mtreg 138", High, 138, Addr, 0x44, 0x6A, 0x20, []byte{0x00, 0xF0}, 100, 360 * time.Millisecond},
		{"mtreg 31", High, 31, Addr, 0x40, 0x7F, 0x20, []byte{0x00, 0x1F}, 31 / 1.2 * 69 / 31, (180*time.Millisecond*31 + 68) / 69},
		{"mtreg 254", High, 254, Addr, 0x47, 0x7E, 0x20, []byte{0xFF, 0xFF}, 65535 / 1.2 * 69 / 254, (180*time.Millisecond*254 + 68) / 69},
		{"darkness", High, 69, Addr, 0x42, 0x65, 0x20, []byte{0, 0}, 0, 180 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := script(tt.addr, tt.mtHigh, tt.mtLow, tt.op, tt.reply)
			o := DefaultOpts()
			o.Resolution, o.MTreg, o.Address = tt.res, tt.mt, tt.addr
			drivertest.Run(t, drivertest.Case{
				Name: "bh1750",
				New: func(b i2c.Bus, clk sensors.Clock) (sensors.Sensor, error) {
					return New(b, clk, o)
				},
				Opts:       &o,
				Addr:       tt.addr,
				Good:       good,
				Want:       []float64{tt.want},
				Tolerance:  1e-9 * math.Max(1, tt.want),
				Quantities: []sensors.Quantity{sensors.Illuminance},
				Waits:      []time.Duration{tt.wait},
				FailSays:   []string{"write instruction", "write instruction", "write instruction", "write instruction", "read measurement"},
				// Halt sends Power Down (0x00, p.5), not the reset opcode
				// 0x07 that periph's bh1750 writes; the next reading powers
				// the chip on again.
				Halt:         []i2ctest.IO{{Addr: tt.addr, W: []byte{0x00}}},
				HaltFailSays: "power down",
				AfterHalt:    good,
			})
		})
	}
}

func FuzzOptsValidate(f *testing.F) {
	f.Add("1", uint16(0x23), "high", 69)
	f.Add("", uint16(0x5c), "low", 31)
	f.Add("1", uint16(0x7a), "high2", 254)
	f.Add("I2C1", uint16(0x23), "x", 255)
	f.Fuzz(func(t *testing.T, bus string, addr uint16, res string, mt int) {
		o := Opts{Opts: i2cbus.Opts{Bus: bus, Address: addr}, Resolution: res, MTreg: mt}
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
		// Valid options always make MTreg bytes that decode back to MTreg.
		if got := int(d.cmds[1][0]&0x07)<<5 | int(d.cmds[2][0]&0x1F); got != mt {
			t.Fatalf("MTreg %d encoded as %#02x %#02x", mt, d.cmds[1][0], d.cmds[2][0])
		}
	})
}
