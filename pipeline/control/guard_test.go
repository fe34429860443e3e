package control

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// guardOpts is testOpts (kp 0.1, setpoint 20, stale_after 30s) with
// every guard: plausible 0..60, stuck after 2m, cutoff above 35.
func guardOpts(action string) Opts {
	o := testOpts()
	o.InputMin, o.InputMax = f64(0), f64(60)
	o.StuckAfter = 2 * time.Minute
	o.CutoffAbove = f64(35)
	o.OnInputFailure = action
	switch action {
	case FailHold:
		o.HoldFor = 5 * time.Minute
	case FailFixed:
		o.FixedOutput = f64(0.2)
	}
	return o
}

// TestGuardFailures runs each input failure against each failure action,
// reading every 5 s from a healthy start (19 °C: output 0.1). Each must
// reach its action within its bound with the right fault, and a good
// reading must end it. A cutoff forces the output off whatever the
// action.
func TestGuardFailures(t *testing.T) {
	const interval = 5 * time.Second
	type fault struct {
		name   string
		value  func(i int) (v float64, ok bool) // the i-th reading after the fault starts; !ok: none
		prefix string
		bound  time.Duration // from the fault's start to its action
		offer  bool          // Availability(false) at the start: the Poller gave up on an erroring sensor
		cutoff bool
		stuck  bool
	}
	faults := []fault{
		{name: "silent", value: func(int) (float64, bool) { return 0, false }, prefix: faultStale, bound: 30 * time.Second},
		{name: "erroring", value: func(int) (float64, bool) { return 0, false }, prefix: faultOffline, bound: 0, offer: true},
		{name: "implausible", value: func(int) (float64, bool) { return -5, true }, prefix: faultImplausible, bound: 0},
		// Above input_max is beyond cutoff_above too: the cutoff wins
		// over the failure action.
		{name: "implausible high", value: func(int) (float64, bool) { return 85, true }, prefix: faultImplausible, bound: 0, cutoff: true},
		// 5 °C: plausible, 15 below the setpoint, so the output saturates
		// at once; stuck once it held for stuck_after (2m) at a reading.
		{name: "stuck", value: func(int) (float64, bool) { return 5, true }, prefix: faultStuck, bound: 2*time.Minute + interval, stuck: true},
		{name: "beyond cutoff", value: func(i int) (float64, bool) { return 36 + 0.1*float64(i%3), true }, prefix: faultCutoff, bound: 0, cutoff: true},
	}
	for _, action := range []string{FailSafe, FailHold, FailFixed} {
		for _, f := range faults {
			t.Run(action+"/"+f.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					o := guardOpts(action)
					h := startHarness(t, o, "")
					for at := time.Duration(0); at < time.Minute; at += interval {
						h.advanceTo(h.at(at))
						h.read(19)
					}
					if s := h.l.State(); s.Applied != AppliedPID || !near(s.Output, 0.1) || s.Fault != "" {
						t.Fatalf("healthy state %+v", s)
					}
					start := h.at(time.Minute)
					wantApplied, wantOut := AppliedSafe, 0.0
					switch {
					case f.cutoff:
						wantApplied = AppliedCutoff
					case action == FailHold && (f.stuck || f.prefix == faultImplausible):
						// hold is for a silent or offline sensor only.
					case action == FailHold:
						wantApplied, wantOut = AppliedHold, 0.1
					case action == FailFixed:
						wantApplied, wantOut = AppliedFixed, 0.2
					}
					if f.offer {
						h.advanceTo(start)
						h.l.Availability("air", false)
						h.settle()
					}
					// step moves to at since start, feeding the fault's
					// readings every interval.
					i := 0
					step := func(at time.Duration) {
						h.advanceTo(start.Add(at))
						if at%interval == 0 {
							if v, ok := f.value(i); ok {
								h.read(v)
							}
							i++
						}
					}
					var reached time.Duration = -1
					for at := time.Duration(0); at <= f.bound+time.Minute && reached < 0; at += time.Second {
						step(at)
						s := h.l.State()
						if strings.HasPrefix(s.Fault, f.prefix) && s.Applied == wantApplied {
							reached = at
							if !near(s.Output, wantOut) || !near(h.act.Level(), wantOut) || s.Input != nil && !f.cutoff {
								t.Errorf("at %v: state %+v, actuator %v; want output %v", at, s, h.act.Level(), wantOut)
							}
						}
					}
					t.Logf("%s, on_input_failure %s: %s after %v (bound %v)", f.name, action, wantApplied, reached, f.bound)
					if reached < 0 || reached > f.bound {
						t.Fatalf("reached %s %v after the fault began, want within %v; state %+v", wantApplied, reached, f.bound, h.l.State())
					}
					logged := f.prefix
					if f.cutoff {
						logged = "output forced off"
					}
					if n := h.logs.count(logged); n != 1 {
						t.Errorf("logged %q %d times, want once:\n%s", logged, n, h.logs)
					}
					if wantApplied == AppliedHold {
						// hold_for (5m) after the failure began: safe.
						for at := reached + time.Second; at < reached+o.HoldFor; at += time.Second {
							step(at)
						}
						if s := h.l.State(); s.Applied != AppliedHold {
							t.Errorf("1s before hold_for ran out: %+v", s)
						}
						step(reached + o.HoldFor)
						if s := h.l.State(); s.Applied != AppliedSafe || s.Output != 0 || !strings.HasPrefix(s.Fault, f.prefix) {
							t.Errorf("when hold_for ran out: %+v", s)
						}
						if n := h.logs.count("hold_for over"); n != 1 {
							t.Errorf("logged the end of the hold %d times, want once", n)
						}
					}
					// A good reading ends the failure.
					h.clk.Advance(time.Second)
					h.read(19.5)
					if s := h.l.State(); s.Applied != AppliedPID || s.Fault != "" || s.Input == nil {
						t.Errorf("after a good reading: %+v", s)
					}
				})
			})
		}
	}
}

