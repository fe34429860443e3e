package i2cbus

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"

	"github.com/edged/edged/drivers/i2cbus/i2cbustest"
	"github.com/edged/edged/sensors"
)

func TestOptsValidate(t *testing.T) {
	tests := []struct {
		name  string
		opts  Opts
		field string // "" means valid
		msg   string
	}{
		{"default", DefaultOpts(0x44), "", ""},
		{"lowest", Opts{Bus: "1", Address: 0x03}, "", ""},
		{"highest", Opts{Bus: "1", Address: 0x77}, "", ""},
		{"alias bus", Opts{Bus: "I2C1", Address: 0x23}, "", ""},
		{"empty bus", Opts{Address: 0x44}, "bus", "must not be empty"},
		{"zero address", Opts{Bus: "1"}, "address", "address 0x0 is out of range 0x03..0x77"},
		{"general call range", Opts{Bus: "1", Address: 0x02}, "address", "address 0x2 is out of range 0x03..0x77"},
		{"reserved high", Opts{Bus: "1", Address: 0x78}, "address", "address 0x78 is out of range 0x03..0x77"},
		{"issue example", Opts{Bus: "1", Address: 0x7a}, "address", "address 0x7a is out of range 0x03..0x77"},
		{"10-bit", Opts{Bus: "1", Address: 0x3ff}, "address", "address 0x3ff is out of range 0x03..0x77"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe *sensors.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %v, want a *sensors.FieldError", err)
			}
			if fe.Field != tt.field || !strings.Contains(fe.Err.Error(), tt.msg) {
				t.Errorf("Validate() = field %q, %q; want field %q containing %q", fe.Field, fe.Err, tt.field, tt.msg)
			}
		})
	}
}

func TestI2CAddr(t *testing.T) {
	o := Opts{Bus: "3", Address: 0x5c}
	if bus, addr := o.I2CAddr(); bus != "3" || addr != 0x5c {
		t.Errorf("I2CAddr() = %q, %#x; want \"3\", 0x5c", bus, addr)
	}
}

// refs is what i2creg lists on a Pi with I2C enabled.
func refs() []*i2creg.Ref {
	return []*i2creg.Ref{{Name: "/dev/i2c-1", Aliases: []string{"I2C1"}, Number: 1}}
}

func TestKnown(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"/dev/i2c-1", true},
		{"I2C1", true},
		{"1", true},
		{"01", true}, // i2creg.Open parses numbers with Atoi too
		{"0", false},
		{"I2C0", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := known(tt.name, refs()); got != tt.want {
			t.Errorf("known(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	noInit := func() error { return nil }
	okOpen := func(string) (i2c.BusCloser, error) { return &i2ctest.Playback{}, nil }

	t.Run("missing bus names the bus and the fix", func(t *testing.T) {
		_, err := open("7", noInit, refs, okOpen)
		if !errors.Is(err, ErrNoBus) {
			t.Fatalf("open = %v, want ErrNoBus", err)
		}
		for _, want := range []string{`"7"`, "raspi-config nonint do_i2c 0", "dtparam=i2c_arm=on", "ls /dev/i2c-*"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		}
	})
	t.Run("no buses at all", func(t *testing.T) {
		_, err := open("1", noInit, func() []*i2creg.Ref { return nil }, okOpen)
		if !errors.Is(err, ErrNoBus) {
			t.Fatalf("open = %v, want ErrNoBus", err)
		}
	})
	t.Run("open failure is wrapped", func(t *testing.T) {
		perm := errors.New("permission denied")
		_, err := open("1", noInit, refs, func(string) (i2c.BusCloser, error) { return nil, perm })
		if !errors.Is(err, perm) || errors.Is(err, ErrNoBus) || !strings.HasPrefix(err.Error(), "i2cbus: ") {
			t.Fatalf("open = %v, want wrapped permission error", err)
		}
	})
	t.Run("host init failure", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := open("1", func() error { return boom }, refs, okOpen)
		if !errors.Is(err, boom) {
			t.Fatalf("open = %v, want wrapped init error", err)
		}
	})
	t.Run("alias opens", func(t *testing.T) {
		var got string
		b, err := open("I2C1", noInit, refs, func(n string) (i2c.BusCloser, error) { got = n; return &i2ctest.Playback{}, nil })
		if err != nil || b == nil || got != "I2C1" {
			t.Fatalf("open = %v, %v (opened %q)", b, err, got)
		}
	})
}

// TestOpenRealHost runs periph's real host drivers: on any machine, with
// or without I2C, a bus of this name does not exist.
func TestOpenRealHost(t *testing.T) {
	b, err := Open("edged-no-such-bus")
	if err == nil {
		b.Close()
		t.Fatal("Open of a bus that cannot exist succeeded")
	}
	if !errors.Is(err, ErrNoBus) {
		t.Fatalf("Open = %v, want ErrNoBus", err)
	}
}

func TestBusPassesTraffic(t *testing.T) {
	pb := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
		{Addr: 0x44, W: []byte{0x24, 0x00}},
		{Addr: 0x44, R: []byte{1, 2}},
		{Addr: 0x23, W: []byte{0x01}},
	}}
	b := NewBus("1", pb)
	if got := b.String(); got != "i2c 1" {
		t.Errorf("String() = %q", got)
	}
	if err := b.Tx(0x44, []byte{0x24, 0x00}, nil); err != nil {
		t.Fatal(err)
	}
	r := make([]byte, 2)
	if err := b.Tx(0x44, nil, r); err != nil || r[0] != 1 || r[1] != 2 {
		t.Fatalf("Tx read = %v, %v", r, err)
	}
	err := b.Exclusive(func(raw i2c.Bus) error { return raw.Tx(0x23, []byte{0x01}, nil) })
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetSpeed(400 * physic.KiloHertz); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close = %v (Playback checks all ops were used)", err)
	}
}

func TestBusCloseReportsError(t *testing.T) {
	pb := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{{Addr: 0x44, W: []byte{0}}}}
	err := NewBus("1", pb).Close()
	if err == nil || !strings.Contains(err.Error(), `bus "1"`) {
		t.Fatalf("Close = %v, want an error naming the bus", err)
	}
	if err := NewBus("2", i2cbustest.NewDeadBus()).Close(); err != nil {
		t.Fatalf("Close of a bus that is no closer = %v", err)
	}
}

// overlapBus fails when two transactions are inside it at once.
type overlapBus struct {
	i2cbustest.Bus // for String and SetSpeed; Tx is its own
	inside         atomic.Int32
	overlap        atomic.Bool
	n              int // unsynchronised on purpose: the race detector sees a missing lock
}

func (b *overlapBus) Tx(addr uint16, w, r []byte) error {
	if b.inside.Add(1) > 1 {
		b.overlap.Store(true)
	}
	b.n++
	runtime.Gosched()
	b.inside.Add(-1)
	return nil
}

func TestBusSerialises(t *testing.T) {
	inner := &overlapBus{}
	b := NewBus("1", inner)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if g%2 == 0 {
					_ = b.Tx(uint16(0x40+g), []byte{1}, nil)
				} else {
					_ = b.Exclusive(func(raw i2c.Bus) error {
						_ = raw.Tx(0x23, []byte{1}, nil)
						return raw.Tx(0x23, nil, make([]byte, 2))
					})
				}
			}
		}()
	}
	wg.Wait()
	if inner.overlap.Load() {
		t.Fatal("two transactions were inside the bus at once")
	}
	if inner.n != 2*200+2*200*2 {
		t.Fatalf("inner saw %d transactions", inner.n)
	}
}
