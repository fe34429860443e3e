package relay

import (
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"

	"github.com/edged/edged/drivers/relay/relaytest"
	"github.com/edged/edged/sensors"
)

func TestOptsValidate(t *testing.T) {
	tests := []struct {
		opts  Opts
		field string
	}{
		{Opts{Pin: "GPIO17", SafeState: Off}, ""},
		{Opts{Pin: "GPIO17", ActiveLow: true, SafeState: On}, ""},
		{Opts{SafeState: Off}, "pin"},
		{Opts{Pin: "GPIO17"}, "safe_state"},
		{Opts{Pin: "GPIO17", SafeState: "OFF"}, "safe_state"},
		{Opts{Pin: "GPIO17", SafeState: "last"}, "safe_state"},
	}
	for _, tt := range tests {
		err := tt.opts.Validate()
		var fe *sensors.FieldError
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("Validate(%+v) = %v", tt.opts, err)
		case tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field):
			t.Errorf("Validate(%+v) = %v, want a FieldError for %q", tt.opts, err, tt.field)
		}
		if tt.field != "" {
			if _, err := New(&relaytest.Pin{N: "GPIO17"}, tt.opts); err == nil {
				t.Errorf("New(%+v) accepted invalid options", tt.opts)
			}
		}
	}
	if o := DefaultOpts(); o.SafeState != Off || o.ActiveLow {
		t.Errorf("DefaultOpts() = %+v", o)
	}
}

func newRelay(t *testing.T, activeLow bool, safe string) (*Dev, *relaytest.Pin) {
	t.Helper()
	p := &relaytest.Pin{N: "GPIO17"}
	d, err := New(p, Opts{Pin: "GPIO17", ActiveLow: activeLow, SafeState: safe})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n := p.Reads(); n != 0 {
			t.Errorf("the output pin was read %d times", n)
		}
	})
	return d, p
}

// TestSafeStateOnOpen checks the one level driven by New for every
// combination of polarity and safe state.
func TestSafeStateOnOpen(t *testing.T) {
	tests := []struct {
		activeLow bool
		safe      string
		pin       gpio.Level
		level     float64
	}{
		{false, Off, gpio.Low, 0},
		{true, Off, gpio.High, 0},
		{false, On, gpio.High, 1},
		{true, On, gpio.Low, 1},
	}
	for _, tt := range tests {
		d, p := newRelay(t, tt.activeLow, tt.safe)
		if got := p.Outs(); !slices.Equal(got, []gpio.Level{tt.pin}) {
			t.Errorf("active_low %v, safe %s: New drove %v, want [%v]", tt.activeLow, tt.safe, got, tt.pin)
		}
		if d.Level() != tt.level {
			t.Errorf("active_low %v, safe %s: Level() = %v", tt.activeLow, tt.safe, d.Level())
		}
	}
}

func TestSet(t *testing.T) {
	tests := []struct {
		level float64
		on    bool
	}{{0, false}, {0.49, false}, {0.5, true}, {1, true}, {0.2, false}}
	for _, activeLow := range []bool{false, true} {
		d, p := newRelay(t, activeLow, Off)
		for _, tt := range tests {
			if err := d.Set(tt.level); err != nil {
				t.Fatal(err)
			}
			// Electrically high means on, unless the board is active low.
			if got := p.Electrical() == gpio.High; got != (tt.on != activeLow) {
				t.Errorf("active_low %v: Set(%v) left the pin %v", activeLow, tt.level, p.Electrical())
			}
			if want := map[bool]float64{false: 0, true: 1}[tt.on]; d.Level() != want {
				t.Errorf("Set(%v): Level() = %v, want %v", tt.level, d.Level(), want)
			}
		}
	}
}

func TestSetRejectsOutOfRange(t *testing.T) {
	d, p := newRelay(t, false, Off)
	for _, l := range []float64{-0.01, 1.01, math.NaN(), math.Inf(1)} {
		if err := d.Set(l); err == nil {
			t.Errorf("Set(%v) succeeded", l)
		}
	}
	if n := len(p.Outs()); n != 1 {
		t.Errorf("%d outputs driven, want only the safe state on open", n)
	}
}

