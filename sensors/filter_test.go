package sensors_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
)

func fp(v float64) *float64             { return &v }
func dp(d time.Duration) *time.Duration { return &d }

var nan, inf = math.NaN(), math.Inf(1)

// in is one sample: seconds after t0 and a value.
type in struct {
	s float64
	v float64
}

// out is what Apply should return; v is checked only when ok.
type out struct {
	v  float64
	ok bool
}

func pass(v float64) out { return out{v, true} }

var drop = out{}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// seq turns values into samples one second apart.
func seq(vs ...float64) []in {
	r := make([]in, len(vs))
	for i, v := range vs {
		r[i] = in{float64(i), v}
	}
	return r
}

func TestChain(t *testing.T) {
	tests := []struct {
		name  string
		specs []sensors.FilterSpec
		q     sensors.Quantity
		in    []in
		want  []out
	}{
		{
			name: "empty chain passes finite values only",
			in:   seq(1, nan, inf, -inf, 2),
			want: []out{pass(1), drop, drop, drop, pass(2)},
		},
		{
			name:  "offset",
			specs: []sensors.FilterSpec{{Offset: fp(-0.5)}},
			in:    seq(20, 21.5),
			want:  []out{pass(19.5), pass(21)},
		},
		{
			name:  "multiply",
			specs: []sensors.FilterSpec{{Multiply: fp(1.2)}},
			in:    seq(10, -5, 0),
			want:  []out{pass(12), pass(-6), pass(0)},
		},
		{
			name:  "multiply overflow to Inf is dropped",
			specs: []sensors.FilterSpec{{Multiply: fp(1e300)}},
			in:    seq(1e10, 1),
			want:  []out{drop, pass(1e300)},
		},
		{
			name:  "clamp both sides",
			specs: []sensors.FilterSpec{{Clamp: &sensors.ClampOpts{Min: fp(0), Max: fp(100)}}},
			in:    seq(-3, 50, 101, nan),
			want:  []out{pass(0), pass(50), pass(100), drop},
		},
		{
			name:  "clamp min only",
			specs: []sensors.FilterSpec{{Clamp: &sensors.ClampOpts{Min: fp(0)}}},
			in:    seq(-3, 1e9),
			want:  []out{pass(0), pass(1e9)},
		},
		{
			name: "calibrate_linear two points is exact",
			specs: []sensors.FilterSpec{{CalibrateLinear: []sensors.CalPoint{
				{Measured: 0.5, True: 0}, {Measured: 10.5, True: 10},
			}}},
			in:   seq(0.5, 10.5, 5.5),
			want: []out{pass(0), pass(10), pass(5)},
		},
		{
			name: "calibrate_linear least squares",
			// Points (0,1), (1,3), (2,4): slope 1.5, intercept 7/6.
			specs: []sensors.FilterSpec{{CalibrateLinear: []sensors.CalPoint{
				{Measured: 0, True: 1}, {Measured: 1, True: 3}, {Measured: 2, True: 4},
			}}},
			in:   seq(0, 2),
			want: []out{pass(7.0 / 6), pass(3 + 7.0/6)},
		},
		{
			name:  "sliding window average emits before full, then slides",
			specs: []sensors.FilterSpec{{SlidingWindowAverage: &sensors.WindowOpts{Window: 3}}},
			in:    seq(3, 6, 9, 12, 0),
			want:  []out{pass(3), pass(4.5), pass(6), pass(9), pass(7)},
		},
		{
			name:  "sliding window average send_every sends first, then every n",
			specs: []sensors.FilterSpec{{SlidingWindowAverage: &sensors.WindowOpts{Window: 2, SendEvery: 2}}},
			in:    seq(2, 4, 6, 8, 10),
			want:  []out{pass(2), drop, pass(5), drop, pass(9)},
		},
		{
			name:  "sliding window average ignores NaN",
			specs: []sensors.FilterSpec{{SlidingWindowAverage: &sensors.WindowOpts{Window: 2}}},
			in:    seq(2, nan, 4),
			want:  []out{pass(2), drop, pass(3)},
		},
		{
			name:  "median odd and even fill",
			specs: []sensors.FilterSpec{{Median: &sensors.WindowOpts{Window: 3}}},
			in:    seq(5, 1, 100, 2, 3),
			want:  []out{pass(5), pass(3), pass(5), pass(2), pass(3)},
		},
		{
			name:  "median send_every",
			specs: []sensors.FilterSpec{{Median: &sensors.WindowOpts{Window: 3, SendEvery: 3}}},
			in:    seq(9, 1, 5, 7, 2, 8),
			want:  []out{pass(9), drop, drop, pass(5), drop, drop},
		},
		{
			name:  "ema seeds with first value",
			specs: []sensors.FilterSpec{{EMA: &sensors.EMAOpts{Alpha: 0.5}}},
			in:    seq(10, 20, 20, nan, 0),
			want:  []out{pass(10), pass(15), pass(17.5), drop, pass(8.75)},
		},
		{
			name:  "ema alpha 1 is identity",
			specs: []sensors.FilterSpec{{EMA: &sensors.EMAOpts{Alpha: 1}}},
			in:    seq(10, 20),
			want:  []out{pass(10), pass(20)},
		},
		{
			name:  "delta first passes, then only changes of at least delta from last passed",
			specs: []sensors.FilterSpec{{Delta: fp(0.5)}},
			in:    seq(20, 20.2, 20.4, 20.5, 20.1, 19.9, nan, 21),
			want:  []out{pass(20), drop, drop, pass(20.5), drop, pass(19.9), drop, pass(21)},
		},
		{
			name:  "delta first value NaN does not seed",
			specs: []sensors.FilterSpec{{Delta: fp(1)}},
			in:    seq(nan, 5, 5.5),
			want:  []out{drop, pass(5), drop},
		},
		{
			name:  "throttle",
			specs: []sensors.FilterSpec{{Throttle: dp(10 * time.Second)}},
			in:    []in{{0, 1}, {5, 2}, {9.9, 3}, {10, 4}, {15, 5}, {20, 6}},
			want:  []out{pass(1), drop, drop, pass(4), drop, pass(6)},
		},
		{
			name:  "heartbeat alone passes everything",
			specs: []sensors.FilterSpec{{Heartbeat: dp(time.Minute)}},
			in:    seq(1, 2, 3),
			want:  []out{pass(1), pass(2), pass(3)},
		},
		{
			name: "delta then heartbeat republishes the latest value seen",
			specs: []sensors.FilterSpec{
				{Delta: fp(1)},
				{Heartbeat: dp(30 * time.Second)},
			},
			in: []in{{0, 20}, {10, 20.1}, {20, 20.2}, {30, 20.3}, {40, 20.4}, {50, 22}, {60, 22}, {79, 22.1}, {80, 22.2}},
			want: []out{
				pass(20), drop, drop, pass(20.3), // heartbeat 30 s after the last emission
				drop, pass(22), drop, drop, pass(22.2),
			},
		},
		{
			name: "heartbeat does not republish NaN",
			specs: []sensors.FilterSpec{
				{Delta: fp(1)},
				{Heartbeat: dp(10 * time.Second)},
			},
			in:   []in{{0, 5}, {5, 5.1}, {10, nan}, {20, nan}},
			want: []out{pass(5), drop, pass(5.1), pass(5.1)},
		},
		{
			name: "heartbeat after send_every republishes the window mean",
			specs: []sensors.FilterSpec{
				{SlidingWindowAverage: &sensors.WindowOpts{Window: 2, SendEvery: 2}},
				{Heartbeat: dp(time.Second)},
			},
			in:   seq(2, 4, 6),
			want: []out{pass(2), pass(3), pass(5)},
		},
		{
			name: "offset then delta then heartbeat",
			specs: []sensors.FilterSpec{
				{Offset: fp(-0.4)},
				{Delta: fp(0.2)},
				{Heartbeat: dp(5 * time.Minute)},
			},
			in:   []in{{0, 21}, {60, 21.1}, {120, 21.3}, {180, 21.3}, {480, 21.35}, {540, 21.35}},
			want: []out{pass(20.6), drop, pass(20.9), drop, pass(20.95), drop},
		},
		{
			name: "throttle then ema sees only throttled values",
			specs: []sensors.FilterSpec{
				{Throttle: dp(2 * time.Second)},
				{EMA: &sensors.EMAOpts{Alpha: 0.5}},
			},
			in:   seq(0, 100, 10, 100),
			want: []out{pass(0), drop, pass(5), drop},
		},
		{
			name: "filters for another quantity are skipped",
			specs: []sensors.FilterSpec{
				{Quantity: sensors.Humidity, Offset: fp(100)},
				{Quantity: sensors.Temperature, Multiply: fp(2)},
				{Offset: fp(1)},
			},
			q:    sensors.Temperature,
			in:   seq(1),
			want: []out{pass(3)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.in) != len(tt.want) {
				t.Fatalf("bad test: %d inputs, %d outputs", len(tt.in), len(tt.want))
			}
			q := tt.q
			if q == 0 {
				q = sensors.Temperature
			}
			c, err := sensors.NewChain(tt.specs, q)
			if err != nil {
				t.Fatal(err)
			}
			for i, x := range tt.in {
				v, ok := c.Apply(at(x.s), x.v)
				w := tt.want[i]
				if ok != w.ok || (ok && math.Abs(v-w.v) > 1e-9) {
					t.Errorf("sample %d (%gs, %g): got (%g, %v), want (%g, %v)", i, x.s, x.v, v, ok, w.v, w.ok)
				}
				if ok && (math.IsNaN(v) || math.IsInf(v, 0)) {
					t.Errorf("sample %d: passed non-finite %g", i, v)
				}
			}
		})
	}
}

