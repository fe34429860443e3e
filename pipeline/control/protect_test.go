package control

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/edged/edged/sensors"
)

// relayOpts is testOpts on a 60 s cycle with the default relay protection.
func relayOpts() Opts {
	o := testOpts()
	o.Cycle = time.Minute
	return o
}

func wantCalls(t *testing.T, h *harness, what string, want []call) {
	t.Helper()
	if got := h.act.take(); !callsEqual(got, want) {
		t.Errorf("%s:\ngot  %v\nwant %v", what, got, want)
	}
}

func TestRelayMinOnAndOnePulsePerWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, relayOpts(), "")
		h.act.take()
		h.command(`{"mode":"manual","output":0.5}`)
		h.advanceTo(h.at(5 * time.Second))
		// Lowered to 3 s of on time after 5 s on: the pulse still lasts min_on.
		h.command(`{"output":0.05}`)
		h.advanceTo(h.at(12 * time.Second))
		// Raised again after the pulse ended: no second pulse in the window.
		// The next window makes up for it with up to max(min_on, min_off) of
		// the on time owed: 30 + 10 s.
		h.command(`{"output":0.5}`)
		h.advanceTo(h.at(130 * time.Second))
		wantCalls(t, h, "min_on and one pulse per window", []call{
			{"set", 1, 0}, {"set", 0, 10 * time.Second}, {"set", 1, 60 * time.Second}, {"set", 0, 100 * time.Second},
			{"set", 1, 120 * time.Second},
		})
	})
}

func TestRelayRoundsToMinOffAndCarries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, relayOpts(), "")
		h.act.take()
		// 0.85 of 60 s leaves a 9 s gap, shorter than min_off: on for 50 s.
		h.command(`{"mode":"manual","output":0.85}`)
		h.advanceTo(h.at(119 * time.Second))
		wantCalls(t, h, "0.85", []call{
			{"set", 1, 0}, {"set", 0, 50 * time.Second}, {"set", 1, 60 * time.Second}, {"set", 0, 110 * time.Second},
		})
		h.command(`{"mode":"off"}`)
		h.act.take()
		// 0.1 of 60 s is 6 s, less than min_on: pulses of 10 s in 3 windows
		// of 5 keep the average at 0.1.
		h.command(`{"mode":"manual","output":0.1}`)
		h.advanceTo(h.at(119*time.Second + 5*time.Minute))
		got := h.act.take()
		var on time.Duration
		var last time.Duration
		for _, c := range got {
			if c.level == 1 {
				last = c.at
			} else if c.op == "set" && last > 0 {
				if d := c.at - last; d != 10*time.Second {
					t.Errorf("a pulse of %v, want 10s: %v", d, got)
				}
				on += c.at - last
				last = 0
			}
		}
		if on != 30*time.Second {
			t.Errorf("on for %v in 5 windows at 0.1, want 30s: %v", on, got)
		}
	})
}

func TestRelayMaxOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := relayOpts()
		o.MaxOn = 3 * time.Minute
		h := startHarness(t, o, "")
		h.act.take()
		h.command(`{"mode":"manual","output":1}`)
		h.advanceTo(h.at(200 * time.Second))
		s := h.l.State()
		if !strings.Contains(s.Fault, "max_on 3m0s") || s.Output != 1 {
			t.Errorf("state after max_on: %+v", s)
		}
		// Forced off at max_on; on again at the next window, min_off later or
		// more. The fault stays while the demand does.
		h.advanceTo(h.at(250 * time.Second))
		wantCalls(t, h, "max_on", []call{{"set", 1, 0}, {"set", 0, 3 * time.Minute}, {"set", 1, 4 * time.Minute}})
		if s := h.l.State(); !strings.Contains(s.Fault, "max_on") {
			t.Errorf("fault cleared while the output is still asked for: %+v", s)
		}
		if n := h.logs.count("max_on"); n != 1 {
			t.Errorf("logged max_on %d times, want once", n)
		}
		h.command(`{"output":0.2}`)
		h.advanceTo(h.at(300 * time.Second))
		if s := h.l.State(); s.Fault != "" {
			t.Errorf("fault after the demand fell: %+v", s)
		}
	})
}

func TestRelaySwitchBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := relayOpts()
		o.MaxSwitchesPerHour = 2
		h := startHarness(t, o, "")
		h.act.take()
		h.command(`{"mode":"manual","output":0.5}`)
		h.advanceTo(h.at(time.Hour + 100*time.Second))
		// Held off from the third window until the first switch-on is an
		// hour old; then 10 s of on time owed (at most max(min_on, min_off))
		// lengthens the first pulse, and the second switch-on is free again
		// a minute later.
		wantCalls(t, h, "2 per hour", []call{
			{"set", 1, 0}, {"set", 0, 30 * time.Second}, {"set", 1, 60 * time.Second}, {"set", 0, 90 * time.Second},
			{"set", 1, time.Hour}, {"set", 0, time.Hour + 40*time.Second},
			{"set", 1, time.Hour + time.Minute}, {"set", 0, time.Hour + 90*time.Second},
		})
		if n := h.logs.count("max_switches_per_hour 2 reached"); n != 1 {
			t.Errorf("logged the budget %d times, want once", n)
		}
	})
}

