package control

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/edged/edged/pipeline/pid"
)

// Autotune defaults and bounds. The band and the hysteresis are in the
// input's unit; the defaults suit a temperature loop in °C.
const (
	DefaultAutotuneHysteresis  = 0.1
	DefaultAutotuneAbortBand   = 3
	DefaultAutotuneMaxDuration = 2 * time.Hour
	DefaultAutotuneCycles      = 3
	DefaultAutotuneRule        = pid.RuleTyreusLuybenPI

	minAutotuneDuration = time.Minute
	maxAutotuneDuration = 24 * time.Hour
	maxAutotuneCycles   = 20
)

// The values of AutotuneState.Status.
const (
	AutotuneRunning = "running"
	AutotuneDone    = "done"
	AutotuneFailed  = "failed"
	AutotuneAborted = "aborted"
)

// AutotuneState is the autotune part of State: the test running, or how
// the latest one ended (until the next one starts or edged restarts).
type AutotuneState struct {
	// Status is running, done (gains applied and saved), failed (the
	// gains found are not allowed; nothing applied) or aborted.
	Status string `json:"status"`
	Rule   string `json:"rule"`
	// Cycles counts complete oscillation cycles.
	Cycles int `json:"cycles"`
	// Amplitude (half the input's swing, input units) and PeriodS
	// (seconds) are those of the latest cycle while running, and the mean
	// of the cycles used once done.
	Amplitude float64 `json:"amplitude,omitempty"`
	PeriodS   float64 `json:"period_s,omitempty"`
	// Ku is the ultimate gain found, output units per input unit.
	Ku float64 `json:"ku,omitempty"`
	// Gains are the gains found: applied when done, refused when failed.
	Gains  *StateGains `json:"gains,omitempty"`
	Reason string      `json:"reason,omitempty"`
}

// autotuneReq is the autotune field of a command; nil fields take their
// defaults (see autotuneOpts).
type autotuneReq struct {
	high, low, hysteresis, band *float64
	maxDuration                 *time.Duration
	cycles                      *int
	rule                        *pid.Rule
}

// autotuneOpts is an autotune command with its defaults filled in.
type autotuneOpts struct {
	high, low, hysteresis, band float64
	maxDuration                 time.Duration
	cycles                      int
	rule                        pid.Rule
}

// autotune is a relay test in progress.
type autotune struct {
	opts     autotuneOpts
	relay    *pid.Relay
	start    time.Time
	setpoint float64
}

const autotuneExample = `{"autotune": {"output_high": 1, "output_low": 0, "abort_band": 3, "max_duration": "2h", "rule": "tl_pi"}}`

// parseAutotune reads the object of an autotune command strictly.
func parseAutotune(raw json.RawMessage, number func(string, json.RawMessage) (*float64, error)) (*autotuneReq, error) {
	var fields map[string]json.RawMessage
	if bytes.Equal(raw, []byte("null")) || json.Unmarshal(raw, &fields) != nil {
		return nil, fmt.Errorf("%w: autotune: want an object such as %s ({} for the defaults), have %s", ErrCommand, autotuneExample, raw)
	}
	var r autotuneReq
	for key, v := range fields {
		var err error
		switch key {
		case "output_high":
			r.high, err = number("autotune: "+key, v)
		case "output_low":
			r.low, err = number("autotune: "+key, v)
		case "hysteresis":
			r.hysteresis, err = number("autotune: "+key, v)
		case "abort_band":
			r.band, err = number("autotune: "+key, v)
		case "max_duration":
			var s string
			var d time.Duration
			if bytes.Equal(v, []byte("null")) || json.Unmarshal(v, &s) != nil {
				return nil, fmt.Errorf("%w: autotune: max_duration: want a duration such as \"2h\", have %s", ErrCommand, v)
			}
			if d, err = time.ParseDuration(s); err != nil {
				return nil, fmt.Errorf("%w: autotune: max_duration: want a duration such as \"2h\", have %s", ErrCommand, v)
			}
			r.maxDuration = &d
		case "cycles":
			var n *float64
			if n, err = number("autotune: "+key, v); err == nil {
				if *n != math.Trunc(*n) || *n < 2 || *n > maxAutotuneCycles {
					return nil, fmt.Errorf("%w: autotune: cycles %s: want a whole number 2..%d", ErrCommand, v, maxAutotuneCycles)
				}
				c := int(*n)
				r.cycles = &c
			}
		case "rule":
			var s string
			if bytes.Equal(v, []byte("null")) || json.Unmarshal(v, &s) != nil {
				return nil, fmt.Errorf("%w: autotune: rule: want a string such as \"tl_pi\", have %s", ErrCommand, v)
			}
			rule := pid.Rule(s)
			r.rule = &rule
		default:
			err = fmt.Errorf("%w: autotune: unknown field %s (want output_high, output_low, hysteresis, abort_band, max_duration, cycles or rule)", ErrCommand, strconv.Quote(key))
		}
		if err != nil {
			return nil, err
		}
	}
	return &r, nil
}

