package control

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/edged/edged/drivers/sim"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

// edge is one switch of an on/off output.
type edge struct {
	at   time.Time
	on   bool
	safe bool // made by Safe, not Set
}

// switchLog wraps an on/off actuator and records every change of its state
// (what the wrapped actuator's Level reports after each call), at the
// clock's time.
type switchLog struct {
	sensors.Actuator
	clk sensors.Clock

	mu    sync.Mutex
	on    bool
	edges []edge
}

func (s *switchLog) note(safe bool) {
	on := s.Actuator.Level() >= 0.5
	s.mu.Lock()
	defer s.mu.Unlock()
	if on != s.on {
		s.on = on
		s.edges = append(s.edges, edge{s.clk.Now(), on, safe})
	}
}

func (s *switchLog) Set(level float64) error {
	err := s.Actuator.Set(level)
	s.note(false)
	return err
}

func (s *switchLog) Safe() error {
	err := s.Actuator.Safe()
	s.note(true)
	return err
}

func (s *switchLog) history() []edge {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]edge(nil), s.edges...)
}

// pulse is one on period, [on, off).
type pulse struct{ on, off time.Time }

// switchFigures sums up a switching history.
type switchFigures struct {
	pulses        int
	shortestPulse time.Duration
	shortestGap   time.Duration // between an off and the next on
	longestPulse  time.Duration
	doubleWindows int // cycle windows that more than one pulse overlaps
	maxPerHour    int // most switch-ons in any 60 minutes
	perHour       float64
	onFraction    float64
}

func (f switchFigures) String() string {
	return fmt.Sprintf("%d pulses (%.1f switch-ons per hour, at most %d in any hour), shortest pulse %v, longest %v, shortest gap %v, windows with more than one pulse %d, on %.1f %%",
		f.pulses, f.perHour, f.maxPerHour, f.shortestPulse, f.longestPulse, f.shortestGap, f.doubleWindows, 100*f.onFraction)
}

// pulsesOf turns edges into pulses up to end; a pulse still on at end
// ends there.
func pulsesOf(edges []edge, end time.Time) []pulse {
	var ps []pulse
	for _, e := range edges {
		switch {
		case e.on:
			ps = append(ps, pulse{on: e.at})
		case len(ps) > 0 && ps[len(ps)-1].off.IsZero():
			ps[len(ps)-1].off = e.at
		}
	}
	if n := len(ps); n > 0 && ps[n-1].off.IsZero() {
		ps[n-1].off = end
	}
	return ps
}

// pulsesAfter drops the pulses that ended before start.
func pulsesAfter(ps []pulse, start time.Time) []pulse {
	for len(ps) > 0 && ps[0].off.Before(start) {
		ps = ps[1:]
	}
	return ps
}

// figures measures pulses between start and end; windows are cycle long
// from start (cycle 0 counts none).
func figures(ps []pulse, start, end time.Time, cycle time.Duration) switchFigures {
	f := switchFigures{pulses: len(ps), shortestPulse: -1, shortestGap: -1}
	var onTime time.Duration
	for i, p := range ps {
		d := p.off.Sub(p.on)
		onTime += d
		if p.off.Before(end) && (f.shortestPulse < 0 || d < f.shortestPulse) {
			f.shortestPulse = d
		}
		f.longestPulse = max(f.longestPulse, d)
		if i > 0 {
			if g := p.on.Sub(ps[i-1].off); f.shortestGap < 0 || g < f.shortestGap {
				f.shortestGap = g
			}
		}
		n := 0
		for j := i; j < len(ps) && ps[j].on.Before(p.on.Add(time.Hour)); j++ {
			n++
		}
		f.maxPerHour = max(f.maxPerHour, n)
	}
	if cycle > 0 {
		j := 0
		for ws := start; ws.Before(end); ws = ws.Add(cycle) {
			we := ws.Add(cycle)
			for j < len(ps) && !ps[j].off.After(ws) {
				j++
			}
			n := 0
			for k := j; k < len(ps) && ps[k].on.Before(we); k++ {
				n++
			}
			if n > 1 {
				f.doubleWindows++
			}
		}
	}
	span := end.Sub(start)
	f.perHour = float64(len(ps)) / span.Hours()
	f.onFraction = float64(onTime) / float64(span)
	return f
}

// simDay is a loop over the simulated greenhouse of
// configs/examples/sim.yaml with a recorded on/off heater.
type simDay struct {
	h       *harness
	climate *sim.Climate
	relay   *switchLog
	dst     []float64
}

