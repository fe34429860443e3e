package hass

import (
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/pipeline/control"
	"github.com/edged/edged/pipeline/hass/hasstest"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

// The templates are rendered by a real Jinja2 (hasstest), as Home
// Assistant renders them, over payloads made by edged's own encoders, and
// the rendered commands go to a real control loop. The same runs against
// `edged run` in cmd/edged (TestHomeAssistantIntegration).

type level struct {
	mu sync.Mutex
	v  float64
}

func (o *level) String() string      { return "test-output" }
func (o *level) Set(v float64) error { o.mu.Lock(); o.v = v; o.mu.Unlock(); return nil }
func (o *level) Level() float64      { o.mu.Lock(); defer o.mu.Unlock(); return o.v }
func (o *level) Safe() error         { return o.Set(0) }
func (o *level) Halt() error         { return o.Safe() }
func entityConfig(t *testing.T, es []Entity, topic string) map[string]any {
	t.Helper()
	for _, e := range es {
		if e.Topic == topic {
			var m map[string]any
			if err := json.Unmarshal(e.Payload, &m); err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatalf("no entity on %s", topic)
	return nil
}

func TestSensorValueTemplateReadsReadings(t *testing.T) {
	hasstest.Python(t)
	ents, err := Entities(DefaultOpts(), testGateway())
	if err != nil {
		t.Fatal(err)
	}
	tpl := entityConfig(t, ents, "homeassistant/sensor/gh-01/air_temperature/config")["value_template"].(string)
	var reqs []hasstest.Request
	values := []float64{21.37, -4.5, 0, 101325, 1e-4}
	for _, v := range values {
		p := pipeline.AppendPayload(nil, sensors.Reading{Sensor: "air", Quantity: sensors.Temperature, Value: v, Time: time.Now()})
		reqs = append(reqs, hasstest.Value(tpl, p))
	}
	for i, out := range hasstest.Render(t, reqs...) {
		got, err := strconv.ParseFloat(out, 64)
		if err != nil || got != values[i] {
			t.Errorf("value_template over %s rendered %q, want %v", *reqs[i].Payload, out, values[i])
		}
	}
}

func TestClimateTemplatesDriveALoop(t *testing.T) {
	hasstest.Python(t)
	g := testGateway()
	ents, err := Entities(DefaultOpts(), g)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range g.Controllers[:2] { // heat (direct), cool (reverse)
		t.Run(c.ID, func(t *testing.T) {
			cfg := entityConfig(t, ents, "homeassistant/climate/gh-01/"+c.ID+"/config")
			tpl := func(k string) string { return cfg[k].(string) }
			auto := "heat"
			if c.Reverse() {
				auto = "cool"
			}
			loop, err := control.New(c, &level{}, sensorstest.NewClock(time.Now()), nil, g.TopicPrefix, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			// Home Assistant's commands: a target temperature (a float),
			// then each mode it offers.
			cmds := hasstest.Render(t,
				hasstest.Command(tpl("temperature_command_template"), 19.5),
				hasstest.Command(tpl("temperature_command_template"), 22.0),
				hasstest.Command(tpl("mode_command_template"), "off"),
				hasstest.Command(tpl("mode_command_template"), auto),
			)
			state := func() []byte {
				b, err := json.Marshal(loop.State())
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			send := func(cmd string) {
				t.Helper()
				if reply, err := loop.Command([]byte(cmd)); err != nil {
					t.Fatalf("command %s rendered by Jinja2 was refused: %v (%s)", cmd, err, reply)
				}
			}
			read := func(payload []byte, keys ...string) []string {
				t.Helper()
				var reqs []hasstest.Request
				for _, k := range keys {
					reqs = append(reqs, hasstest.Value(tpl(k), payload))
				}
				return hasstest.Render(t, reqs...)
			}

			send(cmds[0])
			if sp := loop.State().Setpoint; sp != 19.5 {
				t.Fatalf("%s: setpoint %v, want 19.5", cmds[0], sp)
			}
			send(cmds[1])
			send(cmds[2])
			s := loop.State()
			if s.Setpoint != 22 || s.Mode != control.ModeOff {
				t.Fatalf("after %s and %s: setpoint %v mode %v", cmds[1], cmds[2], s.Setpoint, s.Mode)
			}
			got := read(state(), "temperature_state_template", "mode_state_template", "action_template", "current_temperature_template")
			if sp, err := strconv.ParseFloat(got[0], 64); err != nil || sp != 22 {
				t.Errorf("temperature_state_template: %q, want 22", got[0])
			}
			// No input yet: None, which Home Assistant takes as unknown.
			if got[1] != "off" || got[2] != "off" || got[3] != "None" {
				t.Errorf("mode %q, action %q, current temperature %q; want off, off, None", got[1], got[2], got[3])
			}
			send(cmds[3])
			if m := loop.State().Mode; m != control.ModeAuto {
				t.Fatalf("%s: mode %v, want auto", cmds[3], m)
			}
			if got := read(state(), "mode_state_template"); got[0] != auto {
				t.Errorf("mode_state_template in auto: %q, want %q", got[0], auto)
			}
			send(`{"mode": "manual", "output": 0.4}`)
			if got := read(state(), "mode_state_template"); got[0] != "None" {
				t.Errorf("manual: mode %q, want None (Home Assistant has no manual mode)", got[0])
			}
			// The loop applies the output when it runs; its state then
			// says so, as encoded here.
			b, err := json.Marshal(control.State{Setpoint: 22, Output: 0.4, Mode: control.ModeManual})
			if err != nil {
				t.Fatal(err)
			}
			if got := read(b, "action_template"); got[0] != auto+"ing" {
				t.Errorf("output 0.4: action %q, want heating or cooling", got[0])
			}
			// A state with an input, as the loop encodes it.
			in := 21.37
			b, err = json.Marshal(control.State{Setpoint: 22, Input: &in, Mode: control.ModeAuto})
			if err != nil {
				t.Fatal(err)
			}
			if got := read(b, "current_temperature_template", "action_template"); got[0] != "21.37" || got[1] != "idle" {
				t.Errorf("input 21.37, output 0: current %q action %q, want 21.37 idle", got[0], got[1])
			}
		})
	}
}

func TestUplinkTemplates(t *testing.T) {
	hasstest.Python(t)
	ents, err := Entities(DefaultOpts(), testGateway())
	if err != nil {
		t.Fatal(err)
	}
	conn := entityConfig(t, ents, "homeassistant/binary_sensor/gh-01/uplink_connected/config")["value_template"].(string)
	backlog := entityConfig(t, ents, "homeassistant/sensor/gh-01/uplink_backlog/config")["value_template"].(string)
	// The README's uplink state (PREFIX/uplink/state).
	up := []byte(`{"connected":true,"epoch":"e","backlog":12,"backlog_bytes":768,"oldest_age_s":3,"last_puback":"2026-11-22T10:00:00Z","dropped":{"overflow":0},"dead_letters":0}`)
	down := []byte(`{"connected":false,"epoch":"e","backlog":0,"backlog_bytes":0,"oldest_age_s":0}`)
	got := hasstest.Render(t, hasstest.Value(conn, up), hasstest.Value(conn, down), hasstest.Value(backlog, up))
	if got[0] != "ON" || got[1] != "OFF" || got[2] != "12" {
		t.Errorf("connected %q / %q (want ON / OFF: the binary sensor's payload_on and payload_off), backlog %q (want 12)", got[0], got[1], got[2])
	}
}
