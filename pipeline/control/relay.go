package control

import (
	"fmt"
	"math"
	"time"

	"github.com/edged/edged/pipeline/pid"
	"github.com/edged/edged/sensors"
)

// regulator turns the input into the output in automatic mode: the PID
// controller, or on/off hysteresis.
type regulator interface {
	// Update takes a fresh input and returns the new output (0..1).
	Update(setpoint, input float64, dt time.Duration) float64
	// Output returns the latest output.
	Output() float64
	// Reset takes over from output (bumpless transfer from manual).
	Reset(output float64)
}

var (
	_ regulator = (*pid.Controller)(nil)
	_ regulator = (*hysteresis)(nil)
)

// onOffer is implemented by actuators that only switch on and off (a
// relay). Such an actuator needs a cycle or hysteresis: a level passed
// straight through would make it bang-bang at 0.5 with no protection.
type onOffer interface{ OnOff() bool }

// hysteresis is on/off control: with direct action the output goes on
// when the input falls to setpoint-below and off when it rises to
// setpoint+above; reverse action (cooling) swaps the two. Between the
// edges it keeps its state.
type hysteresis struct {
	below, above float64
	reverse      bool
	on           bool
}

func (h *hysteresis) Update(setpoint, input float64, _ time.Duration) float64 {
	if math.IsNaN(setpoint) || math.IsNaN(input) || math.IsInf(setpoint, 0) || math.IsInf(input, 0) {
		return h.Output()
	}
	low, high := input <= setpoint-h.below, input >= setpoint+h.above
	switch {
	case low:
		h.on = !h.reverse
	case high:
		h.on = h.reverse
	}
	return h.Output()
}

func (h *hysteresis) Output() float64 {
	if h.on {
		return 1
	}
	return 0
}

func (h *hysteresis) Reset(output float64) { h.on = output >= 0.5 }

// switcher protects a switched output. It decides, from the duty the mode
// asks for (time-proportioned over windows of cycle) or from on/off
// demand (cycle 0: on for a duty >= 0.5), whether the output is on now,
// within these rules:
//
//   - a pulse lasts at least minOn and a gap at least minOff;
//   - at most one pulse overlaps a window, so a duty change mid-window
//     moves the end of the window's pulse but never starts a second one;
//   - at most maxPerHour switch-ons in any 60 minutes (0: no limit);
//   - a pulse longer than maxOn (0: no limit) is cut, followed by a gap of
//     at least minOff, and fault says so until the demand falls by itself.
//
// Safety overrides (safe state, stop) bypass it: the Loop calls Safe at
// once and tells the switcher with took, so the rules hold again from
// there. Durations are rounded to whole windows' worth of on time with an
// error carried to the next window, so the average duty is kept even
// where minOn and minOff forbid a short pulse or gap.
type switcher struct {
	cycle, minOn, minOff, maxOn time.Duration
	maxPerHour                  int

	on     bool
	since  time.Time // last switch; zero: long ago
	onFrom time.Time // start of the on time maxOn limits
	ons    []time.Time
	head   int // oldest entry of ons once it is full
	held   bool

	windowStart time.Time     // zero: no window open
	pulsed      bool          // a pulse overlapped the current window
	onInWindow  time.Duration // on time of the current window before since
	target      time.Duration // what the current window should be on for, unrounded
	carry       time.Duration // on time owed (+) or given in excess (-)

	forcedUntil time.Time // end of a forced gap after maxOn
	fault       string
	budgetFull  bool // logged: the switch budget holds the output off
}

func newSwitcher(o Opts) *switcher {
	s := &switcher{cycle: o.Cycle, minOn: o.MinOn, minOff: o.MinOff, maxOn: o.MaxOn, maxPerHour: o.MaxSwitchesPerHour}
	if s.maxPerHour > 0 {
		s.ons = make([]time.Time, 0, s.maxPerHour)
	}
	return s
}

