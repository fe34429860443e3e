package sim

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/edged/edged/sensors"
)

// Light is a simulated illuminance sensor. Its value is a pure function of
// the clock (and the seed), so two runs over the same times agree exactly.
type Light struct {
	opts   LightOpts
	clk    sensors.Clock
	name   string
	f      *faulter
	halted bool
}

var _ sensors.Sensor = (*Light)(nil)

// NewLight opens a simulated light sensor on clk.
func NewLight(clk sensors.Clock, opts LightOpts) (*Light, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("sim: sim_light: %w", err)
	}
	if clk == nil {
		return nil, fmt.Errorf("sim: sim_light: no clock")
	}
	l := &Light{opts: opts, clk: clk}
	l.name = fmt.Sprintf("sim_light(%v-%v, peak %g lx)", opts.Sunrise, opts.Sunset, opts.PeakLux)
	l.f = newFaulter(clk, l.name, opts.Faults)
	return l, nil
}

// String names the device, e.g. "sim_light(06:00-20:00, peak 20000 lx)".
func (l *Light) String() string { return l.name }

// Quantities returns illuminance.
func (l *Light) Quantities() []sensors.Quantity { return lightQuantities }

// Sense writes the illuminance (lx) at the clock's current time.
func (l *Light) Sense(ctx context.Context, dst []float64) error {
	if l.halted {
		return ErrHalted
	}
	if len(dst) != 1 {
		return fmt.Errorf("sim: sim_light: dst has %d elements, want 1", len(dst))
	}
	if err := l.f.before(ctx); err != nil {
		return err
	}
	if l.f.stuck(dst) {
		return nil
	}
	dst[0] = l.lux(l.clk.Now())
	l.f.remember(dst)
	return nil
}

// Halt stops the sensor; later Sense calls fail with ErrHalted.
func (l *Light) Halt() error {
	l.halted = true
	l.f.halt()
	return nil
}

// lux is the day curve: zero at night, sin² of the fraction of daylight
// gone by (smooth at sunrise and sunset, peaking half way), less the
// share the clouds take.
func (l *Light) lux(now time.Time) float64 {
	h, m, s := now.Clock()
	tod := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute +
		time.Duration(s)*time.Second + time.Duration(now.Nanosecond())
	rise, set := time.Duration(l.opts.Sunrise), time.Duration(l.opts.Sunset)
	if tod <= rise || tod >= set {
		return 0
	}
	x := float64(tod-rise) / float64(set-rise)
	bell := math.Sin(math.Pi * x)
	bell *= bell
	return l.opts.PeakLux * bell * (1 - l.opts.Noise*cloud(l.opts.Seed, now))
}

// cloud returns the cloud cover (0..1) at t: smooth value noise keyed by
// the seed and the absolute time, a slow octave for cloud banks and a
// fast one for single clouds.
func cloud(seed uint64, t time.Time) float64 {
	sec := float64(t.Unix()) + float64(t.Nanosecond())/1e9
	return 0.7*valueNoise(seed, sec/300) + 0.3*valueNoise(seed^0x5bd1e995, sec/37)
}

// valueNoise interpolates smoothly between pseudo-random values in [0, 1)
// at the integers.
func valueNoise(seed uint64, x float64) float64 {
	i := math.Floor(x)
	f := x - i
	f = f * f * (3 - 2*f)
	a := hashUnit(seed, int64(i))
	b := hashUnit(seed, int64(i)+1)
	return a + (b-a)*f
}

// hashUnit maps (seed, i) to [0, 1) with the splitmix64 finaliser.
func hashUnit(seed uint64, i int64) float64 {
	z := seed + uint64(i)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
}
