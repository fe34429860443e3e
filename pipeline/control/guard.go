package control

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/edged/edged/sensors"
)

// Runaway guards and the failure action (issue 9). A heater loop whose
// probe fell out of the house, or froze near the setpoint, drove the
// heater for hours on a wrong input. The guards decide when the input
// has failed and what the output does then; the Loop asks them at every
// step (guardLocked) and at every reading (guardReadingLocked).
//
// The order of precedence, from the top:
//
//  1. An actuator that fails goes to its safe state (stepLocked).
//  2. Mode off: the safe state.
//  3. Auto or manual with a latched cutoff: off (level 0) at once,
//     whatever relay protection says. A reading at or beyond the cutoff
//     latches it (also one beyond input_max or input_min on its side);
//     only a trusted reading back inside it releases it, so no failure
//     action overrides it.
//  4. Auto with a failed input (no fresh reading for stale_after, sensor
//     offline, outside input_min..input_max, stuck): on_input_failure.
//  5. Otherwise the regulator (auto) or the operator's output (manual).
//
// "Off" is level 0: no heating for a heater, no cooling for a cooler.
// So a direct-acting loop (heating: it raises its input) takes
// cutoff_above and a reverse-acting one (cooling) cutoff_below: forcing a
// heater off because it is cold would never protect anything.

// The values of Opts.OnInputFailure.
const (
	FailSafe  = "safe"
	FailHold  = "hold"
	FailFixed = "fixed"
)

// stuckEpsilon is how far, in input units, the input may move and still
// count as unchanged for stuck_after. A probe that is stuck returns the
// same number every time; the average and median filters may add float
// rounding of far less than this. A working sensor's noise and a working
// loop's effect on its input at a saturated output are far more.
const stuckEpsilon = 0.01

// saturationEpsilon is how close to output_min or output_max a PID
// output counts as saturated.
const saturationEpsilon = 1e-9

// More fault texts (prefixes) for tests and dashboards.
const (
	faultImplausible = "input implausible"
	faultStuck       = "input stuck"
	faultCutoff      = "cutoff"
)

// The values of State.Applied: what drives the output now.
const (
	AppliedPID        = "pid"        // the PID controller (auto)
	AppliedHysteresis = "hysteresis" // on/off control (auto)
	AppliedManual     = "manual"     // the operator's output
	AppliedSafe       = "safe"       // the actuator's safe state
	AppliedHold       = "hold"       // on_input_failure: hold
	AppliedFixed      = "fixed"      // on_input_failure: fixed
	AppliedCutoff     = "cutoff"     // a cutoff holds the output off
)

// guard is the guards' state, under Loop.mu.
type guard struct {
	timer sensors.Timer // wakes the loop when a hold ends; nil before Run

	// The current run towards stuck_after: since since, every reading
	// was within stuckEpsilon of ref and the regulator's output stayed
	// saturated at runOut.
	run    bool
	ref    float64
	runOut float64
	since  time.Time
	stuck  bool // declared stuck; it stays so until the input moves

	cutoff string // the cutoff in force, "" when none

	// The current input failure: when it began and, if the loop was
	// regulating then, the duty it applied (what hold keeps).
	failFrom time.Time
	canHold  bool
	holdDuty float64
	holdOver bool // logged: hold_for ran out

	applied string // AppliedHold, AppliedFixed or AppliedCutoff while the guards drive the output
}

// guardAct is what guardLocked decides.
type guardAct int

const (
	guardNone guardAct = iota // the mode decides
	guardOff                  // a cutoff: level 0 at once
	guardDuty                 // the failure action's duty, through the output path
)

// guardLocked decides whether a cutoff or the failure action drives the
// output at now, and with what duty. A latched cutoff comes first: no
// failure action (hold, fixed_output, a safe state that is on) may
// override it.
func (l *Loop) guardLocked(now time.Time) (guardAct, float64) {
	g := &l.guard
	g.applied = ""
	if g.cutoff != "" && l.mode != ModeOff {
		g.applied = AppliedCutoff
		return guardOff, 0
	}
	if l.mode != ModeAuto || l.inputFault == "" || l.inputFault == faultNoInput {
		return guardNone, 0
	}
	switch l.opts.OnInputFailure {
	case FailFixed:
		g.applied = AppliedFixed
		duty := *l.opts.FixedOutput
		if strings.HasPrefix(l.inputFault, faultStuck) {
			// Never drive harder than the run the input stuck at.
			duty = min(duty, g.runOut)
		}
		return guardDuty, duty
	case FailHold:
		if !g.canHold || !holdable(l.inputFault) {
			break
		}
		if now.Before(g.failFrom.Add(l.opts.HoldFor)) {
			g.applied = AppliedHold
			return guardDuty, g.holdDuty
		}
		if !g.holdOver {
			g.holdOver = true
			l.log.Warn("hold_for over: output to safe state", "hold_for", l.opts.HoldFor, "reason", l.inputFault, "actuator", l.out.String())
		}
	}
	return guardNone, 0
}

