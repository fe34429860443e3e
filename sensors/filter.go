package sensors

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Chain is the filter chain of one quantity of one sensor, built from the
// sensor's FilterSpecs. It holds the filters' state (windows, last passed
// value, timers), so every quantity of every sensor needs its own Chain.
//
// Semantics follow ESPHome's sensor filters. Each step sees every sample,
// also those an earlier step suppressed, so that heartbeat can republish
// when delta or throttle hold values back:
//   - a suppressed sample travels on marked not-ok, carrying the value the
//     suppressing step would have passed (its input, or its current
//     aggregate for the windowed filters);
//   - transforms (offset, multiply, clamp, calibrate_linear) apply to it;
//   - stateful filters (averages, delta, throttle) ignore it;
//   - heartbeat remembers it and re-emits it once its period is up.
//
// NaN and ±Inf never pass: not as input, not as the result of a step.
// Apply does not allocate.
//
// The chain has two outputs (see Run). The published value is what the
// whole chain lets through. The sample value is for control loops: it is
// what the value filters (offset, multiply, calibrate_linear, clamp,
// median, the averages) make of every good sample, without the rate
// filters (delta, throttle, heartbeat), which decide when a value is
// published, never what it is. A windowed filter's send_every also only
// paces publishing: the sample value is the window's current aggregate
// after every sample, and a stateful value filter after such a window
// (ema, another window) takes it after every sample too (ctl).
//
// A Chain is not safe for concurrent use; the Poller uses it from the
// sensor's goroutine only.
type Chain struct {
	steps []step
	// split is the index of the first rate filter in steps, len(steps) if
	// there is none: the sample value is the value there.
	split int
	// ctl is nil when every filter after split is a rate filter and no
	// stateful value filter follows a window with send_every. Otherwise
	// ctl holds the value filters again, with their own state and no
	// send_every, and the sample value comes out of it.
	ctl []step
}

// step is one filter. ok=false means an earlier step suppressed the
// sample; v is then the best value known for it (see Chain).
type step interface {
	step(now time.Time, v float64, ok bool) (float64, bool)
}

// NewChain builds the chain for quantity q from specs, skipping the specs
// restricted to another quantity. Errors name the spec's index.
func NewChain(specs []FilterSpec, q Quantity) (*Chain, error) {
	c := &Chain{split: -1}
	var values []*FilterSpec // the value filters, for ctl
	misordered := false
	// paced: a window with send_every > 1 came before. It marks the
	// samples it does not publish not-ok, so a stateful value filter
	// after it (ema, another window) would skip them for the sample value
	// too: ctl then runs the value filters without the pacing.
	paced := false
	for i := range specs {
		f := &specs[i]
		if err := f.Validate(); err != nil {
			return nil, fmt.Errorf("sensors: filters[%d]: %w", i, err)
		}
		if f.Quantity != 0 && f.Quantity != q {
			continue
		}
		s, err := newStep(f)
		if err != nil {
			return nil, fmt.Errorf("sensors: filters[%d]: %w", i, err)
		}
		switch {
		case f.IsRate():
			if c.split < 0 {
				c.split = len(c.steps)
			}
		default:
			values = append(values, f)
			misordered = misordered || c.split >= 0 || paced && f.stateful()
			paced = paced || f.paced()
		}
		c.steps = append(c.steps, s)
	}
	if c.split < 0 {
		c.split = len(c.steps)
	}
	if misordered {
		for _, f := range values {
			f := *f
			// The sample value is the window's aggregate after every sample.
			if w := f.SlidingWindowAverage; w != nil {
				f.SlidingWindowAverage = &WindowOpts{Window: w.Window}
			}
			if w := f.Median; w != nil {
				f.Median = &WindowOpts{Window: w.Window}
			}
			s, _ := newStep(&f) // built once above without error
			c.ctl = append(c.ctl, s)
		}
	}
	return c, nil
}

// stateful reports whether the value filter f keeps state across samples
// (the averages, the median), so that it ignores a not-ok sample.
func (f *FilterSpec) stateful() bool {
	return f.SlidingWindowAverage != nil || f.Median != nil || f.EMA != nil
}

