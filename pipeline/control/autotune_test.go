package control

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestAutotuneFaultSimPlant: the sensor goes stale during an autotune on
// the sim plant. The test must abort at once, the heater must be in its
// safe state, the gains must be those from before, and nothing may be
// written to the state file.
func TestAutotuneFaultSimPlant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := exampleSimOpts()
		r := newSimRig(t, o)
		r.start()
		r.run(time.Hour, nil)
		before, err := os.ReadFile(r.h.l.statePath)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		saves := r.h.l.Saves()
		runFor := 5 * time.Minute
		st := r.h.command(`{"autotune": {}}`)
		if st.Autotune == nil || st.Autotune.Status != AutotuneRunning {
			t.Fatalf("not running: %+v", st.Autotune)
		}
		r.run(runFor, nil)
		// The sensor stops answering; stale_after is 30 s.
		r.run(35*time.Second, func(time.Duration) bool { return false })
		s := r.h.l.State()
		if s.Autotune == nil || s.Autotune.Status != AutotuneAborted || !strings.Contains(s.Autotune.Reason, "fault: input stale") {
			t.Fatalf("autotune after the sensor went stale: %+v", s.Autotune)
		}
		if s.Output != 0 || r.act.Level() != 0 {
			t.Errorf("output %v, heater level %v: want the safe state", s.Output, r.act.Level())
		}
		if s.Mode != ModeAuto || s.Gains != (StateGains{Kp: 0.4, Ki: 0.002}) {
			t.Errorf("mode %s, gains %+v: want auto with the old gains", s.Mode, s.Gains)
		}
		after, err := os.ReadFile(r.h.l.statePath)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if string(after) != string(before) || r.h.l.Saves() != saves {
			t.Errorf("state file written during the autotune: %q, then %q (%d saves, then %d)", before, after, saves, r.h.l.Saves())
		}
		// The sensor comes back: the PID takes over again, and still
		// nothing of the autotune is saved.
		r.run(10*time.Minute, nil)
		if s := r.h.l.State(); s.Fault != "" || s.Output == 0 {
			t.Errorf("after the sensor returned: %+v", s)
		}
		path := r.h.l.statePath
		r.stop()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var p persisted
		if err := json.Unmarshal(b, &p); err != nil || p.Gains != nil {
			t.Errorf("state file %s (%v): want no gains", b, err)
		}
	})
}

// TestAutotuneAborts: every way a running autotune ends early, on a fake
// actuator (level passed through), setpoint 20, input at 19.95 so the
// relay starts high (1).
func TestAutotuneAborts(t *testing.T) {
	cases := []struct {
		name   string
		do     func(h *harness)
		reason string
		safe   bool    // the actuator must be in its safe state
		output float64 // else the output after the abort
		mode   Mode
	}{
		{"stale input", func(h *harness) { h.advanceTo(h.clk.Now().Add(31 * time.Second)) }, "fault: input stale", true, 0, ModeAuto},
		{"sensor offline", func(h *harness) { h.l.Availability("air", false); h.settle() }, "fault: input offline", true, 0, ModeAuto},
		{"actuator fails", func(h *harness) {
			h.act.setFail(errors.New("gpio gone"))
			h.read(20.2) // the relay switches low: Set(0) fails
		}, "fault: output: gpio gone", true, 0, ModeAuto},
		{"mode off", func(h *harness) { h.command(`{"mode":"off"}`) }, "stopped by a command", true, 0, ModeOff},
		{"mode auto", func(h *harness) { h.command(`{"mode":"auto"}`) }, "stopped by a command", false, 0.005, ModeAuto},
		{"mode manual", func(h *harness) { h.command(`{"mode":"manual","output":0.3}`) }, "stopped by a command", false, 0.3, ModeManual},
		{"setpoint", func(h *harness) { h.command(`{"setpoint":21}`) }, "stopped by a command", false, 0.105, ModeAuto},
		{"input leaves the band", func(h *harness) { h.read(16.9) }, "input 16.9 left setpoint 20 ± abort_band 3", false, 0.31, ModeAuto},
		{"max_duration", func(h *harness) {
			for range 13 {
				h.advanceTo(h.clk.Now().Add(5 * time.Second))
				h.read(19.95)
			}
		}, "no steady oscillation within max_duration 1m0s (0 cycles)", false, 0.005, ModeAuto},
		{"stop", func(h *harness) {
			if err := h.stop(); err != nil {
				h.t.Fatal(err)
			}
		}, "edged stopped", true, 0, ModeAuto},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dir := t.TempDir()
				h := startHarness(t, testOpts(), dir)
				h.read(19.95)
				s := h.command(`{"autotune": {"max_duration": "1m"}}`)
				if s.Autotune == nil || s.Autotune.Status != AutotuneRunning || s.Output != 1 || h.act.Level() != 1 {
					t.Fatalf("after the autotune command: %+v, output %v, level %v", s.Autotune, s.Output, h.act.Level())
				}
				h.act.take()
				tc.do(h)
				s = h.l.State()
				if s.Autotune == nil || s.Autotune.Status != AutotuneAborted || !strings.Contains(s.Autotune.Reason, tc.reason) {
					t.Fatalf("autotune %+v, want aborted: %q", s.Autotune, tc.reason)
				}
				if s.Mode != tc.mode || s.Gains != (StateGains{Kp: 0.1}) {
					t.Errorf("mode %s, gains %+v", s.Mode, s.Gains)
				}
				calls := h.act.take()
				if tc.safe {
					if len(calls) == 0 || calls[len(calls)-1].op != "safe" || h.act.Level() != 0 {
						t.Errorf("calls %v, level %v: want the safe state", calls, h.act.Level())
					}
				} else if !near(s.Output, tc.output) || !near(h.act.Level(), tc.output) {
					t.Errorf("output %v, level %v, want %v", s.Output, h.act.Level(), tc.output)
				}
				if tc.name != "stop" {
					h.stop()
				}
				b, err := os.ReadFile(h.l.statePath)
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
				if strings.Contains(string(b), "gains") {
					t.Errorf("state file %s: gains saved by an aborted autotune", b)
				}
			})
		})
	}
}

