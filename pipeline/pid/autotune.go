package pid

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Rule turns the ultimate gain and period a relay test found into PID
// gains.
type Rule string

// The tuning rules. Ziegler-Nichols tunes for a fast response with a
// quarter-amplitude decay (overshoot); Tyreus-Luyben is its detuned
// variant for less overshoot and more robustness, suited to processes
// with dead time such as heating.
const (
	RuleZieglerNicholsPID Rule = "zn_pid"
	RuleZieglerNicholsPI  Rule = "zn_pi"
	RuleTyreusLuybenPID   Rule = "tl_pid"
	RuleTyreusLuybenPI    Rule = "tl_pi"
)

// ruleFactors are each rule's Kp = kp·Ku, Ti = ti·Tu and Td = td·Tu.
var ruleFactors = map[Rule]struct{ kp, ti, td float64 }{
	RuleZieglerNicholsPID: {0.6, 0.5, 0.125},
	RuleZieglerNicholsPI:  {0.45, 1 / 1.2, 0},
	RuleTyreusLuybenPID:   {1 / 2.2, 2.2, 1 / 6.3},
	RuleTyreusLuybenPI:    {1 / 3.2, 2.2, 0},
}

// Rules lists the rules, sorted.
func Rules() []Rule {
	r := make([]Rule, 0, len(ruleFactors))
	for k := range ruleFactors {
		r = append(r, k)
	}
	slices.Sort(r)
	return r
}

// Check returns an error for a rule that is not one of Rules.
func (r Rule) Check() error {
	if _, ok := ruleFactors[r]; !ok {
		names := make([]string, 0, len(ruleFactors))
		for _, k := range Rules() {
			names = append(names, string(k))
		}
		return fmt.Errorf("pid: rule %q is not one of %s", string(r), strings.Join(names, ", "))
	}
	return nil
}

// Derivative reports whether the rule sets a derivative gain.
func (r Rule) Derivative() bool { return ruleFactors[r].td != 0 }

// Ultimate is what a relay test found: the gain at which a proportional
// controller would hold the process in a steady oscillation, and that
// oscillation's period.
type Ultimate struct {
	// Ku is the ultimate gain, output units per input unit.
	Ku float64
	// Tu is the ultimate period.
	Tu time.Duration
	// Amplitude is half the input's peak-to-peak swing.
	Amplitude float64
	// Bias is the relay's mean output: about the output the process
	// needs at the setpoint.
	Bias float64
}

// Gains returns the gains rule r gives for u, with the direct (positive)
// sign.
func (u Ultimate) Gains(r Rule) (Gains, error) {
	if err := r.Check(); err != nil {
		return Gains{}, err
	}
	f := ruleFactors[r]
	kp := f.kp * u.Ku
	ti := f.ti * u.Tu.Seconds()
	g := Gains{Kp: kp, Ki: kp / ti, Kd: kp * f.td * u.Tu.Seconds()}
	if !finite(g.Kp) || !finite(g.Ki) || !finite(g.Kd) || !(g.Kp > 0) {
		return Gains{}, fmt.Errorf("pid: no usable gains from Ku %v and Tu %v", u.Ku, u.Tu)
	}
	return g, nil
}

// RelayOpts configure a relay test.
type RelayOpts struct {
	// Setpoint is where the input oscillates.
	Setpoint float64
	// High and Low are the relay's two outputs, High > Low.
	High, Low float64
	// Hysteresis: the relay switches to Low when the input passes
	// Setpoint+Hysteresis and back to High below Setpoint-Hysteresis
	// (the other way round with Reverse), so noise does not chatter it.
	Hysteresis float64
	// Cycles is how many consecutive oscillation cycles must agree (in
	// amplitude and period within RelayTolerance) before the test ends;
	// at least 2.
	Cycles int
	// Reverse is for a process whose input falls as the output rises
	// (cooling).
	Reverse bool
}

// RelayTolerance is how far apart, as a ratio of largest to smallest,
// the amplitudes and periods of the cycles a relay test ends on may be.
const RelayTolerance = 1.25

// Relay runs the relay (Åström-Hägglund) test: it switches the output
// between High and Low as the input crosses the setpoint, measures the
// oscillation that follows, and once Cycles cycles agree returns the
// ultimate gain and period. The first cycle is never used: it carries
// the state the process was in.
//
// Like Controller it is pure: the caller passes the time of each input.
// A Relay is not safe for concurrent use.
type Relay struct {
	o      RelayOpts
	high   bool
	begun  bool
	rise   time.Duration // the latest switch to High
	fall   time.Duration // the latest switch to Low after rise
	rising bool          // rise holds a switch to High
	falls  bool          // fall holds a switch after rise
	lo, hi float64       // the input's extremes since rise
	n      int           // complete cycles
	latest relayCycle    // the latest complete cycle
	last   []relayCycle  // the latest o.Cycles complete cycles but the first, oldest first
	done   bool
	result Ultimate
}