// took records what the output did: on or off at now. safe says a safety
// override put it there (the safe state, which is on for an actuator with
// safe_state: on); the windows restart when control resumes.
func (s *switcher) took(now time.Time, on, safe bool) {
	if safe {
		s.windowStart, s.pulsed, s.onInWindow, s.carry = time.Time{}, false, 0, 0
		s.fault, s.held = "", true
	}
	if on == s.on {
		return
	}
	if on {
		if s.maxPerHour > 0 {
			if len(s.ons) < s.maxPerHour {
				s.ons = append(s.ons, now)
			} else {
				s.ons[s.head] = now
				s.head = (s.head + 1) % len(s.ons)
			}
		}
		s.onFrom = now
		s.pulsed = !s.windowStart.IsZero()
	} else if !s.windowStart.IsZero() {
		s.onInWindow += now.Sub(later(s.since, s.windowStart))
	}
	s.on, s.since = on, now
}

// budgetFree returns when the next switch-on fits in the hourly budget;
// zero means now.
func (s *switcher) budgetFree() time.Time {
	if s.maxPerHour == 0 || len(s.ons) < s.maxPerHour {
		return time.Time{}
	}
	return s.ons[s.head].Add(time.Hour)
}

// window rolls the window grid forward to now and returns whether the
// window's pulse is still due at now (a pulse starts at most once per
// window), with the end of the pulse and of the window.
func (s *switcher) window(now time.Time, duty float64) (due bool, pulseEnd, windowEnd time.Time) {
	c := s.cycle
	if s.windowStart.IsZero() || now.Before(s.windowStart) {
		s.openWindow(now)
	}
	if el := now.Sub(s.windowStart); el >= c {
		end := s.windowStart.Add(c)
		onTime := s.onInWindow
		if s.on {
			onTime += end.Sub(later(s.since, s.windowStart))
		}
		s.carry = clampDur(s.target-onTime, max(s.minOn, s.minOff))
		if el >= 2*c {
			s.carry = 0 // windows went by unobserved; start afresh
		}
		s.openWindow(s.windowStart.Add(el / c * c))
	}
	s.target = clampDur(time.Duration(math.Round(duty*float64(c)))+s.carry, c)
	if s.target < 0 {
		s.target = 0
	}
	p := s.rounded(s.target)
	windowEnd = s.windowStart.Add(c)
	return now.Before(s.windowStart.Add(p)), s.windowStart.Add(p), windowEnd
}

// openWindow starts a window at start; a pulse still on overlaps it.
func (s *switcher) openWindow(start time.Time) {
	s.windowStart, s.onInWindow, s.pulsed = start, 0, s.on
}

// rounded is the on time of a window that should be on for t: no pulse
// shorter than minOn, no gap before the next window shorter than minOff.
func (s *switcher) rounded(t time.Duration) time.Duration {
	c := s.cycle
	if t < s.minOn {
		if t*2 < s.minOn || t == 0 {
			return 0
		}
		return s.minOn
	}
	if c-t < s.minOff && t < c {
		if (c-t)*2 < s.minOff {
			return c
		}
		return c - s.minOff
	}
	return t
}