func TestNewChainErrors(t *testing.T) {
	tests := []struct {
		name  string
		specs []sensors.FilterSpec
		want  string
	}{
		{"no kind", []sensors.FilterSpec{{}}, "filters[0]: no filter given"},
		{"two kinds", []sensors.FilterSpec{{Offset: fp(1), Multiply: fp(2)}}, "one filter per list entry"},
		{"bad window", []sensors.FilterSpec{{Offset: fp(1)}, {Median: &sensors.WindowOpts{Window: 0}}}, "filters[1]: median: window 0"},
		{"one calibration point", []sensors.FilterSpec{{CalibrateLinear: []sensors.CalPoint{{Measured: 1, True: 2}}}}, "at least two points"},
		{"NaN calibration point", []sensors.FilterSpec{{CalibrateLinear: []sensors.CalPoint{{Measured: 1, True: nan}, {Measured: 2, True: 3}}}}, "finite"},
		{"NaN clamp", []sensors.FilterSpec{{Clamp: &sensors.ClampOpts{Max: fp(nan)}}}, "NaN"},
		{"huge calibration points", []sensors.FilterSpec{{CalibrateLinear: []sensors.CalPoint{{Measured: -1e308, True: 0}, {Measured: 1e308, True: 1}}}}, "do not define a line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sensors.NewChain(tt.specs, sensors.Temperature)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "sensors: ") {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
}

// TestChainSampleValue pins what control loops get (issue 9): every good
// sample, through the value filters, whatever the rate filters publish.
func TestChainSampleValue(t *testing.T) {
	tests := []struct {
		name  string
		specs []sensors.FilterSpec
		in    []in
		want  []out // the sample value and whether the sample is good
	}{
		{
			name:  "no filters",
			specs: nil,
			in:    seq(1, nan, 2),
			want:  []out{pass(1), drop, pass(2)},
		},
		{
			name: "the Pi example: rate filters hold a steady value back, the sample value goes on",
			specs: []sensors.FilterSpec{
				{Offset: fp(-0.3)}, {Median: &sensors.WindowOpts{Window: 3}}, {Delta: fp(0.1)}, {Heartbeat: dp(5 * time.Minute)},
			},
			in:   seq(18.3, 18.32, 18.31, 18.33, 18.3),
			want: []out{pass(18), pass(18.01), pass(18.01), pass(18.02), pass(18.01)},
		},
		{
			name: "send_every paces publishing only: the current average after every sample",
			specs: []sensors.FilterSpec{
				{SlidingWindowAverage: &sensors.WindowOpts{Window: 4, SendEvery: 3}},
			},
			in:   seq(1, 3, 5, 7, nan, 9),
			want: []out{pass(1), pass(2), pass(3), pass(4), drop, pass(6)},
		},
		{
			name:  "throttle",
			specs: []sensors.FilterSpec{{Throttle: dp(time.Minute)}, {Multiply: fp(2)}},
			in:    seq(1, 2, 3),
			want:  []out{pass(2), pass(4), pass(6)},
		},
		{
			name: "a value filter after a rate filter still applies, with its own state",
			specs: []sensors.FilterSpec{
				{Delta: fp(10)}, {Median: &sensors.WindowOpts{Window: 3}}, {Offset: fp(1)},
			},
			in:   seq(1, 2, 30, 4),
			want: []out{pass(2), pass(2.5), pass(3), pass(5)},
		},
		{
			name:  "a value filter that overflows makes the sample bad, even if clamped back",
			specs: []sensors.FilterSpec{{Multiply: fp(1e308)}, {Clamp: &sensors.ClampOpts{Max: fp(100)}}},
			in:    seq(0.5, 10),
			want:  []out{pass(100), drop},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := sensors.NewChain(tt.specs, sensors.Temperature)
			if err != nil {
				t.Fatal(err)
			}
			for i, x := range tt.in {
				got, good, pubV, pubOK := c.Run(at(x.s), x.v)
				w := tt.want[i]
				if good != w.ok || good && math.Abs(got-w.v) > 1e-9 {
					t.Errorf("sample %d (%v): sample value %v, good %v; want %v, %v", i, x.v, got, good, w.v, w.ok)
				}
				if pubOK && !good && finiteVal(x.v) {
					t.Errorf("sample %d: published %v from a bad sample", i, pubV)
				}
			}
		})
	}
}

func finiteVal(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// TestChainRunMatchesApply checks that Run publishes exactly what Apply
// does, on two chains with the same state.
func TestChainRunMatchesApply(t *testing.T) {
	specs := []sensors.FilterSpec{
		{Offset: fp(-0.3)}, {SlidingWindowAverage: &sensors.WindowOpts{Window: 3, SendEvery: 2}},
		{Delta: fp(0.2)}, {Clamp: &sensors.ClampOpts{Min: fp(0)}}, {Heartbeat: dp(5 * time.Second)},
	}
	a, _ := sensors.NewChain(specs, sensors.Temperature)
	b, _ := sensors.NewChain(specs, sensors.Temperature)
	for i := range 200 {
		v := 20 + math.Sin(float64(i)/7)
		if i%17 == 0 {
			v = nan
		}
		wv, wok := a.Apply(at(float64(i)), v)
		_, _, gv, gok := b.Run(at(float64(i)), v)
		if wok != gok || wok && wv != gv {
			t.Fatalf("sample %d: Run published %v %v, Apply %v %v", i, gv, gok, wv, wok)
		}
	}
}

func TestChainDoesNotAllocate(t *testing.T) {
	specs := []sensors.FilterSpec{
		{Offset: fp(0.1)},
		{Median: &sensors.WindowOpts{Window: 7}},
		{SlidingWindowAverage: &sensors.WindowOpts{Window: 5, SendEvery: 2}},
		{EMA: &sensors.EMAOpts{Alpha: 0.3}},
		{Clamp: &sensors.ClampOpts{Min: fp(-40), Max: fp(125)}},
		{CalibrateLinear: []sensors.CalPoint{{Measured: 0, True: 0.1}, {Measured: 50, True: 49.8}}},
		{Delta: fp(0.05)},
		{Throttle: dp(time.Second)},
		{Heartbeat: dp(time.Minute)},
	}
	c, err := sensors.NewChain(specs, sensors.Temperature)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		c.Apply(at(float64(i)), 20+math.Sin(float64(i)))
	})
	if allocs != 0 {
		t.Fatalf("Apply allocates %v times per value", allocs)
	}
	// A value filter after a rate filter runs twice (see Chain).
	c, err = sensors.NewChain(append(specs, sensors.FilterSpec{Median: &sensors.WindowOpts{Window: 3}}), sensors.Temperature)
	if err != nil {
		t.Fatal(err)
	}
	allocs = testing.AllocsPerRun(1000, func() {
		i++
		c.Run(at(float64(i)), 20+math.Sin(float64(i)))
	})
	if allocs != 0 {
		t.Fatalf("Run allocates %v times per value", allocs)
	}
}