type relayCycle struct {
	period, high time.Duration
	amplitude    float64
}

// NewRelay returns a relay test.
func NewRelay(o RelayOpts) (*Relay, error) {
	for _, v := range []float64{o.Setpoint, o.High, o.Low, o.Hysteresis} {
		if !finite(v) {
			return nil, fmt.Errorf("pid: relay options must be finite, have %+v", o)
		}
	}
	if !(o.High > o.Low) {
		return nil, fmt.Errorf("pid: relay high %v must be above low %v", o.High, o.Low)
	}
	if o.Hysteresis < 0 {
		return nil, fmt.Errorf("pid: relay hysteresis %v is negative", o.Hysteresis)
	}
	if o.Cycles < 2 {
		return nil, fmt.Errorf("pid: relay cycles %d: want at least 2", o.Cycles)
	}
	return &Relay{o: o, last: make([]relayCycle, 0, o.Cycles)}, nil
}

// Update takes the input measured at at (time since any fixed origin,
// increasing) and returns the relay's output. A NaN or infinite input is
// ignored. After the test is done the output stays where it is.
func (r *Relay) Update(input float64, at time.Duration) float64 {
	if !finite(input) || r.done {
		return r.Output()
	}
	e := r.o.Setpoint - input // > 0: the input wants more output
	if r.o.Reverse {
		e = -e
	}
	if !r.begun {
		r.begun, r.high = true, e > 0
		return r.Output()
	}
	r.lo, r.hi = math.Min(r.lo, input), math.Max(r.hi, input)
	switch {
	case r.high && e < -r.o.Hysteresis:
		r.high = false
		if r.rising {
			r.fall, r.falls = at, true
		}
	case !r.high && e > r.o.Hysteresis:
		r.high = true
		if r.rising && r.falls && at > r.rise {
			r.cycle(relayCycle{period: at - r.rise, high: r.fall - r.rise, amplitude: (r.hi - r.lo) / 2})
		}
		r.rise, r.rising, r.falls = at, true, false
		r.lo, r.hi = input, input
	}
	return r.Output()
}

// cycle records a complete cycle and ends the test when the latest
// cycles agree.
func (r *Relay) cycle(c relayCycle) {
	r.n++
	r.latest = c
	if r.n == 1 {
		return // the first cycle starts from wherever the process was
	}
	if len(r.last) == r.o.Cycles {
		r.last = append(r.last[:0], r.last[1:]...)
	}
	r.last = append(r.last, c)
	if len(r.last) < r.o.Cycles {
		return
	}
	minA, maxA := math.Inf(1), math.Inf(-1)
	minP, maxP := time.Duration(math.MaxInt64), time.Duration(0)
	var sumA float64
	var sumP, sumH time.Duration
	for _, c := range r.last {
		minA, maxA = math.Min(minA, c.amplitude), math.Max(maxA, c.amplitude)
		minP, maxP = min(minP, c.period), max(maxP, c.period)
		sumA, sumP, sumH = sumA+c.amplitude, sumP+c.period, sumH+c.high
	}
	if !(minA > 0) || maxA > RelayTolerance*minA || float64(maxP) > RelayTolerance*float64(minP) {
		return
	}
	n := float64(len(r.last))
	a := sumA / n
	duty := float64(sumH) / float64(sumP)
	// Describing function of a relay with hysteresis, extended to an
	// asymmetric one: the fundamental of a square wave between Low and
	// High with this duty has amplitude 2(High-Low)/π·sin(π·duty), and
	// the hysteresis shifts the crossing, which sqrt(a²-ε²) corrects.
	den := a*a - r.o.Hysteresis*r.o.Hysteresis
	if !(den > 0) {
		return
	}
	ku := 2 * (r.o.High - r.o.Low) * math.Sin(math.Pi*duty) / math.Pi / math.Sqrt(den)
	if !finite(ku) || !(ku > 0) {
		return
	}
	r.done = true
	r.result = Ultimate{
		Ku:        ku,
		Tu:        sumP / time.Duration(len(r.last)),
		Amplitude: a,
		Bias:      r.o.Low + duty*(r.o.High-r.o.Low),
	}
}

// Output returns the relay's output: High or Low.
func (r *Relay) Output() float64 {
	if r.high {
		return r.o.High
	}
	return r.o.Low
}

// Cycles returns how many complete cycles the test has seen.
func (r *Relay) Cycles() int { return r.n }

// Last returns the amplitude and period of the latest complete cycle,
// zero before the first.
func (r *Relay) Last() (amplitude float64, period time.Duration) {
	return r.latest.amplitude, r.latest.period
}

// Result returns what the test found, and whether it is done.
func (r *Relay) Result() (Ultimate, bool) { return r.result, r.done }