func TestOutFailureKeepsState(t *testing.T) {
	d, p := newRelay(t, true, Off)
	if err := d.Set(1); err != nil {
		t.Fatal(err)
	}
	broken := errors.New("gpioioctl: device busy")
	p.FailOut(broken)
	for _, op := range []struct {
		name string
		do   func() error
	}{{"Set", func() error { return d.Set(0) }}, {"Safe", d.Safe}} {
		err := op.do()
		if !errors.Is(err, broken) || !strings.Contains(err.Error(), "GPIO17") {
			t.Fatalf("%s on a failing pin = %v, want the error naming GPIO17", op.name, err)
		}
		if d.Level() != 1 || p.Electrical() != gpio.Low {
			t.Fatalf("%s failed but Level() = %v, pin %v; want 1 (on), Low", op.name, d.Level(), p.Electrical())
		}
	}
	p.FailOut(nil)
	if err := d.Set(0); err != nil || d.Level() != 0 {
		t.Fatalf("Set after the pin healed = %v, level %v", err, d.Level())
	}
}

func TestNewFailsOnBrokenPin(t *testing.T) {
	p := &relaytest.Pin{N: "GPIO27"}
	p.FailOut(errors.New("permission denied"))
	_, err := New(p, Opts{Pin: "GPIO27", SafeState: Off})
	if err == nil || !strings.Contains(err.Error(), "GPIO27") {
		t.Fatalf("New = %v, want an error naming GPIO27", err)
	}
}

func TestSafeAndHalt(t *testing.T) {
	for _, safe := range []string{Off, On} {
		d, p := newRelay(t, false, safe)
		want := map[string]float64{Off: 0, On: 1}[safe]
		other := 1 - want
		if err := d.Set(other); err != nil {
			t.Fatal(err)
		}
		if err := d.Safe(); err != nil || d.Level() != want {
			t.Fatalf("safe %s: Safe() = %v, level %v", safe, err, d.Level())
		}
		if err := d.Set(other); err != nil {
			t.Fatal(err)
		}
		if err := d.Halt(); err != nil || d.Level() != want {
			t.Fatalf("safe %s: Halt() = %v, level %v", safe, err, d.Level())
		}
		if err := d.Set(other); !errors.Is(err, ErrHalted) || d.Level() != want {
			t.Fatalf("safe %s: Set after Halt = %v, level %v", safe, err, d.Level())
		}
		if err := d.Safe(); err != nil {
			t.Fatalf("Safe after Halt = %v", err)
		}
		if got, wantPin := p.Electrical(), gpio.Level(want == 1); got != wantPin {
			t.Fatalf("safe %s: pin %v after Halt, want %v", safe, got, wantPin)
		}
	}
}

func TestString(t *testing.T) {
	d, _ := newRelay(t, true, Off)
	if got := d.String(); got != "relay(GPIO17, active low)" {
		t.Errorf("String() = %q", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	d, p := newRelay(t, false, Off)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				switch (i + j) % 3 {
				case 0:
					_ = d.Set(1)
				case 1:
					_ = d.Safe()
				default:
					_ = d.Level()
				}
			}
		}()
	}
	wg.Wait()
	// The software state matches the last level driven, whatever the order.
	outs := p.Outs()
	if last := outs[len(outs)-1] == gpio.High; (d.Level() == 1) != last {
		t.Fatalf("Level() = %v but the last level driven was %v", d.Level(), outs[len(outs)-1])
	}
}

func TestOpen(t *testing.T) {
	t.Run("missing pin", func(t *testing.T) {
		_, err := Open(Opts{Pin: "EDGED_NO_SUCH_PIN", SafeState: Off})
		if !errors.Is(err, ErrNoPin) || !strings.Contains(err.Error(), "EDGED_NO_SUCH_PIN") {
			t.Fatalf("Open = %v, want ErrNoPin naming the pin", err)
		}
	})
	t.Run("invalid options", func(t *testing.T) {
		if _, err := Open(Opts{SafeState: Off}); err == nil {
			t.Fatal("Open accepted an empty pin")
		}
	})
	t.Run("registered pin", func(t *testing.T) {
		p := &relaytest.Pin{N: "EDGED_TEST_RELAY_PIN"}
		if err := gpioreg.Register(p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = gpioreg.Unregister(p.N) })
		d, err := Open(Opts{Pin: p.N, ActiveLow: true, SafeState: Off})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(p.Outs(), []gpio.Level{gpio.High}) || d.Level() != 0 {
			t.Fatalf("Open drove %v, level %v; want the active-low off state", p.Outs(), d.Level())
		}
	})
}
