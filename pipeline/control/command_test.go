package control

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/edged/edged/sensors/sensorstest"
)

// stateNoTS is State without its time stamp, for comparisons.
func stateNoTS(l *Loop) string {
	s := l.State()
	s.TS = ""
	b, _ := json.Marshal(s)
	return string(b)
}

// TestCommand applies each command kind to a running loop (auto, setpoint
// 20, bounds 5..30, input 18 so the output is 0.2). Invalid commands must
// change nothing: state, actuator and state file.
func TestCommand(t *testing.T) {
	cases := []struct {
		name    string
		payload string
		err     string // substring of the error; "" for success
		sp      float64
		mode    Mode
		output  float64
		calls   []call
	}{
		{name: "setpoint", payload: `{"setpoint": 21.5}`, sp: 21.5, mode: ModeAuto, output: 0.35, calls: []call{{"set", 0.35, 0}}},
		{name: "setpoint at bound", payload: `{"setpoint":30}`, sp: 30, mode: ModeAuto, output: 1, calls: []call{{"set", 1, 0}}},
		{name: "manual holds output", payload: `{"mode":"manual"}`, sp: 20, mode: ModeManual, output: 0.2},
		{name: "manual with output", payload: `{"mode":"manual","output":0.3}`, sp: 20, mode: ModeManual, output: 0.3, calls: []call{{"set", 0.3, 0}}},
		{name: "off", payload: `{"mode":"off"}`, sp: 20, mode: ModeOff, output: 0, calls: []call{{"safe", 0, 0}}},
		{name: "auto again", payload: `{"mode":"auto"}`, sp: 20, mode: ModeAuto, output: 0.2},
		{name: "combined", payload: ` {"setpoint":10, "mode":"off"} `, sp: 10, mode: ModeOff, calls: []call{{"safe", 0, 0}}},

		{name: "setpoint above max", payload: `{"setpoint":30.5}`, err: "setpoint 30.5 is out of range (5..30)"},
		{name: "setpoint below min", payload: `{"setpoint":-1}`, err: "out of range"},
		{name: "setpoint string", payload: `{"setpoint":"21"}`, err: "setpoint: want a number"},
		{name: "setpoint null", payload: `{"setpoint":null}`, err: "setpoint: want a number"},
		{name: "setpoint overflow", payload: `{"setpoint":1e999}`, err: "want a number"},
		{name: "unknown mode", payload: `{"mode":"heat"}`, err: `mode "heat"`},
		{name: "mode wrong case", payload: `{"mode":"Auto"}`, err: `mode "Auto"`},
		{name: "mode number", payload: `{"mode":1}`, err: "mode: want"},
		{name: "output in auto", payload: `{"output":0.3}`, err: "manual mode only"},
		{name: "output with mode auto", payload: `{"mode":"auto","output":0.3}`, err: "manual mode only"},
		{name: "output above 1", payload: `{"mode":"manual","output":1.5}`, err: "out of range (0..1)"},
		{name: "output negative", payload: `{"mode":"manual","output":-0.1}`, err: "out of range (0..1)"},
		{name: "one bad key spoils all", payload: `{"setpoint":25,"mode":"off","output":2}`, err: "manual mode only"},
		{name: "bad setpoint with mode", payload: `{"setpoint":99,"mode":"off"}`, err: "out of range"},
		{name: "unknown field", payload: `{"setpoint":21,"fan":1}`, err: `unknown field "fan"`},
		{name: "field wrong case", payload: `{"Setpoint":21}`, err: `unknown field "Setpoint"`},
		{name: "empty object", payload: `{}`, err: "empty command"},
		{name: "null", payload: `null`, err: "not null"},
		{name: "array", payload: `[{"setpoint":21}]`, err: "want a JSON object"},
		{name: "empty", payload: ``, err: "want a JSON object"},
		{name: "trailing data", payload: `{"setpoint":21}x`, err: "after the JSON object"},
		{name: "two objects", payload: `{"setpoint":21}{"mode":"off"}`, err: "after the JSON object"},
		{name: "truncated", payload: `{"setpoint":21`, err: "want a JSON object"},
		{name: "gains", payload: `{"gains":{"kp":0.2,"ki":0,"kd":0}}`, sp: 20, mode: ModeAuto, output: 0.4, calls: []call{{"set", 0.4, 0}}},
		{name: "gains at the default limit", payload: `{"gains":{"kd":0,"ki":0,"kp":1}}`, sp: 20, mode: ModeAuto, output: 1, calls: []call{{"set", 1, 0}}},
		{name: "reset integral", payload: `{"reset":"integral"}`, sp: 20, mode: ModeAuto, output: 0.2},
		{name: "gains with setpoint", payload: `{"setpoint":21,"gains":{"kp":0.2,"ki":0,"kd":0}}`, sp: 21, mode: ModeAuto, output: 0.6, calls: []call{{"set", 0.6, 0}}},

		{name: "gain beyond limit", payload: `{"gains":{"kp":1.5,"ki":0,"kd":0}}`, err: "kp 1.5 is beyond its limit 1"},
		{name: "gain the config leaves at 0", payload: `{"gains":{"kp":0.1,"ki":0.001,"kd":0}}`, err: "ki 0.001 is beyond its limit 0"},
		{name: "gain reverses the action", payload: `{"gains":{"kp":-0.1,"ki":0,"kd":0}}`, err: "kp -0.1 is negative"},
		{name: "gains all zero", payload: `{"gains":{"kp":0,"ki":0,"kd":0}}`, err: "all zero"},
		{name: "gains missing one", payload: `{"gains":{"kp":0.2,"ki":0}}`, err: "kd missing"},
		{name: "gains unknown key", payload: `{"gains":{"kp":0.2,"ki":0,"kd":0,"kf":1}}`, err: `gains: unknown field "kf"`},
		{name: "gains key wrong case", payload: `{"gains":{"Kp":0.2,"ki":0,"kd":0}}`, err: `gains: unknown field "Kp"`},
		{name: "gains not an object", payload: `{"gains":0.2}`, err: "gains: want an object"},
		{name: "gains null", payload: `{"gains":null}`, err: "gains: want an object"},
		{name: "gain a string", payload: `{"gains":{"kp":"0.2","ki":0,"kd":0}}`, err: "gains: kp: want a number"},
		{name: "gain null", payload: `{"gains":{"kp":null,"ki":0,"kd":0}}`, err: "gains: kp: want a number"},
		{name: "bad gains spoil a setpoint", payload: `{"setpoint":25,"gains":{"kp":5,"ki":0,"kd":0}}`, err: "beyond its limit"},
		{name: "reset what", payload: `{"reset":"all"}`, err: `reset: want "integral"`},
		{name: "reset null", payload: `{"reset":null}`, err: `reset: want "integral"`},
		{name: "reset true", payload: `{"reset":true}`, err: `reset: want "integral"`},
		{name: "too long", payload: `{"setpoint":21` + strings.Repeat(" ", 1100) + `}`, err: "too long"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dir := t.TempDir()
				h := startHarness(t, testOpts(), dir)
				h.read(18)
				if tc.name == "auto again" {
					h.command(`{"mode":"manual","output":0.2}`)
				}
				h.act.take()
				before := stateNoTS(h.l)

				reply, err := h.l.Command([]byte(tc.payload))
				h.settle()
				calls := h.act.take()
				if tc.err != "" {
					if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrCommand) {
						t.Fatalf("err = %v, want ErrCommand containing %q", err, tc.err)
					}
					var r map[string]string
					if json.Unmarshal(reply, &r) != nil || len(r) != 1 || r["error"] != err.Error() {
						t.Errorf("reply %s, want {\"error\": %q}", reply, err.Error())
					}
					if after := stateNoTS(h.l); after != before {
						t.Errorf("state changed:\nbefore %s\nafter  %s", before, after)
					}
					if len(calls) != 0 {
						t.Errorf("actuator touched: %v", calls)
					}
					if _, err := os.Stat(filepath.Join(dir, "control", "heat.json")); !os.IsNotExist(err) {
						t.Errorf("state file written: %v", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				var s State
				if err := json.Unmarshal(reply, &s); err != nil {
					t.Fatalf("reply %s: %v", reply, err)
				}
				if s.Setpoint != tc.sp || s.Mode != tc.mode || !near(s.Output, tc.output) || s.TS == "" {
					t.Errorf("reply %s, want setpoint %v, mode %s, output %v", reply, tc.sp, tc.mode, tc.output)
				}
				if got := stateNoTS(h.l); !strings.HasPrefix(string(reply), strings.TrimSuffix(got, "}")) {
					t.Errorf("reply %s is not the state %s", reply, got)
				}
				if !callsEqual(calls, tc.calls) {
					t.Errorf("actuator calls %v, want %v", calls, tc.calls)
				}
			})
		})
	}
}

func TestPersistRoundTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		h := newHarness(t, testOpts(), dir)
		h.command(`{"setpoint":25}`) // before Run: state only, no actuator
		h.command(`{"mode":"manual","output":0.4}`)
		if calls := h.act.take(); len(calls) != 0 {
			t.Errorf("commands before Run drove the actuator: %v", calls)
		}
		b, err := os.ReadFile(filepath.Join(dir, "control", "heat.json"))
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"setpoint":25,"mode":"manual","output":0.4}` + "\n"; string(b) != want {
			t.Errorf("state file %q, want %q", b, want)
		}
		if names := dirNames(t, filepath.Join(dir, "control")); len(names) != 1 {
			t.Errorf("files left in the state dir: %v", names)
		}

		// Manual mode is not restored: an unwatched fixed output must not
		// come back by itself after a restart. The loop starts off (safe).
		h2 := startHarness(t, testOpts(), dir)
		s := h2.l.State()
		if s.Setpoint != 25 || s.Mode != ModeOff {
			t.Errorf("restored state = %+v, want setpoint 25, mode off", s)
		}
		for _, c := range h2.act.take() {
			if c.op == "set" && c.level != 0 {
				t.Errorf("restored loop drove the output to %v: %v", c.level, c)
			}
		}

		// Only the mode was commanded: the config's setpoint still rules.
		dir2 := t.TempDir()
		h3 := newHarness(t, testOpts(), dir2)
		h3.command(`{"mode":"off"}`)
		o := testOpts()
		o.Setpoint = 12
		h4 := newHarness(t, o, dir2)
		if s := h4.l.State(); s.Setpoint != 12 || s.Mode != ModeOff {
			t.Errorf("after a mode-only command: %+v, want setpoint 12 from the config, mode off", s)
		}
	})
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range es {
		n = append(n, e.Name())
	}
	return n
}

// TestPersistBadFiles checks that nothing in the state file keeps a loop
// from starting on its config.
func TestPersistBadFiles(t *testing.T) {
	cases := []struct {
		name   string
		write  func(path string) error
		sp     float64
		mode   Mode
		output float64
		log    string
	}{
		{"corrupt", func(p string) error { return os.WriteFile(p, []byte(`{"setpoint":2`), 0o644) }, 20, ModeAuto, 0, "ignoring corrupt state file"},
		{"empty", func(p string) error { return os.WriteFile(p, nil, 0o644) }, 20, ModeAuto, 0, "ignoring corrupt state file"},
		{"unreadable", func(p string) error { return os.Mkdir(p, 0o755) }, 20, ModeAuto, 0, "ignoring unreadable state file"},
		{"setpoint out of bounds", func(p string) error { return os.WriteFile(p, []byte(`{"setpoint":99,"mode":"off"}`), 0o644) }, 20, ModeOff, 0, "ignoring saved setpoint"},
		{"unknown mode", func(p string) error { return os.WriteFile(p, []byte(`{"setpoint":22,"mode":"boost"}`), 0o644) }, 22, ModeAuto, 0, "ignoring saved mode"},
		{"manual, bad output", func(p string) error { return os.WriteFile(p, []byte(`{"mode":"manual","output":7}`), 0o644) }, 20, ModeOff, 0, "starting in mode off"},
		{"wrong types", func(p string) error { return os.WriteFile(p, []byte(`{"setpoint":"hot"}`), 0o644) }, 20, ModeAuto, 0, "ignoring corrupt state file"},
		{"torn after the integral", func(p string) error {
			return os.WriteFile(p, []byte(`{"setpoint":22,"gains":{"kp":0.2,"ki":0,"kd":0},"integral":0.`), 0o644)
		}, 20, ModeAuto, 0, "ignoring corrupt state file"},
		{"torn inside the gains", func(p string) error { return os.WriteFile(p, []byte(`{"setpoint":22,"gains":{"kp":0.2,"k`), 0o644) }, 20, ModeAuto, 0, "ignoring corrupt state file"},
		{"binary garbage", func(p string) error { return os.WriteFile(p, []byte("\x00\xff{\x00"), 0o644) }, 20, ModeAuto, 0, "ignoring corrupt state file"},
		{"integral a string", func(p string) error { return os.WriteFile(p, []byte(`{"integral":"0.5"}`), 0o644) }, 20, ModeAuto, 0, "ignoring corrupt state file"},
		{"integral out of range", func(p string) error { return os.WriteFile(p, []byte(`{"setpoint":22,"integral":7}`), 0o644) }, 22, ModeAuto, 0, "ignoring saved integral"},
		{"integral negative", func(p string) error { return os.WriteFile(p, []byte(`{"integral":-0.5}`), 0o644) }, 20, ModeAuto, 0, "ignoring saved integral"},
		{"gains beyond the limits", func(p string) error {
			return os.WriteFile(p, []byte(`{"setpoint":22,"gains":{"kp":9,"ki":0,"kd":0}}`), 0o644)
		}, 22, ModeAuto, 0, "ignoring saved gains"},
		{"gains all zero", func(p string) error { return os.WriteFile(p, []byte(`{"gains":{"kp":0,"ki":0,"kd":0}}`), 0o644) }, 20, ModeAuto, 0, "ignoring saved gains"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dir := t.TempDir()
				if err := os.MkdirAll(filepath.Join(dir, "control"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := tc.write(filepath.Join(dir, "control", "heat.json")); err != nil {
					t.Fatal(err)
				}
				h := startHarness(t, testOpts(), dir)
				s := h.l.State()
				if s.Setpoint != tc.sp || s.Mode != tc.mode || s.Output != tc.output {
					t.Errorf("state %+v, want setpoint %v, mode %s, output %v", s, tc.sp, tc.mode, tc.output)
				}
				if h.logs.count(tc.log) != 1 {
					t.Errorf("log does not say %q once:\n%s", tc.log, h.logs)
				}
				if g, want := s.Gains, (StateGains{Kp: 0.1}); g != want {
					t.Errorf("gains %+v, want the config's %+v", g, want)
				}
				if i := h.l.ctl().Integral(); i != 0 {
					t.Errorf("integral %v, want 0", i)
				}
			})
		})
	}
}

func TestPersistFailureStillApplies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		// A file where the control directory should be: MkdirAll fails.
		if err := os.WriteFile(filepath.Join(dir, "control"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		h := startHarness(t, testOpts(), dir)
		if s := h.command(`{"setpoint":24}`); s.Setpoint != 24 {
			t.Errorf("setpoint %v, want 24", s.Setpoint)
		}
		if h.logs.count("not saved") != 1 {
			t.Errorf("the failed save was not logged:\n%s", h.logs)
		}
	})
}

