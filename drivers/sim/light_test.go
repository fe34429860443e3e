package sim

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
)

var day = time.Date(2026, 6, 21, 0, 0, 0, 0, time.UTC)

func at(hhmm string) time.Time {
	var t TimeOfDay
	if err := t.UnmarshalText([]byte(hhmm)); err != nil {
		panic(err) // test table bug
	}
	return day.Add(time.Duration(t))
}

// senseLight advances clk to when (never backwards) and senses.
func senseLight(t *testing.T, l *Light, clk *sensorstest.Clock, when time.Time) float64 {
	t.Helper()
	if when.Before(clk.Now()) {
		t.Fatalf("test bug: %v is before the clock's %v", when, clk.Now())
	}
	clk.AdvanceTo(when)
	var v [1]float64
	if err := l.Sense(context.Background(), v[:]); err != nil {
		t.Fatalf("Sense at %v: %v", when, err)
	}
	return v[0]
}

func clearDay(t *testing.T) (*Light, *sensorstest.Clock) {
	t.Helper()
	o := DefaultLightOpts()
	o.Sunrise, o.Sunset, o.Noise = TimeOfDay(6*time.Hour), TimeOfDay(18*time.Hour), 0
	clk := sensorstest.NewClock(day)
	l, err := NewLight(clk, o)
	if err != nil {
		t.Fatal(err)
	}
	return l, clk
}

// clearLux is the clear-day light at when, from a sensor opened for it.
func clearLux(t *testing.T, when time.Time) float64 {
	t.Helper()
	l, clk := clearDay(t)
	return senseLight(t, l, clk, when)
}

func TestLightZeroAtNight(t *testing.T) {
	l, clk := clearDay(t)
	for _, hhmm := range []string{"00:00", "03:00", "05:59", "06:00", "18:00", "18:01", "23:59"} {
		if v := senseLight(t, l, clk, at(hhmm)); v != 0 {
			t.Errorf("%s: %v lx, want 0 at night", hhmm, v)
		}
	}
}

func TestLightPeaksAtNoon(t *testing.T) {
	if v := clearLux(t, at("12:00")); math.Abs(v-20000) > 1e-9 {
		t.Errorf("noon: %v lx, want the peak 20000", v)
	}
	for _, hhmm := range []string{"07:00", "09:30", "11:59", "12:01", "16:00"} {
		if v := clearLux(t, at(hhmm)); v <= 0 || v >= 20000 {
			t.Errorf("%s: %v lx, want strictly between 0 and the peak", hhmm, v)
		}
	}
	// A clear day is symmetric about its middle.
	if a, b := clearLux(t, at("09:00")), clearLux(t, at("15:00")); math.Abs(a-b) > 1e-9 {
		t.Errorf("09:00 gives %v lx but 15:00 gives %v", a, b)
	}
}

func TestLightMonotoneMorning(t *testing.T) {
	l, clk := clearDay(t)
	prev := 0.0
	for m := 1; m <= 6*60; m++ {
		v := senseLight(t, l, clk, at("06:00").Add(time.Duration(m)*time.Minute))
		if v <= prev {
			t.Fatalf("06:00+%dm: %v lx, not above %v a minute before", m, v, prev)
		}
		prev = v
	}
}

func TestLightUsesTheClocksLocalTime(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	noon := time.Date(2026, 6, 21, 12, 0, 0, 0, cet) // 11:00 UTC
	l, _ := clearDay(t)
	if err := l.Sense(context.Background(), make([]float64, 1)); err != nil {
		t.Fatal(err)
	}
	if v := l.lux(noon); math.Abs(v-20000) > 1e-9 {
		t.Errorf("local noon: %v lx, want the peak", v)
	}
}

func TestLightClouds(t *testing.T) {
	open := func(seed uint64) (*Light, *sensorstest.Clock) {
		o := DefaultLightOpts()
		o.Sunrise, o.Sunset, o.Noise, o.Seed = TimeOfDay(6*time.Hour), TimeOfDay(18*time.Hour), 0.4, seed
		clk := sensorstest.NewClock(day)
		l, err := NewLight(clk, o)
		if err != nil {
			t.Fatal(err)
		}
		return l, clk
	}
	clear, cclk := clearDay(t)
	a, aclk := open(7)
	b, bclk := open(7)
	c, cclk2 := open(8)
	var varied, seedDiffers bool
	var first float64
	for m := 0; m < 120; m++ {
		when := at("10:00").Add(time.Duration(m) * time.Minute)
		bell := senseLight(t, clear, cclk, when)
		va := senseLight(t, a, aclk, when)
		if va > bell || va < bell*(1-0.4)-1e-9 {
			t.Fatalf("%v: %v lx is outside [%v, %v] for noise 0.4", when, va, bell*0.6, bell)
		}
		if vb := senseLight(t, b, bclk, when); vb != va {
			t.Fatalf("%v: same seed gives %v and %v", when, va, vb)
		}
		if vc := senseLight(t, c, cclk2, when); vc != va {
			seedDiffers = true
		}
		if ratio := va / bell; m == 0 {
			first = ratio
		} else if math.Abs(ratio-first) > 0.01 {
			varied = true
		}
	}
	if !varied {
		t.Error("clouds never changed the light over two hours")
	}
	if !seedDiffers {
		t.Error("seeds 7 and 8 give the same clouds")
	}
}

func TestTimeOfDayText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"06:30", 6*time.Hour + 30*time.Minute, true},
		{"00:00", 0, true},
		{"24:00", 24 * time.Hour, true},
		{"19:45:30", 19*time.Hour + 45*time.Minute + 30*time.Second, true},
		{"24:01", 0, false},
		{"25:00", 0, false},
		{"6:30", 0, false},
		{"06:60", 0, false},
		{"06", 0, false},
		{"06:30:00:00", 0, false},
		{"-1:00", 0, false},
		{"+6:30", 0, false},
		{"", 0, false},
		{"ab:cd", 0, false},
	} {
		var got TimeOfDay
		err := got.UnmarshalText([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("%q: error %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && time.Duration(got) != tc.want {
			t.Errorf("%q: %v, want %v", tc.in, time.Duration(got), tc.want)
		}
		if tc.ok {
			if s, _ := got.MarshalText(); string(s) != tc.in {
				t.Errorf("%q: marshals back as %q", tc.in, s)
			}
		}
	}
}

func FuzzTimeOfDay(f *testing.F) {
	for _, s := range []string{"06:30", "24:00", "19:45:30", "6:30", "99:99", "", "::", "12:00:60"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var v TimeOfDay
		if err := v.UnmarshalText([]byte(s)); err != nil {
			return
		}
		if v < 0 || v > TimeOfDay(24*time.Hour) {
			t.Fatalf("%q parsed to %v, outside the day", s, time.Duration(v))
		}
		b, err := v.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var w TimeOfDay
		if err := w.UnmarshalText(b); err != nil || w != v {
			t.Fatalf("%q -> %q -> %v, %v", s, b, time.Duration(w), err)
		}
	})
}