// autotuneOpts fills in the defaults of r and checks it against the
// loop's config: the output levels within output_min..output_max, low
// below high, a band wider than the hysteresis, a rule whose gains the
// gain limits allow at all.
func (l *Loop) autotuneOpts(r autotuneReq) (autotuneOpts, error) {
	o := autotuneOpts{
		high: l.opts.OutputMax, low: l.opts.OutputMin,
		hysteresis: DefaultAutotuneHysteresis, band: DefaultAutotuneAbortBand,
		maxDuration: DefaultAutotuneMaxDuration, cycles: DefaultAutotuneCycles, rule: DefaultAutotuneRule,
	}
	set := func(dst *float64, p *float64) {
		if p != nil {
			*dst = *p
		}
	}
	set(&o.high, r.high)
	set(&o.low, r.low)
	set(&o.hysteresis, r.hysteresis)
	set(&o.band, r.band)
	if r.maxDuration != nil {
		o.maxDuration = *r.maxDuration
	}
	if r.cycles != nil {
		o.cycles = *r.cycles
	}
	if r.rule != nil {
		o.rule = *r.rule
	}
	lo, hi := l.opts.OutputMin, l.opts.OutputMax
	switch {
	case !(o.high >= lo && o.high <= hi):
		return o, fmt.Errorf("autotune: output_high %v is outside output_min..output_max (%v..%v)", o.high, lo, hi)
	case !(o.low >= lo && o.low <= hi):
		return o, fmt.Errorf("autotune: output_low %v is outside output_min..output_max (%v..%v)", o.low, lo, hi)
	case !(o.high > o.low):
		return o, fmt.Errorf("autotune: output_high %v must be above output_low %v", o.high, o.low)
	case !(o.band > 0) || math.IsInf(o.band, 0):
		return o, fmt.Errorf("autotune: abort_band %v: want a finite number > 0 (input units around the setpoint)", o.band)
	case !(o.hysteresis >= 0) || !(o.hysteresis < o.band):
		return o, fmt.Errorf("autotune: hysteresis %v: want a number >= 0 and below abort_band %v", o.hysteresis, o.band)
	case o.maxDuration < minAutotuneDuration || o.maxDuration > maxAutotuneDuration:
		return o, fmt.Errorf("autotune: max_duration %v is out of range (%v..%v)", o.maxDuration, minAutotuneDuration, maxAutotuneDuration)
	case o.cycles < 2 || o.cycles > maxAutotuneCycles:
		return o, fmt.Errorf("autotune: cycles %d is out of range (2..%d)", o.cycles, maxAutotuneCycles)
	}
	if err := o.rule.Check(); err != nil {
		return o, fmt.Errorf("autotune: %w", err)
	}
	if o.rule.Derivative() && l.opts.maxGains().Kd == 0 {
		return o, fmt.Errorf("autotune: rule %s sets kd, but this loop's kd is limited to 0 (set gain_limits: {kd: ...}, or use a PI rule: zn_pi, tl_pi)", o.rule)
	}
	return o, nil
}

// checkAutotuneLocked checks what an autotune command needs of the
// loop's state: running in mode auto with a fresh input within the
// abort band, no output fault, no test running.
func (l *Loop) checkAutotuneLocked(o autotuneOpts) error {
	switch {
	case !l.running:
		return fmt.Errorf("%w: autotune: the loop is not running", ErrCommand)
	case l.tune.at != nil:
		return fmt.Errorf("%w: autotune: already running (send {\"mode\": \"auto\"} to abort it)", ErrCommand)
	case l.mode != ModeAuto:
		return fmt.Errorf("%w: autotune: needs mode auto, the loop is %s (send {\"mode\": \"auto\"} first)", ErrCommand, l.mode)
	case !l.hasInput || l.inputFault != "":
		return fmt.Errorf("%w: autotune: no fresh input (%s)", ErrCommand, l.inputFault)
	case math.Abs(l.input-l.setpoint) > o.band:
		return fmt.Errorf("%w: autotune: input %v is outside setpoint %v ± abort_band %v", ErrCommand, l.input, l.setpoint, o.band)
	}
	if f := l.faultLocked(); f != "" {
		return fmt.Errorf("%w: autotune: the output has a fault: %s", ErrCommand, f)
	}
	return nil
}

// startAutotuneLocked starts a checked relay test on the current
// setpoint. The PID is left as it is (gains and integral) until the test
// ends.
func (l *Loop) startAutotuneLocked(o autotuneOpts, now time.Time, source string) {
	relay, err := pid.NewRelay(pid.RelayOpts{
		Setpoint: l.setpoint, High: o.high, Low: o.low, Hysteresis: o.hysteresis,
		Cycles: o.cycles, Reverse: l.opts.reverse(),
	})
	if err != nil {
		// autotuneOpts checked every field NewRelay checks.
		l.log.Error("autotune not started", "error", err)
		return
	}
	l.tune.at = &autotune{opts: o, relay: relay, start: now, setpoint: l.setpoint}
	l.tune.atState = &AutotuneState{Status: AutotuneRunning, Rule: string(o.rule)}
	relay.Update(l.input, 0)
	l.log.Info("autotune started", "client", source, "setpoint", l.setpoint, "output_high", o.high, "output_low", o.low,
		"hysteresis", o.hysteresis, "abort_band", o.band, "max_duration", o.maxDuration, "cycles", o.cycles, "rule", o.rule)
}

