package control

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/edged/edged/sensors"
)

func TestAutoDrivesActuatorFromReadings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := testOpts()
		o.PID = Gains{Kp: 0.1, Ki: 0.01}
		h := startHarness(t, o, "")
		// No input yet: the output stays safe.
		if got, want := h.act.take(), []call{{"safe", 0, 0}}; !callsEqual(got, want) {
			t.Errorf("on start: %v, want %v", got, want)
		}
		if s := h.l.State(); s.Fault != faultNoInput || s.Input != nil || s.Output != 0 {
			t.Errorf("state before any reading = %+v", s)
		}
		h.read(18) // e=2: p=0.2, first sample integrates nothing
		h.advanceTo(h.at(5 * time.Second))
		h.read(18) // + 0.01·2·5 = 0.1
		h.advanceTo(h.at(10 * time.Second))
		// Other sensors and quantities are not this loop's input.
		h.l.Input(sensors.Reading{Sensor: "air", Quantity: sensors.Humidity, Value: 99, Time: h.clk.Now()})
		h.l.Input(sensors.Reading{Sensor: "soil", Quantity: sensors.Temperature, Value: 99, Time: h.clk.Now()})
		h.settle()
		want := []call{{"set", 0.2, 0}, {"set", 0.3, 5 * time.Second}}
		if got := h.act.take(); !callsEqual(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
		s := h.l.State()
		if s.Input == nil || *s.Input != 18 || !near(s.Output, 0.3) || s.Fault != "" || s.Mode != ModeAuto {
			t.Errorf("state = %+v", s)
		}
	})
}

func TestStaleInputGoesSafe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, testOpts(), "")
		h.act.take()
		h.read(15) // output 0.5
		h.advanceTo(h.at(29 * time.Second))
		if got := h.act.take(); !callsEqual(got, []call{{"set", 0.5, 0}}) {
			t.Fatalf("before stale_after: %v", got)
		}
		h.advanceTo(h.at(2 * time.Minute))
		if got, want := h.act.take(), []call{{"safe", 0, 30 * time.Second}}; !callsEqual(got, want) {
			t.Errorf("after stale_after: %v, want %v", got, want)
		}
		s := h.l.State()
		if !strings.HasPrefix(s.Fault, faultStale) || s.Input != nil || s.Output != 0 || s.Mode != ModeAuto {
			t.Errorf("stale state = %+v", s)
		}
		if n := h.logs.count("output to safe state"); n != 1 {
			t.Errorf("logged the stale input %d times, want once", n)
		}
		// A reading stamped before stale_after ago is stale on arrival.
		h.l.Input(sensors.Reading{Sensor: "air", Quantity: sensors.Temperature, Value: 15, Time: h.clk.Now().Add(-31 * time.Second)})
		h.settle()
		if got := h.act.take(); len(got) != 0 {
			t.Errorf("a stale reading drove the output: %v", got)
		}
		// A fresh reading resumes control.
		h.read(16)
		if got, want := h.act.take(), []call{{"set", 0.4, 2 * time.Minute}}; !callsEqual(got, want) {
			t.Errorf("after a fresh reading: %v, want %v", got, want)
		}
		if s := h.l.State(); s.Fault != "" || s.Input == nil {
			t.Errorf("resumed state = %+v", s)
		}
		if n := h.logs.count("input fresh again"); n != 1 {
			t.Errorf("logged the recovery %d times, want once", n)
		}
	})
}

func TestNoReadingAtAllGoesStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, testOpts(), "")
		h.advanceTo(h.at(time.Minute))
		if s := h.l.State(); !strings.HasPrefix(s.Fault, faultStale) {
			t.Errorf("fault = %q, want it to start with %q", s.Fault, faultStale)
		}
		if n := h.logs.count("output to safe state"); n != 1 {
			t.Errorf("logged %d times, want once", n)
		}
	})
}