// TestOutputReportsSafeStateOnIssue9 pins the bug of issue 9: the state
// said output 0 while a safe_state: on actuator held the relay on.
func TestOutputReportsSafeStateOnIssue9(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testOpts(), "")
		act := safeOnActuator{h.act}
		h.l.out = act
		h.start()
		h.read(19) // 0.1
		if s := h.l.State(); s.Output != 0.1 || s.Applied != AppliedPID {
			t.Fatalf("healthy: %+v", s)
		}
		h.advanceTo(h.at(time.Minute))
		if s := h.l.State(); s.Output != 1 || s.Applied != AppliedSafe || act.Level() != 1 {
			t.Errorf("stale with safe_state on: state %+v, actuator %v; want output 1", s, act.Level())
		}
		h.command(`{"mode":"off"}`)
		if s := h.l.State(); s.Output != 1 || s.Applied != AppliedSafe {
			t.Errorf("off with safe_state on: state %+v; want output 1", s)
		}
	})
}

// TestGuardFaultPublishedOnce feeds a minute of implausible readings:
// the fault is published once and logged once.
func TestGuardFaultPublishedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, guardOpts(FailSafe), "")
		h.read(19)
		h.advanceTo(h.at(5 * time.Second))
		h.pub.take()
		for at := 10 * time.Second; at <= 70*time.Second; at += 5 * time.Second {
			h.advanceTo(h.at(at))
			h.read(85 + float64(at/time.Second%3))
		}
		n := 0
		for _, m := range h.pub.take() {
			if strings.Contains(m.payload, faultImplausible) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("published the fault %d times, want once", n)
		}
		if n := h.logs.count(faultImplausible); n != 1 {
			t.Errorf("logged the fault %d times, want once", n)
		}
	})
}

// TestCutoffOverridesMinOn: a relay on a cycle, on 1 s into its 10 s
// min_on, goes off at once at the cutoff, and min_off counts from there.
func TestCutoffOverridesMinOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := guardOpts(FailSafe)
		o.Cycle = time.Minute
		h := startHarness(t, o, "")
		h.act.take()
		h.read(5) // duty 1: on
		h.advanceTo(h.at(time.Second))
		h.read(36)
		if got, want := h.act.take(), []call{{"set", 1, 0}, {"set", 0, time.Second}}; !callsEqual(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
		// Back below the cutoff and far below the setpoint: on again after
		// min_off (10 s) from the cutoff.
		h.advanceTo(h.at(2 * time.Second))
		h.read(5)
		h.advanceTo(h.at(20 * time.Second))
		if got, want := h.act.take(), []call{{"set", 1, 11 * time.Second}}; !callsEqual(got, want) {
			t.Errorf("after the cutoff: %v, want %v", got, want)
		}
	})
}