func BenchmarkChain(b *testing.B) {
	specs := []sensors.FilterSpec{
		{Offset: fp(-0.4)},
		{Median: &sensors.WindowOpts{Window: 5}},
		{SlidingWindowAverage: &sensors.WindowOpts{Window: 10}},
		{Delta: fp(0.2)},
		{Heartbeat: dp(5 * time.Minute)},
	}
	c, err := sensors.NewChain(specs, sensors.Temperature)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	now := t0
	for i := 0; b.Loop(); i++ {
		now = now.Add(10 * time.Second)
		c.Apply(now, 20+float64(i%7)*0.1)
	}
}

// FuzzChain feeds arbitrary values and filter parameters through a chain
// of every filter kind: it must never panic and never pass NaN or ±Inf.
func FuzzChain(f *testing.F) {
	f.Add(3, 0.5, 1.0, 0.0, 20.0, 21.0, math.NaN(), 1e308)
	f.Add(1, 1e-9, -1e308, 1e308, math.Inf(1), 0.0, math.Copysign(0, -1), 5.0)
	f.Add(1000, 100.0, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5)
	f.Fuzz(func(t *testing.T, window int, d, m, a, v1, v2, v3, v4 float64) {
		specs := []sensors.FilterSpec{
			{Multiply: &m},
			{Offset: &a},
			{Median: &sensors.WindowOpts{Window: window}},
			{SlidingWindowAverage: &sensors.WindowOpts{Window: window, SendEvery: 1}},
			{EMA: &sensors.EMAOpts{Alpha: 0.5}},
			{CalibrateLinear: []sensors.CalPoint{{Measured: a, True: m}, {Measured: d, True: a}}},
			{Delta: &d},
			{Throttle: dp(time.Second)},
			{Heartbeat: dp(2 * time.Second)},
		}
		c, err := sensors.NewChain(specs, sensors.Temperature)
		if err != nil {
			return // invalid parameters are rejected, which is fine
		}
		for i, v := range []float64{v1, v2, v3, v4, v1, v2} {
			if out, ok := c.Apply(at(float64(i)), v); ok && (math.IsNaN(out) || math.IsInf(out, 0)) {
				t.Fatalf("passed %g for input %g", out, v)
			}
		}
	})
}