func TestOfflineInputGoesSafe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, testOpts(), "")
		h.read(15)
		h.act.take()
		h.l.Availability("soil", false) // not this loop's sensor
		h.settle()
		if got := h.act.take(); len(got) != 0 {
			t.Fatalf("another sensor's availability acted: %v", got)
		}
		h.clk.Advance(time.Second)
		h.l.Availability("air", false)
		h.settle()
		if got, want := h.act.take(), []call{{"safe", 0, time.Second}}; !callsEqual(got, want) {
			t.Errorf("offline: %v, want %v", got, want)
		}
		if s := h.l.State(); !strings.HasPrefix(s.Fault, faultOffline) || s.Input != nil {
			t.Errorf("offline state = %+v", s)
		}
		// Stale_after passing while offline keeps the offline reason.
		h.advanceTo(h.at(time.Minute))
		h.l.Availability("air", true)
		h.settle()
		if s := h.l.State(); !strings.HasPrefix(s.Fault, faultOffline) {
			t.Errorf("online without a reading: fault %q, want still offline until a reading", s.Fault)
		}
		if got := h.act.take(); len(got) != 0 {
			t.Errorf("acted before a fresh reading: %v", got)
		}
		h.read(18)
		if got, want := h.act.take(), []call{{"set", 0.2, time.Minute}}; !callsEqual(got, want) {
			t.Errorf("fresh reading: %v, want %v", got, want)
		}
		if n := h.logs.count("output to safe state"); n != 1 {
			t.Errorf("logged %d times, want once", n)
		}
	})
}

func TestActuatorErrorGoesSafeAndRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, testOpts(), "")
		h.act.take()
		h.act.setFail(errors.New("gpio: device busy"))
		for i := range 3 {
			h.read(15 + float64(i))
			h.clk.Advance(5 * time.Second)
		}
		want := []call{
			{"set", 0.5, 0}, {"safe", 0, 0},
			{"set", 0.4, 5 * time.Second}, {"safe", 0, 5 * time.Second},
			{"set", 0.3, 10 * time.Second}, {"safe", 0, 10 * time.Second},
		}
		if got := h.act.take(); !callsEqual(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
		s := h.l.State()
		if s.Fault != "output: gpio: device busy" || s.Output != 0 || s.Input == nil {
			t.Errorf("state = %+v", s)
		}
		if n := h.logs.count("actuator failed"); n != 1 {
			t.Errorf("logged the failure %d times, want once", n)
		}
		h.act.setFail(nil)
		h.read(19)
		if got, want := h.act.take(), []call{{"set", 0.1, 15 * time.Second}}; !callsEqual(got, want) {
			t.Errorf("after the fix: %v, want %v", got, want)
		}
		if s := h.l.State(); s.Fault != "" || !near(s.Output, 0.1) {
			t.Errorf("state after the fix = %+v", s)
		}
		if n := h.logs.count("actuator works again"); n != 1 {
			t.Errorf("logged the recovery %d times, want once", n)
		}
	})
}

func TestCycleWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := testOpts()
		o.Cycle = time.Minute
		h := startHarness(t, o, "")
		h.act.take()
		h.command(`{"mode":"manual","output":0.3}`) // on for 18 s of each 60 s
		h.advanceTo(h.at(2*time.Minute + 10*time.Second))
		want := []call{
			{"set", 1, 0}, {"set", 0, 18 * time.Second},
			{"set", 1, 60 * time.Second}, {"set", 0, 78 * time.Second},
			{"set", 1, 120 * time.Second},
		}
		if got := h.act.take(); !callsEqual(got, want) {
			t.Errorf("0.3 of 60s:\ngot  %v\nwant %v", got, want)
		}
		// Raised 10 s into a window: the new on time counts from its start.
		h.command(`{"output":0.5}`)
		h.advanceTo(h.at(3*time.Minute + 10*time.Second))
		want = []call{{"set", 0, 150 * time.Second}, {"set", 1, 180 * time.Second}}
		if got := h.act.take(); !callsEqual(got, want) {
			t.Errorf("0.5 from 10s into the window:\ngot  %v\nwant %v", got, want)
		}
		// Lowered below the time already spent on: off at once.
		h.command(`{"output":0.1}`)
		if got, want := h.act.take(), []call{{"set", 0, 190 * time.Second}}; !callsEqual(got, want) {
			t.Errorf("0.1 after 10s on: %v, want %v", got, want)
		}
		// Full output right after the window's pulse ended: not a second
		// pulse in the window (relay protection), so on at the next window,
		// and then on across window edges without switching.
		h.command(`{"output":1}`)
		h.advanceTo(h.at(6 * time.Minute))
		if got, want := h.act.take(), []call{{"set", 1, 240 * time.Second}}; !callsEqual(got, want) {
			t.Errorf("output 1: %v, want %v", got, want)
		}
		if s := h.l.State(); s.Output != 1 {
			t.Errorf("state output %v, want the duty 1", s.Output)
		}
		// Off stops the window.
		h.command(`{"mode":"off"}`)
		h.advanceTo(h.at(10 * time.Minute))
		if got, want := h.act.take(), []call{{"safe", 0, 6 * time.Minute}}; !callsEqual(got, want) {
			t.Errorf("off: %v, want %v", got, want)
		}
	})
}

