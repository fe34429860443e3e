package sim

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

type validator interface{ Validate() error }

func TestOptsValidate(t *testing.T) {
	light := func(f func(*LightOpts)) validator { o := DefaultLightOpts(); f(&o); return &o }
	climate := func(f func(*ClimateOpts)) validator { o := DefaultClimateOpts(); f(&o); return &o }
	heater := func(f func(*HeaterOpts)) validator { o := DefaultHeaterOpts(); f(&o); return &o }
	for _, tc := range []struct {
		name string
		opts validator
		want string // field path at fault; "" = valid
	}{
		{"light defaults", light(func(*LightOpts) {}), ""},
		{"climate defaults", climate(func(*ClimateOpts) {}), ""},
		{"heater defaults", heater(func(*HeaterOpts) {}), ""},
		{"light all faults", light(func(o *LightOpts) {
			o.Faults = Faults{ErrorRate: 1, StuckAfter: time.Hour, Slow: time.Minute, Seed: 3}
		}), ""},
		{"sunset before sunrise", light(func(o *LightOpts) { o.Sunset = TimeOfDay(5 * time.Hour) }), "sunset"},
		{"sunset equals sunrise", light(func(o *LightOpts) { o.Sunset = o.Sunrise }), "sunset"},
		{"sunrise negative", light(func(o *LightOpts) { o.Sunrise = -1 }), "sunrise"},
		{"sunset past midnight", light(func(o *LightOpts) { o.Sunset = TimeOfDay(25 * time.Hour) }), "sunset"},
		{"peak zero", light(func(o *LightOpts) { o.PeakLux = 0 }), "peak_lux"},
		{"peak NaN", light(func(o *LightOpts) { o.PeakLux = math.NaN() }), "peak_lux"},
		{"peak huge", light(func(o *LightOpts) { o.PeakLux = 1e6 }), "peak_lux"},
		{"noise above 1", light(func(o *LightOpts) { o.Noise = 1.5 }), "noise"},
		{"noise negative", light(func(o *LightOpts) { o.Noise = -0.1 }), "noise"},
		{"error rate above 1", light(func(o *LightOpts) { o.Faults.ErrorRate = 1.1 }), "faults.error_rate"},
		{"error rate NaN", climate(func(o *ClimateOpts) { o.Faults.ErrorRate = math.NaN() }), "faults.error_rate"},
		{"stuck negative", climate(func(o *ClimateOpts) { o.Faults.StuckAfter = -time.Second }), "faults.stuck_after"},
		{"slow negative", climate(func(o *ClimateOpts) { o.Faults.Slow = -time.Second }), "faults.slow"},
		{"slow too long", light(func(o *LightOpts) { o.Faults.Slow = time.Hour }), "faults.slow"},
		{"plant empty", climate(func(o *ClimateOpts) { o.Plant = "" }), "plant"},
		{"plant control char", climate(func(o *ClimateOpts) { o.Plant = "a\nb" }), "plant"},
		{"plant too long", heater(func(o *HeaterOpts) { o.Plant = strings.Repeat("x", 65) }), "plant"},
		{"heater plant empty", heater(func(o *HeaterOpts) { o.Plant = "" }), "plant"},
		{"ambient cold", climate(func(o *ClimateOpts) { o.Ambient = -41 }), "ambient"},
		{"ambient NaN", climate(func(o *ClimateOpts) { o.Ambient = math.NaN() }), "ambient"},
		{"tau zero", climate(func(o *ClimateOpts) { o.Tau = 0 }), "tau"},
		{"tau too long", climate(func(o *ClimateOpts) { o.Tau = 25 * time.Hour }), "tau"},
		{"gain negative", climate(func(o *ClimateOpts) { o.HeaterGain = -1 }), "heater_gain"},
		{"gain Inf", climate(func(o *ClimateOpts) { o.HeaterGain = math.Inf(1) }), "heater_gain"},
		{"lag negative", climate(func(o *ClimateOpts) { o.HeaterLag = -1 }), "heater_lag"},
		{"lag zero", climate(func(o *ClimateOpts) { o.HeaterLag = 0 }), ""},
		{"dead time too long", climate(func(o *ClimateOpts) { o.DeadTime = 2 * time.Hour }), "dead_time"},
		{"humidity above 100", climate(func(o *ClimateOpts) { o.BaseHumidity = 101 }), "base_humidity"},
		{"bias NaN", climate(func(o *ClimateOpts) { o.Bias = math.NaN() }), "bias"},
		{"bias too large", climate(func(o *ClimateOpts) { o.Bias = 11 }), "bias"},
	} {
		err := tc.opts.Validate()
		if got := fieldPath(err); got != tc.want || (tc.want != "" && err == nil) {
			t.Errorf("%s: error %v names %q, want %q", tc.name, err, got, tc.want)
		}
	}
}

// fieldPath joins the keys of nested FieldErrors: "faults.slow".
func fieldPath(err error) string {
	var keys []string
	for err != nil {
		var fe *sensors.FieldError
		if !errors.As(err, &fe) {
			break
		}
		keys = append(keys, fe.Field)
		err = fe.Err
	}
	return strings.Join(keys, ".")
}

func TestConstructorsValidate(t *testing.T) {
	clk, s := sensorstest.NewClock(t0), shareMap{}
	lo := DefaultLightOpts()
	lo.PeakLux = -1
	if _, err := NewLight(clk, lo); fieldPath(err) != "peak_lux" {
		t.Errorf("NewLight with a bad peak: %v", err)
	}
	co := DefaultClimateOpts()
	co.Tau = 0
	if _, err := NewClimate(clk, s, co); fieldPath(err) != "tau" {
		t.Errorf("NewClimate with a bad tau: %v", err)
	}
	if _, err := NewPWM(clk, s, HeaterOpts{}); fieldPath(err) != "plant" {
		t.Errorf("NewPWM without a plant: %v", err)
	}
	if len(s) != 0 {
		t.Errorf("invalid options created shared plants: %v", s)
	}
}

func TestQuantities(t *testing.T) {
	lo, co := DefaultLightOpts(), DefaultClimateOpts()
	clk := sensorstest.NewClock(t0)
	l, _ := NewLight(clk, lo)
	c, _ := NewClimate(clk, shareMap{}, co)
	for _, tc := range []struct {
		name      string
		opts, dev []sensors.Quantity
		want      []sensors.Quantity
	}{
		{"light", lo.Quantities(), l.Quantities(), []sensors.Quantity{sensors.Illuminance}},
		{"climate", co.Quantities(), c.Quantities(), []sensors.Quantity{sensors.Temperature, sensors.Humidity}},
	} {
		if !slicesEqual(tc.opts, tc.want) || !slicesEqual(tc.dev, tc.want) {
			t.Errorf("%s: options say %v, device says %v, want %v", tc.name, tc.opts, tc.dev, tc.want)
		}
	}
}

func slicesEqual(a, b []sensors.Quantity) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