// paced reports whether f is a window that publishes one value per
// send_every > 1 samples.
func (f *FilterSpec) paced() bool {
	for _, w := range []*WindowOpts{f.SlidingWindowAverage, f.Median} {
		if w != nil && w.SendEvery > 1 {
			return true
		}
	}
	return false
}

// Len returns the number of filters in the chain.
func (c *Chain) Len() int { return len(c.steps) }

// Apply runs one sample taken at now through the chain and reports whether
// a value comes out to be published.
func (c *Chain) Apply(now time.Time, v float64) (float64, bool) {
	_, _, out, ok := c.Run(now, v)
	return out, ok
}

// Run runs one sample v taken at now through the chain. It returns the
// sample value and whether the sample is good (v and every value filter's
// result are finite), and the value to publish and whether there is one
// (see Chain).
func (c *Chain) Run(now time.Time, v float64) (sample float64, good bool, out float64, ok bool) {
	raw := v
	good = finite(v)
	ok = good
	for i, s := range c.steps {
		if i == c.split {
			sample = v
		}
		v, ok = s.step(now, v, ok)
		if !finite(v) {
			ok = false
			if i < c.split {
				good = false
			}
		}
	}
	if c.split == len(c.steps) {
		sample = v
	}
	if c.ctl != nil {
		sample = raw
		sok := good
		for _, s := range c.ctl {
			sample, sok = s.step(now, sample, sok)
			if !finite(sample) {
				sok, good = false, false
			}
		}
	}
	return sample, good && finite(sample), v, ok && finite(v)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func newStep(f *FilterSpec) (step, error) {
	switch {
	case f.SlidingWindowAverage != nil:
		return newWindow(*f.SlidingWindowAverage, false), nil
	case f.Median != nil:
		return newWindow(*f.Median, true), nil
	case f.EMA != nil:
		return &ema{alpha: f.EMA.Alpha}, nil
	case f.Delta != nil:
		return &delta{min: *f.Delta}, nil
	case f.Throttle != nil:
		return &throttle{period: *f.Throttle}, nil
	case f.Heartbeat != nil:
		return &heartbeat{period: *f.Heartbeat}, nil
	case f.Clamp != nil:
		c := &clamp{lo: math.Inf(-1), hi: math.Inf(1)}
		if f.Clamp.Min != nil {
			c.lo = *f.Clamp.Min
		}
		if f.Clamp.Max != nil {
			c.hi = *f.Clamp.Max
		}
		return c, nil
	case f.Offset != nil:
		return &linear{a: 1, b: *f.Offset}, nil
	case f.Multiply != nil:
		return &linear{a: *f.Multiply, b: 0}, nil
	case f.CalibrateLinear != nil:
		a, b, err := fitLine(f.CalibrateLinear)
		if err != nil {
			return nil, err
		}
		return &linear{a: a, b: b}, nil
	}
	return nil, fmt.Errorf("no filter given")
}

// fitLine returns the least-squares line true = a*measured + b. Sums are
// taken around the means, which keeps them exact for two points and free
// of overflow for large but sane values.
func fitLine(pts []CalPoint) (a, b float64, err error) {
	var mx, my float64
	for _, p := range pts {
		mx += p.Measured
		my += p.True
	}
	n := float64(len(pts))
	mx, my = mx/n, my/n
	var sxy, sxx float64
	for _, p := range pts {
		dx := p.Measured - mx
		sxy += dx * (p.True - my)
		sxx += dx * dx
	}
	a = sxy / sxx
	b = my - a*mx
	if sxx == 0 || !finite(sxx) || !finite(sxy) || !finite(a) || !finite(b) {
		return 0, 0, FieldErrorf("calibrate_linear", "the points do not define a line")
	}
	return a, b, nil
}

// linear is offset, multiply and calibrate_linear: v*a + b.
type linear struct{ a, b float64 }

func (l *linear) step(_ time.Time, v float64, ok bool) (float64, bool) {
	return v*l.a + l.b, ok
}

type clamp struct{ lo, hi float64 }

func (c *clamp) step(_ time.Time, v float64, ok bool) (float64, bool) {
	return min(max(v, c.lo), c.hi), ok
}

// window is sliding_window_average and median: the aggregate of the last
// size accepted values, sent for the first value and then every sendEvery
// values (ESPHome's send_first_at: 1), also before the window is full.
type window struct {
	buf       []float64 // ring of accepted values
	scratch   []float64 // sorted copy for the median
	next, n   int       // ring write position, values held
	sendEvery int
	since     int // values accepted since the last send
	median    bool
}

func newWindow(o WindowOpts, median bool) *window {
	w := &window{buf: make([]float64, o.Window), sendEvery: max(o.SendEvery, 1), median: median}
	w.since = w.sendEvery - 1 // the first value is sent
	if median {
		w.scratch = make([]float64, o.Window)
	}
	return w
}

func (w *window) step(_ time.Time, v float64, ok bool) (float64, bool) {
	if !ok {
		if w.n > 0 {
			return w.aggregate(), false
		}
		return v, false
	}
	w.buf[w.next] = v
	w.next = (w.next + 1) % len(w.buf)
	w.n = min(w.n+1, len(w.buf))
	agg := w.aggregate()
	w.since++
	if w.since < w.sendEvery {
		return agg, false
	}
	w.since = 0
	return agg, true
}

func (w *window) aggregate() float64 {
	vals := w.buf[:w.n] // before the ring wraps the values sit at the front
	if !w.median {
		var sum float64
		for _, x := range vals {
			sum += x
		}
		return sum / float64(w.n)
	}
	s := w.scratch[:w.n]
	copy(s, vals)
	slices.Sort(s)
	if w.n%2 == 1 {
		return s[w.n/2]
	}
	return (s[w.n/2-1] + s[w.n/2]) / 2
}

// ema is exponential_moving_average; the first value seeds it.
type ema struct {
	alpha  float64
	v      float64
	seeded bool
}

func (e *ema) step(_ time.Time, v float64, ok bool) (float64, bool) {
	if !ok {
		if e.seeded {
			return e.v, false
		}
		return v, false
	}
	if !e.seeded {
		e.v, e.seeded = v, true
	} else {
		e.v = e.alpha*v + (1-e.alpha)*e.v
	}
	return e.v, true
}

// delta passes a value that differs from the last passed one by at least
// min; the first value always passes.
type delta struct {
	min, last float64
	seeded    bool
}

func (d *delta) step(_ time.Time, v float64, ok bool) (float64, bool) {
	if !ok {
		return v, false
	}
	if d.seeded && math.Abs(v-d.last) < d.min {
		return v, false
	}
	d.last, d.seeded = v, true
	return v, true
}

// throttle passes at most one value per period; the first always passes.
type throttle struct {
	period time.Duration
	last   time.Time
	seeded bool
}

func (t *throttle) step(now time.Time, v float64, ok bool) (float64, bool) {
	if !ok {
		return v, false
	}
	if t.seeded && now.Sub(t.last) < t.period {
		return v, false
	}
	t.last, t.seeded = now, true
	return v, true
}

// heartbeat passes everything that comes through, and when earlier steps
// have held values back for a whole period it re-emits the latest value it
// has seen. The period runs from the last emission, or from the first
// sample if nothing has been emitted yet.
type heartbeat struct {
	period    time.Duration
	last      time.Time // last emission (or first sample)
	latest    float64   // latest finite value seen, ok or not
	seen, has bool      // seen: last is set; has: latest is set
}

func (h *heartbeat) step(now time.Time, v float64, ok bool) (float64, bool) {
	if !h.seen {
		h.last, h.seen = now, true
	}
	if finite(v) {
		h.latest, h.has = v, true
	}
	if ok {
		h.last = now
		return v, true
	}
	if h.has && now.Sub(h.last) >= h.period {
		h.last = now
		return h.latest, true
	}
	return v, false
}