// level decides whether the output is on at now for duty, and returns
// when to decide again (zero: only on the next event). note is a change
// worth a log line.
func (s *switcher) level(now time.Time, duty float64) (on bool, wake time.Time, note string) {
	if now.Before(s.since) {
		// The clock went back (a fake or wall clock; the system clock's
		// monotonic reading never does): do not hold the output for the
		// jump. Count the rules' times as elapsed.
		s.since = now.Add(-max(s.minOn, s.minOff))
		s.onFrom, s.forcedUntil, s.ons, s.head = s.since, time.Time{}, s.ons[:0], 0
	}
	// demand is what the duty asks for now; want is what the window
	// rule allows of it.
	var demand, want bool
	var wants []time.Time // times at which want may change
	pulseEnd := time.Time{}
	if s.cycle > 0 {
		due, end, windowEnd := s.window(now, duty)
		// Once this window's pulse has started it may go on to its end,
		// however the duty moves; after it ended, nothing until the next
		// window.
		demand, want = due, due && (s.on || !s.pulsed)
		pulseEnd = end
		wants = append(wants, end, windowEnd)
	} else {
		demand = duty >= 0.5
		want = demand
	}
	leaving := s.held
	s.held = false
	if leaving && s.on {
		s.onFrom = now // max_on counts from the end of the safe state
	}

	on = s.on
	switch {
	case s.on && s.maxOn > 0 && now.Sub(s.onFrom) >= s.maxOn && now.Sub(s.since) >= s.minOn:
		on = false
		s.forcedUntil = now.Add(s.minOff)
		s.fault = fmt.Sprintf("%s: on for max_on %v, forced off for at least min_off %v", faultOutput, s.maxOn, s.minOff)
		note = s.fault
	case s.on && !want && now.Sub(s.since) >= s.minOn:
		on = false
	case !s.on && want && s.cycle > 0 && pulseEnd.Sub(now)*2 < s.minOn:
		// Too little of the pulse is left to be worth a switch: the
		// carry gives it to the next window.
	case !s.on && want && now.Sub(s.since) >= s.minOff && !now.Before(s.forcedUntil):
		if free := s.budgetFree(); !free.IsZero() && now.Before(free) {
			if !s.budgetFull {
				s.budgetFull = true
				note = fmt.Sprintf("max_switches_per_hour %d reached: output held off until %s", s.maxPerHour, free.UTC().Format(time.TimeOnly))
			}
			break
		}
		s.budgetFull = false
		on = true
	}
	if !demand && s.fault != "" && !now.Before(s.forcedUntil) {
		s.fault = "" // the demand fell by itself: whatever held it is over
	}

	// Wake at the next time a rule or the demand may change the answer.
	since, onFrom := s.since, s.onFrom
	if on != s.on {
		since = now
		if on {
			onFrom = now
		}
	}
	cands := append(wants, since.Add(s.minOn), since.Add(s.minOff), s.forcedUntil, s.budgetFree())
	if on && s.maxOn > 0 {
		cands = append(cands, onFrom.Add(s.maxOn))
	}
	for _, c := range cands {
		if c.After(now) && (wake.IsZero() || c.Before(wake)) {
			wake = c
		}
	}
	return on, wake, note
}

// switchLevelLocked turns duty into on (1) or off (0) under the relay
// protection rules and arms the cycle timer for the next decision.
func (l *Loop) switchLevelLocked(now time.Time, duty float64) float64 {
	on, wake, note := l.sw.level(now, duty)
	if note != "" {
		l.log.Warn("relay protection", "actuator", l.out.String(), "event", note)
	}
	if wake.IsZero() {
		l.cycleTimer.Stop()
	} else {
		l.cycleTimer.Reset(wake.Sub(now))
	}
	if on {
		return 1
	}
	return 0
}

// tookLocked tells the switcher, if any, what the actuator did.
func (l *Loop) tookLocked(now time.Time, safe bool) {
	if l.sw != nil {
		l.sw.took(now, l.out.Level() >= 0.5, safe)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func clampDur(d, limit time.Duration) time.Duration {
	return max(-limit, min(d, limit))
}

// newRegulator makes the loop's regulator from opts and, for a switched
// output, its switcher. An actuator that only switches on and off needs a
// cycle or hysteresis.
func newRegulator(o Opts, out sensors.Actuator) (regulator, *switcher, error) {
	if oo, ok := out.(onOffer); ok && oo.OnOff() && !o.switched() {
		return nil, nil, fmt.Errorf("actuator %s switches on and off: set cycle (e.g. 60s) for PID, or hysteresis: {below: 0.3, above: 0.3} instead of pid", out)
	}
	var sw *switcher
	if o.switched() {
		sw = newSwitcher(o)
	}
	if b := o.Hysteresis; b != nil {
		return &hysteresis{below: b.Below, above: b.Above, reverse: o.Action == ActionReverse}, sw, nil
	}
	c, err := pid.New(pid.Gains(o.PID), o.OutputMin, o.OutputMax)
	if err != nil {
		return nil, nil, err
	}
	return c, sw, nil
}