// cutoffReadingLocked latches or releases the cutoff from a reading v.
// A reading at or beyond a cutoff latches it, and so does an implausible
// one beyond it (above input_max for cutoff_above, below input_min for
// cutoff_below): a probe that fails high must not turn a heater back on.
// Only a trusted reading releases it, and only once it is
// cutoffRelease inside the cutoff; until then a failed input (stale,
// offline, implausible, stuck) keeps it.
func (l *Loop) cutoffReadingLocked(v float64, trusted bool) {
	o, g := &l.opts, &l.guard
	why := ""
	switch {
	case o.CutoffAbove != nil && v >= *o.CutoffAbove:
		why = fmt.Sprintf("%s: %s at or above cutoff_above %v: output off", faultCutoff, o.Input, *o.CutoffAbove)
	case o.CutoffBelow != nil && v <= *o.CutoffBelow:
		why = fmt.Sprintf("%s: %s at or below cutoff_below %v: output off", faultCutoff, o.Input, *o.CutoffBelow)
	}
	if why != "" {
		if g.cutoff == "" {
			l.log.Warn("output forced off", "reason", why, "input", v, "actuator", l.out.String())
		}
		g.cutoff = why
		return
	}
	if g.cutoff == "" || !trusted {
		return
	}
	switch {
	case o.CutoffAbove != nil && v > *o.CutoffAbove-cutoffRelease(*o.CutoffAbove, *o):
		return
	case o.CutoffBelow != nil && v < *o.CutoffBelow+cutoffRelease(*o.CutoffBelow, *o):
		return
	}
	l.log.Info("cutoff over", "input", o.Input, "value", v)
	g.cutoff = ""
}

// cutoffRelease is how far inside a cutoff the input must come back
// before the cutoff ends: released at the cutoff itself, an input that
// hovers there (35.0, 34.9, 35.0 at cutoff 35) would switch a relay at
// every reading, with pulses shorter than min_on, and use up
// max_switches_per_hour. It is the largest of cutoffReleaseMin, 0.5 % of
// the cutoff's magnitude and, for hysteresis, the band (below + above).
func cutoffRelease(cutoff float64, o Opts) float64 {
	r := max(cutoffReleaseMin, 0.005*math.Abs(cutoff))
	if h := o.Hysteresis; h != nil {
		r = max(r, h.Below+h.Above)
	}
	return r
}

// cutoffReleaseMin is the smallest release band of a cutoff, in input
// units: ten times stuckEpsilon, a step of most sensors.
const cutoffReleaseMin = 0.1

// guardFailLocked runs when the input fault changes, before it does. A
// failure that begins now (the input was fresh) starts the hold of the
// duty the loop applied.
func (l *Loop) guardFailLocked(now time.Time) {
	g := &l.guard
	g.run = false
	if l.inputFault != "" {
		return // the failure goes on, and its hold with it
	}
	g.failFrom, g.holdOver = now, false
	g.canHold, g.holdDuty = l.mode == ModeAuto, l.output
	if l.opts.OnInputFailure == FailHold && g.canHold && g.timer != nil {
		g.timer.Reset(l.opts.HoldFor)
	}
}

// holdable reports whether on_input_failure: hold applies to the input
// fault why. hold is for a sensor that went silent or offline, where the
// last output was sound. A stuck input held the output at a limit (a
// heater flat out while its probe lies on the floor), and an implausible
// one may have driven it anywhere: holding either keeps a runaway going,
// so they go to the safe state.
func holdable(why string) bool {
	return strings.HasPrefix(why, faultStale) || strings.HasPrefix(why, faultOffline)
}

// failureActionLocked names what an input failure does to the output,
// for the log.
func (l *Loop) failureActionLocked() string {
	switch {
	case l.opts.OnInputFailure == FailFixed:
		return fmt.Sprintf("fixed_output %v", *l.opts.FixedOutput)
	case l.opts.OnInputFailure == FailHold && l.guard.canHold && holdable(l.inputFault):
		return fmt.Sprintf("hold %.3g for at most %v", l.guard.holdDuty, l.opts.HoldFor)
	}
	return "safe state"
}