// autotuneLocked takes a fresh reading during a relay test: it aborts the
// test when the input left the band or the time is up, and ends it with
// the gains once the oscillation is steady.
func (l *Loop) autotuneLocked(now time.Time, v float64) {
	a := l.tune.at
	if math.Abs(v-a.setpoint) > a.opts.band {
		l.abortAutotuneLocked(fmt.Sprintf("input %v left setpoint %v ± abort_band %v", round4(v), a.setpoint, a.opts.band))
		return
	}
	if el := now.Sub(a.start); el > a.opts.maxDuration {
		l.abortAutotuneLocked(fmt.Sprintf("no steady oscillation within max_duration %v (%d cycles)", a.opts.maxDuration, a.relay.Cycles()))
		return
	}
	a.relay.Update(v, now.Sub(a.start))
	amp, period := a.relay.Last()
	st := *l.tune.atState
	st.Cycles, st.Amplitude, st.PeriodS = a.relay.Cycles(), round4(amp), round4(period.Seconds())
	l.tune.atState = &st
	if u, done := a.relay.Result(); done {
		l.finishAutotuneLocked(u)
	}
}

// autotuneDutyLocked is the output in auto mode: the relay's during a
// test, else the PID's.
func (l *Loop) autotuneDutyLocked() float64 {
	if a := l.tune.at; a != nil {
		return a.relay.Output()
	}
	return l.pid.Output()
}

// autotuneFaultLocked aborts a relay test when anything keeps the output
// from following it: the input stale or offline, the actuator failing,
// relay protection cutting a pulse. The fault itself has put the output
// in its safe state, or holds it off.
func (l *Loop) autotuneFaultLocked() {
	if l.tune.at == nil || !l.running {
		return
	}
	for _, f := range []string{l.inputFault, l.setErr, l.safeErr, l.swFault()} {
		if f != "" {
			l.abortAutotuneLocked("fault: " + f)
			return
		}
	}
}

func (l *Loop) swFault() string {
	if l.sw == nil {
		return ""
	}
	return l.sw.fault
}

// finishAutotuneLocked ends a test that found u: it applies the rule's
// gains through the path of a gains command (so they are checked against
// gain_limits, logged and saved), or fails without applying anything.
func (l *Loop) finishAutotuneLocked(u pid.Ultimate) {
	a := l.tune.at
	st := *l.tune.atState
	st.Amplitude, st.PeriodS, st.Ku = round4(u.Amplitude), round4(u.Tu.Seconds()), round4(u.Ku)
	g, err := u.Gains(a.opts.rule)
	if err == nil && l.opts.reverse() {
		g = pid.Gains{Kp: -g.Kp, Ki: -g.Ki, Kd: -g.Kd}
	}
	if err == nil {
		sg := StateGains(g)
		st.Gains = &sg
		err = l.opts.checkGains(Gains(g))
	}
	l.tune.at = nil
	ctl := l.ctl()
	if err != nil {
		st.Status, st.Reason = AutotuneFailed, "found gains not applied: "+err.Error()
		l.tune.atState = &st
		ctl.Restart()
		l.log.Warn("autotune failed", "reason", st.Reason, "ku", u.Ku, "tu", u.Tu)
		return
	}
	st.Status = AutotuneDone
	l.tune.atState = &st
	gains := Gains(g)
	l.applyTuningLocked(command{gains: &gains, source: "autotune"})
	l.dirty = true
	// The relay's mean output is what the process needs at the setpoint:
	// start the PID from it, as a warm start does from a saved integral.
	ctl.SetIntegral(u.Bias)
	ctl.Restart()
	l.log.Info("autotune done", "rule", a.opts.rule, "ku", u.Ku, "tu", u.Tu, "amplitude", u.Amplitude, "gains", fmtGains(gains))
}

// abortAutotuneLocked ends a running test without touching the gains:
// the PID takes over again from where it was before the test (warm
// start), and the state says why.
func (l *Loop) abortAutotuneLocked(reason string) {
	if l.tune.at == nil {
		return
	}
	l.tune.at = nil
	st := *l.tune.atState
	st.Status, st.Reason = AutotuneAborted, reason
	l.tune.atState = &st
	if ctl := l.ctl(); ctl != nil {
		ctl.Restart()
	}
	l.log.Warn("autotune aborted", "reason", reason)
}

// autotuneStateLocked returns a copy of the autotune state for State.
func (l *Loop) autotuneStateLocked() *AutotuneState {
	if l.tune.atState == nil {
		return nil
	}
	st := *l.tune.atState
	return &st
}

func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// abortAutotuneByCommandLocked ends a running test when a command other
// than autotune arrives: the operator takes over.
func (l *Loop) abortAutotuneByCommandLocked(c command) {
	if l.tune.at == nil || c.autotune != nil {
		return
	}
	who := c.source
	if who == "" {
		who = "a local caller"
	}
	l.abortAutotuneLocked("stopped by a command from " + who)
}