// TestAutotuneRefused: an autotune command with bad fields, or that the
// loop cannot run now, changes nothing (state, actuator, state file) and
// gets an error reply.
func TestAutotuneRefused(t *testing.T) {
	cases := []struct {
		name    string
		opts    func(*Opts)
		prepare string // a command before, on the loop with input 19.95
		input   float64
		payload string
		err     string
	}{
		{name: "null", payload: `{"autotune":null}`, err: "autotune: want an object"},
		{name: "not an object", payload: `{"autotune":true}`, err: "autotune: want an object"},
		{name: "unknown field", payload: `{"autotune":{"amplitude":1}}`, err: `autotune: unknown field "amplitude"`},
		{name: "field wrong case", payload: `{"autotune":{"Output_High":1}}`, err: `unknown field "Output_High"`},
		{name: "high a string", payload: `{"autotune":{"output_high":"1"}}`, err: "autotune: output_high: want a number"},
		{name: "high above output_max", payload: `{"autotune":{"output_high":1.5}}`, err: "output_high 1.5 is outside output_min..output_max (0..1)"},
		{name: "low negative", payload: `{"autotune":{"output_low":-0.1}}`, err: "output_low -0.1 is outside"},
		{name: "low above high", payload: `{"autotune":{"output_high":0.3,"output_low":0.6}}`, err: "output_high 0.3 must be above output_low 0.6"},
		{name: "low equals high", payload: `{"autotune":{"output_high":0.5,"output_low":0.5}}`, err: "must be above"},
		{name: "band zero", payload: `{"autotune":{"abort_band":0}}`, err: "abort_band 0: want a finite number > 0"},
		{name: "band negative", payload: `{"autotune":{"abort_band":-2}}`, err: "abort_band -2"},
		{name: "hysteresis negative", payload: `{"autotune":{"hysteresis":-0.1}}`, err: "hysteresis -0.1"},
		{name: "hysteresis wider than band", payload: `{"autotune":{"hysteresis":1,"abort_band":0.5}}`, err: "below abort_band 0.5"},
		{name: "max_duration a number", payload: `{"autotune":{"max_duration":7200}}`, err: `max_duration: want a duration such as "2h"`},
		{name: "max_duration bad", payload: `{"autotune":{"max_duration":"2 hours"}}`, err: "max_duration: want a duration"},
		{name: "max_duration too short", payload: `{"autotune":{"max_duration":"30s"}}`, err: "max_duration 30s is out of range (1m0s..24h0m0s)"},
		{name: "max_duration too long", payload: `{"autotune":{"max_duration":"48h"}}`, err: "out of range"},
		{name: "cycles fraction", payload: `{"autotune":{"cycles":2.5}}`, err: "cycles 2.5: want a whole number 2..20"},
		{name: "cycles one", payload: `{"autotune":{"cycles":1}}`, err: "cycles 1: want a whole number"},
		{name: "cycles many", payload: `{"autotune":{"cycles":21}}`, err: "cycles 21"},
		{name: "unknown rule", payload: `{"autotune":{"rule":"cohen_coon"}}`, err: `rule "cohen_coon" is not one of tl_pi, tl_pid, zn_pi, zn_pid`},
		{name: "rule a number", payload: `{"autotune":{"rule":1}}`, err: "rule: want a string"},
		{name: "derivative rule with kd limited to 0", payload: `{"autotune":{"rule":"zn_pid"}}`, err: "rule zn_pid sets kd, but this loop's kd is limited to 0"},
		{name: "with a setpoint", payload: `{"autotune":{},"setpoint":21}`, err: "autotune goes alone in a command"},
		{name: "with a mode", payload: `{"mode":"auto","autotune":{}}`, err: "autotune goes alone"},
		{name: "hysteresis loop", opts: func(o *Opts) { o.PID = Gains{}; o.Hysteresis = &Band{Below: 0.3, Above: 0.3} },
			payload: `{"autotune":{}}`, err: "autotune tunes a PID loop; this one has hysteresis"},
		{name: "mode off", prepare: `{"mode":"off"}`, payload: `{"autotune":{}}`, err: "autotune: needs mode auto, the loop is off"},
		{name: "mode manual", prepare: `{"mode":"manual","output":0.2}`, payload: `{"autotune":{}}`, err: "needs mode auto, the loop is manual"},
		{name: "input outside the band", input: 16.5, payload: `{"autotune":{}}`, err: "input 16.5 is outside setpoint 20 ± abort_band 3"},
		{name: "already running", prepare: `{"autotune":{}}`, payload: `{"autotune":{"rule":"zn_pi"}}`, err: "autotune: already running"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := testOpts()
				if tc.opts != nil {
					tc.opts(&o)
				}
				dir := t.TempDir()
				h := startHarness(t, o, dir)
				in := 19.95
				if tc.input != 0 {
					in = tc.input
				}
				h.read(in)
				if tc.prepare != "" {
					h.command(tc.prepare)
				}
				h.act.take()
				before := stateNoTS(h.l)
				file, _ := os.ReadFile(h.l.statePath)
				reply, err := h.l.Command([]byte(tc.payload))
				h.settle()
				if err == nil || !errors.Is(err, ErrCommand) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want ErrCommand containing %q", err, tc.err)
				}
				var r map[string]string
				if json.Unmarshal(reply, &r) != nil || len(r) != 1 || r["error"] != err.Error() {
					t.Errorf("reply %s, want {\"error\": %q}", reply, err.Error())
				}
				if after := stateNoTS(h.l); after != before {
					t.Errorf("state changed:\n%s\n%s", before, after)
				}
				if calls := h.act.take(); len(calls) != 0 {
					t.Errorf("actuator calls %v", calls)
				}
				if after, _ := os.ReadFile(h.l.statePath); string(after) != string(file) {
					t.Errorf("state file changed: %q, then %q", file, after)
				}
			})
		})
	}

	// A loop that is not running takes no autotune.
	l, err := New(testOpts(), &fakeActuator{}, nil, nil, "edged/gh-01", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Command([]byte(`{"autotune":{}}`)); err == nil || !strings.Contains(err.Error(), "the loop is not running") {
		t.Errorf("stopped loop: err = %v", err)
	}
}

// TestAutotuneGainsBeyondLimits: when the gains found exceed
// gain_limits, the autotune fails with the reason and the gains it
// found, and applies and saves nothing.
func TestAutotuneGainsBeyondLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := exampleSimOpts()
		o.GainLimits = &GainLimits{Kp: f64(0.5)} // below what the relay test finds (~0.7 with tl_pi)
		r := newSimRig(t, o)
		r.start()
		r.run(3*time.Hour, nil)
		st := runAutotune(t, r, `{"autotune": {}}`, 3*time.Hour)
		if st.Status != AutotuneFailed || st.Gains == nil || !strings.Contains(st.Reason, "found gains not applied: gains: kp") || !strings.Contains(st.Reason, "beyond its limit 0.5") {
			t.Fatalf("autotune %+v, want failed on kp's limit", *st)
		}
		if s := r.h.l.State(); s.Gains != (StateGains{Kp: 0.4, Ki: 0.002}) || s.Mode != ModeAuto {
			t.Errorf("after a failed autotune: %+v", s)
		}
		path := r.h.l.statePath
		r.stop()
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), "gains") {
			t.Errorf("state file %s: gains saved by a failed autotune", b)
		}
	})
}