// guardReadingLocked checks a reading that is finite and fresh. It
// returns false when the reading must not reach the regulator: it is
// implausible, or the input is stuck; the input fault then says so.
func (l *Loop) guardReadingLocked(now time.Time, r sensors.Reading, stale sensors.Timer) bool {
	o := &l.opts
	why := ""
	switch {
	case o.InputMin != nil && r.Value < *o.InputMin:
		why = fmt.Sprintf("%s: %s below input_min %v", faultImplausible, o.Input, *o.InputMin)
	case o.InputMax != nil && r.Value > *o.InputMax:
		why = fmt.Sprintf("%s: %s above input_max %v", faultImplausible, o.Input, *o.InputMax)
	case l.stuckLocked(r):
		why = fmt.Sprintf("%s: %s within %v of %v for %v with the output saturated at %.3g", faultStuck, o.Input, stuckEpsilon, math.Round(l.guard.ref*1e4)/1e4, o.StuckAfter, l.guard.runOut)
	default:
		return true
	}
	if !strings.HasPrefix(why, faultStuck) {
		l.cutoffReadingLocked(r.Value, false)
	}
	// The sensor answers: this is not a stale input.
	stale.Reset(min(r.Time.Add(o.StaleAfter).Sub(now), o.StaleAfter))
	l.setInputFaultLocked(why)
	if !l.guard.stuck {
		l.guard.run = false
	}
	l.stepLocked(now)
	return false
}

// stuckLocked reports whether r leaves the input stuck: within
// stuckEpsilon of the run's first reading for stuck_after, with the
// regulator's output at output_max (hysteresis: on) all along, pushing
// the input towards the setpoint (automatic mode only; see
// drivesTowardsSetpoint). A loop that works moves its input when it
// drives it flat out. Once stuck, the input stays so until a reading
// moves by more than stuckEpsilon.
func (l *Loop) stuckLocked(r sensors.Reading) bool {
	g := &l.guard
	if l.opts.StuckAfter <= 0 {
		return false
	}
	moved := math.Abs(r.Value-g.ref) > stuckEpsilon
	if g.stuck {
		if !moved {
			return true
		}
		g.stuck, g.run = false, false
		l.log.Info("input moves again", "input", l.opts.Input, "value", r.Value)
	}
	out := l.pid.Output()
	switch {
	case l.mode != ModeAuto || !l.drivesTowardsSetpoint(out, r.Value):
		g.run = false
	case !g.run || moved || out != g.runOut || r.Time.Before(g.since):
		g.run, g.ref, g.runOut, g.since = true, r.Value, out, r.Time
	case r.Time.Sub(g.since) >= l.opts.StuckAfter:
		g.stuck, g.run = true, false
		return true
	}
	return false
}

// drivesTowardsSetpoint reports whether the regulator's output out is
// at output_max (for hysteresis: on) and pushes input v towards the
// setpoint: a heater flat out below it, a cooler flat out above it. Only
// such a run can be stuck. A warm room above the setpoint with the heater
// off holds still because it is warm, not because the probe froze, and
// calling it stuck turned the heater on (issue 9 review).
func (l *Loop) drivesTowardsSetpoint(out, v float64) bool {
	top := l.opts.OutputMax
	if l.opts.Hysteresis != nil {
		top = 0.5 // on
	}
	if out < top-saturationEpsilon {
		return false
	}
	if l.opts.Reverse() {
		return v > l.setpoint
	}
	return v < l.setpoint
}

// forceOffLocked is a cutoff's override: level 0 at once, whatever
// min_on says, and relay protection counts from here.
func (l *Loop) forceOffLocked(now time.Time) {
	l.output = 0
	l.cycleTimer.Stop()
	l.setLocked(now, 0, true)
}

// actionLocked says what drives the output, for the state.
func (l *Loop) appliedLocked() string {
	switch {
	case !l.running || l.isSafe:
		return AppliedSafe
	case l.guard.applied != "":
		return l.guard.applied
	case l.mode == ModeManual:
		return AppliedManual
	case l.opts.Hysteresis != nil:
		return AppliedHysteresis
	}
	return AppliedPID
}

