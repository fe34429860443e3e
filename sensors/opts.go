package sensors

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// PollOpts are the per-sensor sampling settings every driver shares. They
// sit at the top level of a sensor's YAML block beside the driver's own
// keys.
type PollOpts struct {
	// Interval between scheduled samples. Samples stay on the grid
	// start + n*Interval; a late sample never shifts the ones after it.
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one Sense call; 0 means min(Interval, 5s).
	Timeout time.Duration `yaml:"timeout"`
	// OfflineAfter consecutive failed samples mark the sensor offline.
	OfflineAfter int `yaml:"offline_after"`
	// RetryBackoff is the first retry delay after a failed sample; it
	// doubles per failure and never reaches past the next scheduled sample.
	// 0 disables retries: a failed sample waits for the next slot.
	RetryBackoff time.Duration `yaml:"retry_backoff"`
	// Filters run in order on every value (see FilterSpec).
	Filters []FilterSpec `yaml:"filters"`
}

// DefaultPollOpts are the defaults of PollOpts.
func DefaultPollOpts() PollOpts {
	return PollOpts{Interval: 10 * time.Second, OfflineAfter: 3, RetryBackoff: time.Second}
}

// EffectiveTimeout returns Timeout, or its default when unset.
func (o *PollOpts) EffectiveTimeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return min(o.Interval, 5*time.Second)
}

// Validate checks the options; errors name the YAML key.
func (o *PollOpts) Validate() error {
	if o.Interval < 10*time.Millisecond {
		return FieldErrorf("interval", "%v is too short (at least 10ms)", o.Interval)
	}
	if o.Timeout < 0 {
		return FieldErrorf("timeout", "must not be negative")
	}
	if o.Timeout > o.Interval {
		return FieldErrorf("timeout", "%v is longer than interval %v", o.Timeout, o.Interval)
	}
	if o.OfflineAfter < 1 {
		return FieldErrorf("offline_after", "must be at least 1")
	}
	if o.RetryBackoff < 0 {
		return FieldErrorf("retry_backoff", "must not be negative")
	}
	for i := range o.Filters {
		if err := o.Filters[i].Validate(); err != nil {
			return fmt.Errorf("filters[%d]: %w", i, err)
		}
	}
	return nil
}

// FilterSpec is one step of a sensor's filter chain, written in YAML as a
// one-key mapping (ESPHome style), optionally restricted to one quantity:
//
//	filters:
//	  - offset: -0.4
//	    quantity: temperature
//	  - sliding_window_average: {window: 5}
//	  - delta: 0.2
//	  - heartbeat: 5m
//
// Exactly one filter kind is set per entry.
type FilterSpec struct {
	// Quantity restricts the filter to one quantity; 0 applies it to all.
	Quantity Quantity `yaml:"quantity"`

	SlidingWindowAverage *WindowOpts    `yaml:"sliding_window_average"`
	Median               *WindowOpts    `yaml:"median"`
	EMA                  *EMAOpts       `yaml:"exponential_moving_average"`
	Delta                *float64       `yaml:"delta"`     // publish only on a change >= Delta
	Throttle             *time.Duration `yaml:"throttle"`  // at most one value per period
	Heartbeat            *time.Duration `yaml:"heartbeat"` // republish the last value at least every period
	Clamp                *ClampOpts     `yaml:"clamp"`
	Offset               *float64       `yaml:"offset"`
	Multiply             *float64       `yaml:"multiply"`
	CalibrateLinear      []CalPoint     `yaml:"calibrate_linear"` // least-squares line through the points
}

// WindowOpts configures the windowed filters.
type WindowOpts struct {
	Window int `yaml:"window"` // values in the window
	// SendEvery publishes one value per SendEvery inputs (default 1).
	SendEvery int `yaml:"send_every"`
}

// EMAOpts configures the exponential moving average.
type EMAOpts struct {
	Alpha float64 `yaml:"alpha"` // weight of the newest value, (0, 1]
}

// ClampOpts bounds values; an unset side is open.
type ClampOpts struct {
	Min *float64 `yaml:"min"`
	Max *float64 `yaml:"max"`
}

// CalPoint maps a measured value to the true one. In YAML it is written
// "measured -> true", e.g. "0.5 -> 0.0".
type CalPoint struct{ Measured, True float64 }

// UnmarshalText parses "measured -> true".
func (p *CalPoint) UnmarshalText(b []byte) error {
	m, t, ok := strings.Cut(string(b), "->")
	if !ok {
		return fmt.Errorf("calibration point %q: want \"measured -> true\", e.g. \"0.5 -> 0.0\"", b)
	}
	var err error
	if p.Measured, err = strconv.ParseFloat(strings.TrimSpace(m), 64); err != nil {
		return fmt.Errorf("calibration point %q: measured value: %w", b, err)
	}
	if p.True, err = strconv.ParseFloat(strings.TrimSpace(t), 64); err != nil {
		return fmt.Errorf("calibration point %q: true value: %w", b, err)
	}
	return nil
}