// TestRelaySafetyOverridesMinOn: a heater must go off when its sensor
// dies or an operator turns it off, whatever min_on says; min_off holds
// from there.
func TestRelaySafetyOverridesMinOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := relayOpts()
		o.MinOn = 50 * time.Second
		h := startHarness(t, o, "")
		h.act.take()
		h.read(15) // duty 0.5: 30 s, rounded up to min_on
		h.advanceTo(h.at(35 * time.Second))
		for at := 35 * time.Second; at <= 45*time.Second; at += 5 * time.Second {
			h.advanceTo(h.at(at))
			h.read(15)
		}
		h.advanceTo(h.at(47 * time.Second))
		h.command(`{"mode":"off"}`)
		wantCalls(t, h, "stale and off", []call{
			{"set", 1, 0}, {"safe", 0, 30 * time.Second}, // stale after 30 s, 20 s short of min_on
			{"set", 0, 35 * time.Second}, {"set", 1, 40 * time.Second}, // fresh again; min_off after the safe state
			{"safe", 0, 47 * time.Second}, // off, 7 s into a pulse
		})
	})
}

// safeOnActuator is a fakeActuator whose safe state is on, like a relay
// with safe_state: on.
type safeOnActuator struct{ *fakeActuator }

func (a safeOnActuator) Safe() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, call{"safe", 1, a.clk.Now().Sub(t0)})
	a.level = 1
	return nil
}

func TestRelaySafeStateOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, relayOpts(), "")
		h.l.out = safeOnActuator{h.act}
		h.start()
		for at := time.Duration(0); at <= 60*time.Second; at += 5 * time.Second {
			h.advanceTo(h.at(at))
			h.read(25) // above the setpoint: off
		}
		h.advanceTo(h.at(90 * time.Second))
		h.read(25)
		h.advanceTo(h.at(119 * time.Second))
		wantCalls(t, h, "safe state on", []call{
			{"safe", 1, 0}, {"set", 1, 0}, {"set", 0, 10 * time.Second}, // on for min_on after the safe state put it on
			{"safe", 1, 90 * time.Second}, // stale: the safe state at once
			{"set", 1, 90 * time.Second}, {"set", 0, 100 * time.Second},
		})
	})
}

func TestHysteresis(t *testing.T) {
	for _, tc := range []struct {
		action string
		inputs []float64
		want   []float64 // the output after each input
	}{
		{ActionDirect, []float64{20, 19.8, 19.7, 20.2, 20.3, 19.9}, []float64{0, 0, 1, 1, 0, 0}},
		{ActionReverse, []float64{20, 20.2, 20.3, 19.8, 19.7, 20.1}, []float64{0, 0, 1, 1, 0, 0}},
	} {
		t.Run(tc.action, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := testOpts()
				o.PID, o.Hysteresis, o.Action = Gains{}, &Band{Below: 0.3, Above: 0.3}, tc.action
				o.MinOn, o.MinOff = 0, 0
				h := startHarness(t, o, "")
				h.act.take()
				for i, v := range tc.inputs {
					h.advanceTo(h.at(time.Duration(i) * 5 * time.Second))
					h.read(v)
					if s := h.l.State(); s.Output != tc.want[i] || h.act.Level() != tc.want[i] {
						t.Errorf("input %v: output %v, actuator %v, want %v", v, s.Output, h.act.Level(), tc.want[i])
					}
				}
				// A setpoint command acts at once.
				h.command(`{"setpoint":25}`)
				if tc.action == ActionDirect && h.act.Level() != 1 || tc.action == ActionReverse && h.act.Level() != 0 {
					t.Errorf("after setpoint 25: actuator %v", h.act.Level())
				}
			})
		})
	}
}

func TestHysteresisRelayProtection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := testOpts()
		o.PID, o.Hysteresis = Gains{}, &Band{Below: 0.3, Above: 0.3}
		o.MinOn, o.MinOff = 20*time.Second, 30*time.Second
		h := startHarness(t, o, "")
		h.act.take()
		for i, v := range []float64{19, 21, 21, 21, 21, 19, 19, 19, 19, 19, 21} {
			h.advanceTo(h.at(time.Duration(i) * 5 * time.Second))
			h.read(v)
		}
		h.advanceTo(h.at(75 * time.Second))
		wantCalls(t, h, "hysteresis with min_on 20s, min_off 30s", []call{
			{"set", 1, 0}, {"set", 0, 20 * time.Second}, {"set", 1, 50 * time.Second}, {"set", 0, 70 * time.Second},
		})
	})
}

// onOffActuator is a fakeActuator that says it only switches on and off.
type onOffActuator struct{ *fakeActuator }

func (onOffActuator) OnOff() bool { return true }

func TestNewRefusesRelayWithoutCycle(t *testing.T) {
	act := onOffActuator{&fakeActuator{}}
	_, err := New(testOpts(), act, nil, nil, "p", "", nil)
	if err == nil || !strings.Contains(err.Error(), "set cycle") || !strings.Contains(err.Error(), "hysteresis") {
		t.Errorf("New with cycle 0 on a relay: %v", err)
	}
	for _, edit := range []func(*Opts){
		func(o *Opts) { o.Cycle = time.Minute },
		func(o *Opts) { o.PID, o.Hysteresis = Gains{}, &Band{Below: 0.3, Above: 0.3} },
	} {
		o := testOpts()
		edit(&o)
		if _, err := New(o, act, nil, nil, "p", "", nil); err != nil {
			t.Errorf("New: %v", err)
		}
	}
	var _ sensors.Actuator = act
}

// TestRelayClockSetBack: a clock set back an hour must not hold a relay
// on for the hour. The test clock only goes forward, so this drives the
// switcher itself.
func TestRelayClockSetBack(t *testing.T) {
	s := newSwitcher(relayOpts())
	if on, _, _ := s.level(t0, 0.5); !on {
		t.Fatal("not on at 0.5")
	}
	s.took(t0, true, false)
	if on, wake, _ := s.level(t0.Add(-time.Hour), 0); on || wake.After(t0) {
		t.Errorf("an hour back at duty 0: on %v, next decision at %v", on, wake)
	}
}