// validateGuards checks the guard and failure action keys.
func (o *Opts) validateGuards() error {
	for _, f := range []struct {
		k string
		v *float64
	}{{"input_min", o.InputMin}, {"input_max", o.InputMax}, {"cutoff_above", o.CutoffAbove}, {"cutoff_below", o.CutoffBelow}, {"fixed_output", o.FixedOutput}} {
		if f.v != nil && (math.IsNaN(*f.v) || math.IsInf(*f.v, 0)) {
			return sensors.FieldErrorf(f.k, "must be finite")
		}
	}
	if o.InputMin != nil && o.InputMax != nil && *o.InputMin >= *o.InputMax {
		return sensors.FieldErrorf("input_max", "%v is not above input_min %v: no reading would be plausible", *o.InputMax, *o.InputMin)
	}
	if o.StuckAfter < 0 || o.StuckAfter > 24*time.Hour || o.StuckAfter > 0 && o.StuckAfter < time.Minute {
		return sensors.FieldErrorf("stuck_after", "%v is out of range (0 for never, or 1m..24h: long next to how long the input may hold still with the output at a limit)", o.StuckAfter)
	}
	if err := o.validateCutoffs(); err != nil {
		return err
	}
	switch o.OnInputFailure {
	case FailSafe, FailHold, FailFixed:
	default:
		return sensors.FieldErrorf("on_input_failure", "%q is not one of safe (the actuator's safe state), hold (the last output for hold_for), fixed (fixed_output)", o.OnInputFailure)
	}
	switch {
	case o.OnInputFailure == FailHold && o.HoldFor == 0:
		return sensors.FieldErrorf("on_input_failure", "hold needs hold_for: how long to keep the last output before the safe state (e.g. hold_for: 10m)")
	case o.HoldFor != 0 && o.OnInputFailure != FailHold:
		return sensors.FieldErrorf("hold_for", "applies to on_input_failure: hold only (it is %s)", o.OnInputFailure)
	case o.HoldFor < 0 || o.HoldFor > 24*time.Hour:
		return sensors.FieldErrorf("hold_for", "%v is out of range (1ns..24h)", o.HoldFor)
	case o.OnInputFailure == FailFixed && o.FixedOutput == nil:
		return sensors.FieldErrorf("on_input_failure", "fixed needs fixed_output: the output to apply while the input has failed (e.g. fixed_output: 0.2)")
	case o.FixedOutput != nil && o.OnInputFailure != FailFixed:
		return sensors.FieldErrorf("fixed_output", "applies to on_input_failure: fixed only (it is %s)", o.OnInputFailure)
	}
	if v := o.FixedOutput; v != nil {
		if *v < o.OutputMin || *v > o.OutputMax {
			return sensors.FieldErrorf("fixed_output", "%v is outside output_min..output_max %v..%v", *v, o.OutputMin, o.OutputMax)
		}
		if o.Hysteresis != nil && *v != 0 && *v != 1 {
			return sensors.FieldErrorf("fixed_output", "%v on a hysteresis loop: its output is on at 0.5 and above and off below; give 0 or 1 (or use a pid with a cycle to time-proportion it)", *v)
		}
	}
	return nil
}

// validateCutoffs checks the cutoffs against the action, the plausible
// range and the setpoints.
func (o *Opts) validateCutoffs() error {
	rev := o.Reverse()
	switch {
	case o.CutoffBelow != nil && !rev:
		return sensors.FieldErrorf("cutoff_below", "this loop acts direct (heating: its output raises the input), so forcing it off below %v would never protect anything; a probe that reads too low is input_min's job, a limit on heating is cutoff_above", *o.CutoffBelow)
	case o.CutoffAbove != nil && rev:
		return sensors.FieldErrorf("cutoff_above", "this loop acts in reverse (cooling: its output lowers the input), so forcing it off above %v would never protect anything; a probe that reads too high is input_max's job, a limit on cooling is cutoff_below", *o.CutoffAbove)
	}
	type bound struct {
		k string
		v *float64
	}
	// Each pair must be in this order, low to high, where both are given.
	for _, p := range [][2]bound{
		{{"input_min", o.InputMin}, {"cutoff_above", o.CutoffAbove}},
		{{"cutoff_above", o.CutoffAbove}, {"input_max", o.InputMax}},
		{{"input_min", o.InputMin}, {"cutoff_below", o.CutoffBelow}},
		{{"cutoff_below", o.CutoffBelow}, {"input_max", o.InputMax}},
		{{"setpoint", &o.Setpoint}, {"cutoff_above", o.CutoffAbove}},
		{{"setpoint_max", o.SetpointMax}, {"cutoff_above", o.CutoffAbove}},
		{{"cutoff_below", o.CutoffBelow}, {"setpoint", &o.Setpoint}},
		{{"cutoff_below", o.CutoffBelow}, {"setpoint_min", o.SetpointMin}},
	} {
		lo, hi := p[0], p[1]
		if lo.v == nil || hi.v == nil || *lo.v < *hi.v {
			continue
		}
		cut, other := hi, lo
		if strings.HasPrefix(lo.k, "cutoff") {
			cut, other = lo, hi
		}
		return sensors.FieldErrorf(cut.k, "%v is the wrong way round for %s %v: want %s < %s (a cutoff lies inside the plausible range, beyond the setpoints)", *cut.v, other.k, *other.v, lo.k, hi.k)
	}
	return nil
}