func newSimDay(t *testing.T, o Opts) *simDay {
	t.Helper()
	clk := sensorstest.NewClock(t0)
	share := shareMap{}
	co := sim.DefaultClimateOpts()
	co.DeadTime = 10 * time.Second
	climate, err := sim.NewClimate(clk, share, co)
	if err != nil {
		t.Fatal(err)
	}
	relay, err := sim.NewRelay(clk, share, sim.DefaultHeaterOpts())
	if err != nil {
		t.Fatal(err)
	}
	rec := &switchLog{Actuator: relay, clk: clk}
	l, err := New(o, rec, clk, nil, "edged/sim-01", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, clk: clk, l: l}
	h.start()
	return &simDay{h: h, climate: climate, relay: rec, dst: make([]float64, 2)}
}

// sense reads the plant now and hands the reading to the loop.
func (s *simDay) sense() float64 {
	s.h.t.Helper()
	if err := s.climate.Sense(context.Background(), s.dst); err != nil {
		s.h.t.Fatal(err)
	}
	s.h.read(s.dst[0])
	return s.dst[0]
}

// randomCommand is a command an operator might send: a new setpoint, a
// manual output or back to auto.
func randomCommand(rng *rand.Rand) string {
	switch r := rng.IntN(100); {
	case r < 55:
		return fmt.Sprintf(`{"setpoint":%.1f}`, 18+float64(rng.IntN(81))/10)
	case r < 80:
		return fmt.Sprintf(`{"mode":"manual","output":%.3f}`, rng.Float64())
	default:
		return `{"mode":"auto"}`
	}
}

// runSimDay runs the sim example for 24 simulated hours with a reading
// every 5 s and a random command at a random time (to the millisecond)
// every 1 to 30 minutes, and returns the heater's switching history.
func runSimDay(t *testing.T, o Opts, seed uint64) []edge {
	s := newSimDay(t, o)
	rng := rand.New(rand.NewPCG(seed, 1))
	gap := func() time.Duration {
		return time.Minute + time.Duration(rng.Int64N(int64(29*time.Minute/time.Millisecond)))*time.Millisecond
	}
	next := gap()
	const day = 24 * time.Hour
	for at := time.Duration(0); at <= day; at += 5 * time.Second {
		for ; next < at; next += gap() {
			s.h.advanceTo(t0.Add(next))
			if _, err := s.h.l.Command([]byte(randomCommand(rng))); err != nil {
				t.Fatal(err)
			}
			s.h.settle()
		}
		s.h.advanceTo(t0.Add(at))
		s.sense()
	}
	return s.relay.history()
}

// simExampleOpts is the controller of configs/examples/sim.yaml.
func simExampleOpts() Opts {
	o := testOpts()
	o.Setpoint, o.PID, o.Cycle = 22.5, Gains{Kp: 0.4, Ki: 0.002}, time.Minute
	return o
}

// TestRelayProtectionSimDay is the relay property test: over 24 simulated
// hours of the sim example, with random setpoints, manual outputs and mode
// changes at random window positions, no pulse is shorter than min_on, no
// gap shorter than min_off, no hour has more than max_switches_per_hour
// switch-ons, no window has two pulses, and no pulse is longer than
// max_on. Issue 9 measured, before relay protection, pulses of 0-37 ms,
// gaps of 0.3-2.5 s and second pulses in one window; with the seeds here
// the code before the fix gave a shortest pulse of 29 ms, a shortest gap
// of 1.2 ms and 17-20 windows with two pulses a day.
func TestRelayProtectionSimDay(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Opts)
	}{
		{"sim example defaults", func(*Opts) {}},
		{"tight budget and max_on", func(o *Opts) {
			o.Cycle, o.MinOn, o.MinOff, o.MaxSwitchesPerHour, o.MaxOn = 90*time.Second, 25*time.Second, 20*time.Second, 25, 20*time.Minute
		}},
		{"ssr", func(o *Opts) {
			o.Cycle, o.MinOn, o.MinOff, o.MaxSwitchesPerHour = 5*time.Second, time.Second, time.Second, 0
		}},
		{"hysteresis", func(o *Opts) {
			o.Cycle, o.PID, o.Hysteresis = 0, Gains{}, &Band{Below: 0.3, Above: 0.3}
			o.MinOn, o.MinOff, o.MaxSwitchesPerHour, o.MaxOn = 30*time.Second, time.Minute, 12, 15*time.Minute
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := simExampleOpts()
				tc.edit(&o)
				for seed := uint64(1); seed <= 3; seed++ {
					edges := runSimDay(t, o, seed)
					end := t0.Add(24 * time.Hour)
					for _, e := range edges {
						if e.safe {
							t.Errorf("seed %d: a safe state at %v; this test wants none", seed, e.at.Sub(t0))
						}
					}
					f := figures(pulsesOf(edges, end), t0, end, o.Cycle)
					t.Logf("seed %d: %v", seed, f)
					if f.pulses < 20 {
						t.Errorf("seed %d: only %d pulses: the test did not exercise the relay", seed, f.pulses)
					}
					if f.shortestPulse < o.MinOn {
						t.Errorf("seed %d: a pulse of %v, min_on %v", seed, f.shortestPulse, o.MinOn)
					}
					if f.shortestGap < o.MinOff {
						t.Errorf("seed %d: a gap of %v, min_off %v", seed, f.shortestGap, o.MinOff)
					}
					if o.MaxSwitchesPerHour > 0 && f.maxPerHour > o.MaxSwitchesPerHour {
						t.Errorf("seed %d: %d switch-ons in an hour, max_switches_per_hour %d", seed, f.maxPerHour, o.MaxSwitchesPerHour)
					}
					if f.doubleWindows > 0 {
						t.Errorf("seed %d: %d windows with more than one pulse", seed, f.doubleWindows)
					}
					if o.MaxOn > 0 && f.longestPulse > o.MaxOn {
						t.Errorf("seed %d: a pulse of %v, max_on %v", seed, f.longestPulse, o.MaxOn)
					}
				}
			})
		})
	}
}