// FuzzCommand checks that no payload panics, that a rejected one changes
// nothing, and that an accepted one leaves the loop within its bounds.
func FuzzCommand(f *testing.F) {
	for _, s := range []string{
		`{"setpoint":21}`, `{"setpoint":30.0001}`, `{"mode":"auto"}`, `{"mode":"manual","output":0.3}`,
		`{"mode":"off"}`, `{"output":1}`, `{"setpoint":null}`, `{}`, `null`, `[]`, `"x"`, ``,
		`{"setpoint":21,"mode":"manual","output":0}`, `{"setpoint":1e308}`, `{"mode":"manual","output":-0}`,
		`{"setpoint":21}{}`, `{"SETPOINT":21}`, `{"setpoint":21,"setpoint":99}`, "{\"mode\":\"auto\u0000\"}",
		`{"gains":{"kp":0.2,"ki":0,"kd":0}}`, `{"gains":{"kp":1.0001,"ki":0,"kd":0}}`, `{"gains":{"kp":-0.1,"ki":0,"kd":0}}`,
		`{"gains":{"kp":0,"ki":0,"kd":0}}`, `{"gains":{"kp":0.2}}`, `{"gains":{"kp":0.2,"ki":0,"kd":0,"kp":9}}`,
		`{"gains":{"kp":1e999,"ki":0,"kd":0}}`, `{"gains":[0.2,0,0]}`, `{"gains":{}}`, `{"gains":null}`,
		`{"reset":"integral"}`, `{"reset":"Integral"}`, `{"reset":""}`, `{"reset":1}`,
		`{"mode":"auto","reset":"integral","gains":{"kp":0.5,"ki":0,"kd":0},"setpoint":22}`,
		`{"autotune":{}}`, `{"autotune":null}`, `{"autotune":[]}`, `{"autotune":{"rule":"zn_pid"}}`, `{"autotune":{"rule":""}}`,
		`{"autotune":{"output_high":1,"output_low":0,"hysteresis":0.1,"abort_band":3,"max_duration":"2h","cycles":3,"rule":"tl_pi"}}`,
		`{"autotune":{"output_high":0.5,"output_low":0.5}}`, `{"autotune":{"abort_band":1e999}}`, `{"autotune":{"max_duration":"-1h"}}`,
		`{"autotune":{"cycles":3.0000001}}`, `{"autotune":{"cycles":1e20}}`, `{"autotune":{"hysteresis":3,"abort_band":3}}`,
		`{"autotune":{},"mode":"auto"}`, `{"autotune":{"rule":"tl_pi","rule":"x"}}`, `{"autotune":{"max_duration":"1m"},"autotune":{}}`,
	} {
		f.Add([]byte(s))
	}
	act := &fakeActuator{clk: sensorstest.NewClock(t0)}
	f.Fuzz(func(t *testing.T, payload []byte) {
		l, err := New(testOpts(), act, nil, nil, "edged/gh-01", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		before := stateNoTS(l)
		reply, err := l.Command(payload)
		after := stateNoTS(l)
		if err != nil {
			if after != before {
				t.Fatalf("rejected %q (%v) but the state changed:\n%s\n%s", payload, err, before, after)
			}
			var r map[string]string
			if json.Unmarshal(reply, &r) != nil || r["error"] == "" {
				t.Fatalf("error reply %s", reply)
			}
			return
		}
		var s State
		if err := json.Unmarshal(reply, &s); err != nil {
			t.Fatalf("reply %s: %v", reply, err)
		}
		if s.Setpoint < 5 || s.Setpoint > 30 || s.Output < 0 || s.Output > 1 {
			t.Fatalf("accepted %q: state out of bounds: %s", payload, reply)
		}
		if g := s.Gains; g.Kp < 0 || g.Kp > 1 || g.Ki != 0 || g.Kd != 0 || g.Kp == 0 {
			t.Fatalf("accepted %q: gains out of bounds: %s", payload, reply)
		}
		switch s.Mode {
		case ModeAuto, ModeManual, ModeOff:
		default:
			t.Fatalf("accepted %q: mode %q", payload, s.Mode)
		}
	})
}