// TestFixedOutputIsRelayProtected: fixed_output 0.2 on a relay with a
// 60 s cycle is time-proportioned through the same path as the PID's
// output: 12 s on per window.
func TestFixedOutputIsRelayProtected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := guardOpts(FailFixed)
		o.Cycle = time.Minute
		h := startHarness(t, o, "")
		h.read(25) // duty 0: off
		h.advanceTo(h.at(5 * time.Minute))
		h.act.take()
		h.advanceTo(h.at(10 * time.Minute))
		var on time.Duration
		calls := h.act.take()
		for i, c := range calls {
			if c.op == "set" && c.level == 1 && i+1 < len(calls) {
				on += calls[i+1].at - c.at
			}
		}
		if s := h.l.State(); s.Applied != AppliedFixed || !near(s.Output, 0.2) {
			t.Errorf("state %+v", s)
		}
		if on < 4*12*time.Second || on > 5*12*time.Second {
			t.Errorf("on %v in 5 windows, want about 60s: %v", on, calls)
		}
	})
}

func TestValidateGuards(t *testing.T) {
	cases := []struct {
		name string
		edit func(o *Opts)
		want string // prefix of the error; "" for none
	}{
		{"defaults", func(o *Opts) {}, ""},
		{"all", func(o *Opts) { *o = guardOpts(FailHold) }, ""},
		{"range inverted", func(o *Opts) { o.InputMin, o.InputMax = f64(60), f64(0) }, "input_max: 0 is not above input_min 60"},
		{"hold without hold_for", func(o *Opts) { o.OnInputFailure = FailHold }, "on_input_failure: hold needs hold_for"},
		{"fixed without fixed_output", func(o *Opts) { o.OnInputFailure = FailFixed }, "on_input_failure: fixed needs fixed_output"},
		{"hold_for without hold", func(o *Opts) { o.HoldFor = time.Minute }, "hold_for: applies to on_input_failure: hold only"},
		{"fixed_output without fixed", func(o *Opts) { o.FixedOutput = f64(0.2) }, "fixed_output: applies"},
		{"fixed beyond output_max", func(o *Opts) { o.OnInputFailure, o.FixedOutput, o.OutputMax = FailFixed, f64(0.9), 0.8 }, "fixed_output: 0.9 is outside"},
		{"fixed 0.2 on hysteresis", func(o *Opts) {
			o.PID, o.Hysteresis = Gains{}, &Band{Below: 0.3, Above: 0.3}
			o.OnInputFailure, o.FixedOutput = FailFixed, f64(0.2)
		}, "fixed_output: 0.2 on a hysteresis loop"},
		{"unknown action", func(o *Opts) { o.OnInputFailure = "panic" }, `on_input_failure: "panic" is not one of`},
		{"stuck too short", func(o *Opts) { o.StuckAfter = 10 * time.Second }, "stuck_after: 10s is out of range"},
		{"cutoff beyond plausible", func(o *Opts) { o.InputMax, o.CutoffAbove = f64(40), f64(45) }, "cutoff_above: 45 is the wrong way round for input_max 40"},
		{"cutoff below setpoint", func(o *Opts) { o.CutoffAbove = f64(15) }, "cutoff_above: 15 is the wrong way round for setpoint 20"},
		{"cutoff below setpoint_max", func(o *Opts) { o.CutoffAbove = f64(25) }, "cutoff_above: 25 is the wrong way round for setpoint_max 30"},
		{"cutoff_below on a heater", func(o *Opts) { o.CutoffBelow = f64(2) }, "cutoff_below: this loop acts direct"},
		{"cutoff_above on a cooler", func(o *Opts) { o.PID = Gains{Kp: -0.1}; o.CutoffAbove = f64(40) }, "cutoff_above: this loop acts in reverse"},
		{"cooler cutoff_below", func(o *Opts) { o.PID = Gains{Kp: -0.1}; o.CutoffBelow = f64(2) }, ""},
		{"cooler cutoff_below above setpoint_min", func(o *Opts) { o.PID = Gains{Kp: -0.1}; o.CutoffBelow = f64(8) }, "cutoff_below: 8 is the wrong way round for setpoint_min 5"},
		{"cutoff not finite", func(o *Opts) { o.CutoffAbove = f64(0); *o.CutoffAbove /= *o.CutoffAbove }, "cutoff_above: must be finite"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := testOpts()
			tc.edit(&o)
			err := o.Validate()
			got := fmt.Sprint(err)
			if tc.want == "" && err != nil || tc.want != "" && !strings.HasPrefix(got, tc.want) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}