func TestBumplessManualToAuto(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := testOpts()
		o.PID = Gains{Kp: 0.1, Ki: 0.01}
		h := startHarness(t, o, "")
		h.read(19)
		h.command(`{"mode":"manual","output":0.6}`)
		h.act.take()
		s := h.command(`{"mode":"auto"}`)
		if !near(s.Output, 0.6) {
			t.Errorf("output on switching to auto = %v, want 0.6 held", s.Output)
		}
		if got := h.act.take(); len(got) != 0 {
			t.Errorf("switching to auto moved the actuator: %v", got)
		}
		h.advanceTo(h.at(5 * time.Second))
		h.read(19) // + 0.01·1·5
		if s := h.l.State(); !near(s.Output, 0.65) {
			t.Errorf("next output %v, want 0.65", s.Output)
		}
		// Auto to manual without an output holds the current one.
		if s := h.command(`{"mode":"manual"}`); !near(s.Output, 0.65) || s.Mode != ModeManual {
			t.Errorf("auto to manual: %+v", s)
		}
	})
}

func TestSetpointCommandActsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, testOpts(), "")
		h.read(18)
		h.act.take()
		h.clk.Advance(time.Second)
		h.command(`{"setpoint":25}`)
		if got, want := h.act.take(), []call{{"set", 0.7, time.Second}}; !callsEqual(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
	})
}

func TestManualIgnoresStaleInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, testOpts(), "")
		h.command(`{"mode":"manual","output":0.4}`)
		h.act.take()
		h.advanceTo(h.at(5 * time.Minute))
		if got := h.act.take(); len(got) != 0 {
			t.Errorf("stale input in manual mode acted: %v", got)
		}
		if s := h.l.State(); s.Fault != "" || s.Output != 0.4 || s.Input != nil {
			t.Errorf("state = %+v", s)
		}
	})
}

func TestRunLeavesActuatorSafe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, testOpts(), "")
		h.command(`{"mode":"manual","output":0.7}`)
		if err := h.stop(); err != nil {
			t.Fatal(err)
		}
		calls := h.act.take()
		if len(calls) == 0 || calls[len(calls)-1].op != "safe" {
			t.Errorf("calls %v: want the last one safe", calls)
		}
		if h.act.Level() != 0 {
			t.Errorf("level %v after Run returned", h.act.Level())
		}
		if err := h.l.Run(context.Background()); !errors.Is(err, ErrStarted) {
			t.Errorf("second Run: %v, want ErrStarted", err)
		}
		if s := h.l.State(); s.Fault != "not running" {
			t.Errorf("fault after Run = %q", s.Fault)
		}
	})
}

func TestPublishRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, testOpts(), "")
		msgs := h.pub.take()
		if len(msgs) != 1 || msgs[0].topic != "edged/gh-01/control/heat/state" || !msgs[0].retain || msgs[0].at != 0 {
			t.Fatalf("on start: %+v, want one retained state message", msgs)
		}
		for i := range 10 {
			h.advanceTo(h.at(time.Duration(i) * 300 * time.Millisecond))
			h.read(10 + float64(i))
		}
		h.advanceTo(h.at(10 * time.Second))
		msgs = h.pub.take()
		// Readings at 0 .. 2.7 s: states go out at 1 s, 2 s and 3 s, each
		// the latest at that moment.
		var ats []time.Duration
		var inputs []float64
		for _, m := range msgs {
			ats = append(ats, m.at)
			var s State
			if err := json.Unmarshal([]byte(m.payload), &s); err != nil {
				t.Fatalf("payload %s: %v", m.payload, err)
			}
			if s.Input == nil {
				t.Fatalf("payload %s has no input", m.payload)
			}
			inputs = append(inputs, *s.Input)
		}
		wantAts := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}
		wantIn := []float64{13, 16, 19}
		if len(ats) != 3 || ats[0] != wantAts[0] || ats[1] != wantAts[1] || ats[2] != wantAts[2] ||
			inputs[0] != wantIn[0] || inputs[1] != wantIn[1] || inputs[2] != wantIn[2] {
			t.Errorf("published at %v with inputs %v, want at %v with %v", ats, inputs, wantAts, wantIn)
		}
		// Unchanged state: nothing published.
		h.read(19)
		h.advanceTo(h.at(20 * time.Second))
		if msgs := h.pub.take(); len(msgs) != 0 {
			t.Errorf("unchanged state published: %+v", msgs)
		}
	})
}

func TestPublishFailureRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testOpts(), "")
		h.pub.setFail(errors.New("broker closed"))
		h.start()
		h.read(15)
		h.advanceTo(h.at(5 * time.Second))
		if n := h.logs.count("cannot publish state"); n != 1 {
			t.Errorf("logged %d times, want once", n)
		}
		h.pub.setFail(nil)
		h.advanceTo(h.at(7 * time.Second))
		msgs := h.pub.take()
		if len(msgs) != 1 || msgs[0].at != 6*time.Second || !strings.Contains(msgs[0].payload, `"input":15`) {
			t.Errorf("after the broker came back: %+v, want the state at 6s", msgs)
		}
	})
}

func TestStatePayload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := testOpts()
		o.PID = Gains{Kp: 0.1, Ki: 0.002, Kd: 1}
		h := startHarness(t, o, "")
		h.clk.Advance(1500 * time.Millisecond)
		h.read(19.5)
		h.advanceTo(h.at(3 * time.Second))
		msgs := h.pub.take()
		want := `{"setpoint":20,"input":19.5,"output":0.05,"applied":"pid","mode":"auto","fault":"","gains":{"kp":0.1,"ki":0.002,"kd":1},"ts":"2026-11-22T10:00:01.500Z"}`
		if len(msgs) != 2 || msgs[1].payload != want {
			t.Errorf("messages %+v\nwant the second to be %s", msgs, want)
		}
	})
}

func TestNewRejects(t *testing.T) {
	act := &fakeActuator{}
	cases := []struct {
		name string
		edit func(*Opts)
		act  sensors.Actuator
		want string
	}{
		{"invalid opts", func(o *Opts) { o.StaleAfter = 0 }, act, "stale_after"},
		{"bad cycle", func(o *Opts) { o.Cycle = time.Millisecond }, act, "cycle"},
		{"id with a slash", func(o *Opts) { o.ID = "../x" }, act, "not usable"},
		{"id dot dot", func(o *Opts) { o.ID = ".." }, act, "not usable"},
		{"no actuator", func(*Opts) {}, nil, "no actuator"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := testOpts()
			tc.edit(&o)
			_, err := New(o, tc.act, nil, nil, "p", "", nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "control: ") {
				t.Errorf("New: %v, want an error about %q", err, tc.want)
			}
		})
	}
	l, err := New(testOpts(), act, nil, nil, "edged/x/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.StateTopic() != "edged/x/control/heat/state" || l.CommandTopic() != "edged/x/control/heat/set" {
		t.Errorf("topics %q, %q", l.StateTopic(), l.CommandTopic())
	}
}