// Regression for value filters after a send_every window (issue 9
// review): the window marks the samples it does not publish not-ok, and
// a later stateful value filter (ema, a second window) ignored them and
// returned its old value, so the loop got the same value several times
// as fresh samples. The sample value now comes from value filters that
// see every good sample; publishing is as before.
func TestChainSampleAfterSendEveryWindowMoves(t *testing.T) {
	tests := []struct {
		name       string
		specs      []sensors.FilterSpec
		in         []float64
		wantSample []float64
		wantPub    []float64 // NaN: nothing published
	}{
		{
			name: "window send_every 2, then ema",
			specs: []sensors.FilterSpec{
				{SlidingWindowAverage: &sensors.WindowOpts{Window: 2, SendEvery: 2}}, {EMA: &sensors.EMAOpts{Alpha: 0.5}},
			},
			in: []float64{1, 3, 5, 7},
			// Averages 1, 2, 4, 6; the ema of each.
			wantSample: []float64{1, 1.5, 2.75, 4.375},
			// Published every other sample: the ema of 1, then of 4.
			wantPub: []float64{1, nan, 2.5, nan},
		},
		{
			name: "median send_every 3, then a window, then delta",
			specs: []sensors.FilterSpec{
				{Median: &sensors.WindowOpts{Window: 1, SendEvery: 1}},
				{SlidingWindowAverage: &sensors.WindowOpts{Window: 3, SendEvery: 3}},
				{SlidingWindowAverage: &sensors.WindowOpts{Window: 2}},
				{Delta: fp(0.01)},
			},
			in:         []float64{3, 6, 9, 12},
			wantSample: []float64{3, 3.75, 5.25, 7.5}, // the second window over 3, 4.5, 6, 9
			wantPub:    []float64{3, nan, nan, 6},     // the second window sees 3, then 9
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := sensors.NewChain(tt.specs, sensors.Temperature)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range tt.in {
				got, good, pub, ok := c.Run(at(float64(i)), v)
				if !good || math.Abs(got-tt.wantSample[i]) > 1e-9 {
					t.Errorf("sample %d (%v): sample value %v, good %v; want %v", i, v, got, good, tt.wantSample[i])
				}
				if w := tt.wantPub[i]; ok != !math.IsNaN(w) || ok && math.Abs(pub-w) > 1e-9 {
					t.Errorf("sample %d (%v): published %v, %v; want %v", i, v, pub, ok, w)
				}
			}
		})
	}
}