// hideOnOff hides an actuator's OnOff, the way every actuator looked
// before issue 9, so a relay with cycle 0 runs as it used to.
type hideOnOff struct{ sensors.Actuator }

// TestOnOffSimPlant closes an on/off loop over the sim example's
// greenhouse (12 °C outside, 30 s heater lag, 10 s dead time) at 22.5 °C.
// Before issue 9 a relay with cycle 0 was PID output through the relay's
// 0.5 threshold: bang-bang with no hysteresis. Hysteresis mode must hold
// the band plus what the plant's lag adds, and obey relay protection.
func TestOnOffSimPlant(t *testing.T) {
	const lag = 0.35 // °C the heater's lag and dead time carry the air past a band edge
	cases := []struct {
		name   string
		edit   func(*Opts)
		before bool // the old behaviour, measured for the record
	}{
		{"before: pid through a relay, cycle 0", func(o *Opts) {}, true},
		{"hysteresis 0.3/0.3", func(o *Opts) {
			o.PID, o.Hysteresis = Gains{}, &Band{Below: 0.3, Above: 0.3}
		}, false},
		{"hysteresis 0.1/0.5, min_on 1m, min_off 2m", func(o *Opts) {
			o.PID, o.Hysteresis = Gains{}, &Band{Below: 0.1, Above: 0.5}
			o.MinOn, o.MinOff = time.Minute, 2*time.Minute
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := testOpts()
				o.Setpoint, o.PID = 22.5, Gains{Kp: 0.4, Ki: 0.002}
				tc.edit(&o)
				s := newSimDay(t, o)
				if tc.before {
					s.h.l.out = hideOnOff{s.relay}
				}
				peak, lo, hi := math.Inf(-1), math.Inf(1), math.Inf(-1)
				for at := time.Duration(0); at <= 6*time.Hour; at += 5 * time.Second {
					s.h.advanceTo(t0.Add(at))
					v := s.sense()
					peak = max(peak, v)
					if at >= 2*time.Hour {
						lo, hi = min(lo, v), max(hi, v)
					}
				}
				start, end := t0.Add(2*time.Hour), t0.Add(6*time.Hour)
				f := figures(pulsesAfter(pulsesOf(s.relay.history(), end), start), start, end, 0)
				t.Logf("overshoot %.3f °C, after 2 h %.3f..%.3f °C; %v", peak-o.Setpoint, lo, hi, f)
				if tc.before {
					return
				}
				b := o.Hysteresis
				if peak > o.Setpoint+b.Above+lag {
					t.Errorf("overshoot %.3f °C, want at most above %.1f + %.2f of lag", peak-o.Setpoint, b.Above, lag)
				}
				if lo < o.Setpoint-b.Below-lag || hi > o.Setpoint+b.Above+lag {
					t.Errorf("after 2 h %.3f..%.3f °C, want within %.1f-%.1f..%.1f+%.1f plus %.2f of lag", lo, hi, o.Setpoint, b.Below, o.Setpoint, b.Above, lag)
				}
				if f.shortestPulse < o.MinOn || f.shortestGap < o.MinOff || f.maxPerHour > o.MaxSwitchesPerHour {
					t.Errorf("relay protection broken: %v", f)
				}
				if st := s.h.l.State(); st.Fault != "" || st.Mode != ModeAuto {
					t.Errorf("state %+v", st)
				}
			})
		})
	}
}