// MarshalText writes "measured -> true".
func (p CalPoint) MarshalText() ([]byte, error) {
	return []byte(strconv.FormatFloat(p.Measured, 'g', -1, 64) + " -> " + strconv.FormatFloat(p.True, 'g', -1, 64)), nil
}

// Kind returns the YAML name of the filter kind that is set, or "" if none.
func (f *FilterSpec) Kind() string {
	k, _ := f.kinds()
	return k
}

func (f *FilterSpec) kinds() (first string, n int) {
	set := []struct {
		name string
		on   bool
	}{
		{"sliding_window_average", f.SlidingWindowAverage != nil},
		{"median", f.Median != nil},
		{"exponential_moving_average", f.EMA != nil},
		{"delta", f.Delta != nil},
		{"throttle", f.Throttle != nil},
		{"heartbeat", f.Heartbeat != nil},
		{"clamp", f.Clamp != nil},
		{"offset", f.Offset != nil},
		{"multiply", f.Multiply != nil},
		{"calibrate_linear", f.CalibrateLinear != nil},
	}
	for _, s := range set {
		if s.on {
			if n == 0 {
				first = s.name
			}
			n++
		}
	}
	return first, n
}

// IsRate reports whether f is a rate filter (delta, throttle, heartbeat):
// one that decides when a value is published, never what it is. Control
// loops get their input before the rate filters (see Chain).
func (f *FilterSpec) IsRate() bool {
	return f.Delta != nil || f.Throttle != nil || f.Heartbeat != nil
}

// Validate checks that exactly one kind is set and its values make sense.
func (f *FilterSpec) Validate() error {
	kind, n := f.kinds()
	switch {
	case n == 0:
		return fmt.Errorf("no filter given (want one of sliding_window_average, median, exponential_moving_average, delta, throttle, heartbeat, clamp, offset, multiply, calibrate_linear)")
	case n > 1:
		return fmt.Errorf("one filter per list entry: %s and another filter are both set", kind)
	}
	if f.Quantity != 0 && !f.Quantity.Valid() {
		return FieldErrorf("quantity", "invalid quantity")
	}
	finite := func(key string, v float64) error {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return FieldErrorf(key, "must be a finite number")
		}
		return nil
	}
	switch {
	case f.SlidingWindowAverage != nil:
		return f.SlidingWindowAverage.validate("sliding_window_average")
	case f.Median != nil:
		return f.Median.validate("median")
	case f.EMA != nil:
		if !(f.EMA.Alpha > 0 && f.EMA.Alpha <= 1) {
			return FieldErrorf("exponential_moving_average", "alpha %v is out of range (0, 1]", f.EMA.Alpha)
		}
	case f.Delta != nil:
		if err := finite("delta", *f.Delta); err != nil {
			return err
		}
		if *f.Delta <= 0 {
			return FieldErrorf("delta", "must be positive")
		}
	case f.Throttle != nil:
		if *f.Throttle <= 0 {
			return FieldErrorf("throttle", "must be a positive duration")
		}
	case f.Heartbeat != nil:
		if *f.Heartbeat <= 0 {
			return FieldErrorf("heartbeat", "must be a positive duration")
		}
	case f.Clamp != nil:
		if f.Clamp.Min == nil && f.Clamp.Max == nil {
			return FieldErrorf("clamp", "set min, max or both")
		}
		for _, b := range []*float64{f.Clamp.Min, f.Clamp.Max} {
			if b != nil && math.IsNaN(*b) {
				return FieldErrorf("clamp", "min and max must be numbers, not NaN")
			}
		}
		if f.Clamp.Min != nil && f.Clamp.Max != nil && *f.Clamp.Min > *f.Clamp.Max {
			return FieldErrorf("clamp", "min %v is above max %v", *f.Clamp.Min, *f.Clamp.Max)
		}
	case f.Offset != nil:
		return finite("offset", *f.Offset)
	case f.Multiply != nil:
		return finite("multiply", *f.Multiply)
	case f.CalibrateLinear != nil:
		if len(f.CalibrateLinear) < 2 {
			return FieldErrorf("calibrate_linear", "needs at least two points")
		}
		for _, p := range f.CalibrateLinear {
			if err := finite("calibrate_linear", p.Measured); err != nil {
				return err
			}
			if err := finite("calibrate_linear", p.True); err != nil {
				return err
			}
		}
		first := f.CalibrateLinear[0].Measured
		for _, p := range f.CalibrateLinear[1:] {
			if p.Measured != first {
				return nil
			}
		}
		return FieldErrorf("calibrate_linear", "all points have the same measured value %v: no line fits", first)
	}
	return nil
}

func (w *WindowOpts) validate(key string) error {
	if w.Window < 1 || w.Window > 1000 {
		return FieldErrorf(key, "window %d is out of range (1..1000)", w.Window)
	}
	if w.SendEvery < 0 || w.SendEvery > w.Window {
		return FieldErrorf(key, "send_every %d is out of range (0..window)", w.SendEvery)
	}
	return nil
}
