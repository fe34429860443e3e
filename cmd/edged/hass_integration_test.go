package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/edged/edged/pipeline/hass"
	"github.com/edged/edged/pipeline/hass/hasstest"
	"github.com/edged/edged/uplink/uplinktest"
)

// What `edged run` announces for the sim example: a sensor per quantity
// and a climate entity for its heating loop (no uplink).
var simDiscovery = []string{
	"homeassistant/sensor/sim-01/light_illuminance/config",
	"homeassistant/sensor/sim-01/air_temperature/config",
	"homeassistant/sensor/sim-01/air_humidity/config",
	"homeassistant/climate/sim-01/heat/config",
}

// asOperator lets anonymous clients do what Home Assistant's MQTT user
// does: publish its birth message and send commands.
func asOperator(s string) string {
	return strings.Replace(s, "anonymous_role: viewer", "anonymous_role: operator", 1)
}

// haClient connects like Home Assistant: it subscribes to the discovery
// prefix (and what else filters say) before it sends its birth message.
func haClient(t *testing.T, mqttAddr string, filters ...string) (*paho.Client, chan *paho.Publish) {
	t.Helper()
	conn, err := net.Dial("tcp", mqttAddr)
	if err != nil {
		t.Fatal(err)
	}
	c, msgs, code := login(t, conn, "homeassistant-test", "", nil)
	if c == nil {
		t.Fatalf("connect: reason 0x%02x", code)
	}
	for _, f := range append([]string{"homeassistant/#"}, filters...) {
		subscribe(t, c, f)
	}
	return c, msgs
}

// collect gathers discovery configs until every topic in
// want has come (the last payload per topic wins), or fails after 15 s.
// Messages on other topics go to other, when it is not nil.
func collect(t *testing.T, msgs chan *paho.Publish, want []string, other func(*paho.Publish)) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	deadline := time.After(15 * time.Second)
	for {
		done := true
		for _, w := range want {
			if _, ok := got[w]; !ok {
				done = false
			}
		}
		if done {
			return got
		}
		select {
		case m := <-msgs:
			if strings.HasPrefix(m.Topic, "homeassistant/") && strings.HasSuffix(m.Topic, "/config") {
				got[m.Topic] = m.Payload
			} else if other != nil {
				other(m)
			}
		case <-deadline:
			t.Fatalf("after 15 s got %d of %v", len(got), want)
		}
	}
}

func birth(t *testing.T, c *paho.Client) {
	t.Helper()
	if rc := publish(t, c, &paho.Publish{Topic: "homeassistant/status", QoS: 1, Payload: []byte("online")}); rc >= 0x80 {
		t.Fatalf("birth message refused: 0x%02x", rc)
	}
}

// TestHomeAssistantIntegration runs Home Assistant's side of discovery
// against `edged run` on the sim example: the retained announcement and
// its size, the announcement again on the birth message, and the climate
// entity's command templates, rendered by a real Jinja2 as Home
// Assistant renders them, published to the topics edged announced, which
// change the controller; then the value templates over the state edged
// publishes.
func TestHomeAssistantIntegration(t *testing.T) {
	bin := edgedBinary(t)
	hasstest.Python(t)
	_, mqttAddr, _, httpAddr := startSim(t, bin, asOperator)
	c, msgs := haClient(t, mqttAddr)

	configs := collect(t, msgs, simDiscovery, nil)
	var payloadBytes, topicBytes int
	for tp, p := range configs {
		payloadBytes += len(p)
		topicBytes += len(tp)
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			t.Fatalf("%s: %v", tp, err)
		}
	}
	if len(configs) != len(simDiscovery) {
		t.Errorf("announced %d configs, want %d: %v", len(configs), len(simDiscovery), slices.Collect(maps.Keys(configs)))
	}
	t.Logf("announcement for the sim example: %d configs, %d bytes of JSON payload, %d with topics", len(configs), payloadBytes, payloadBytes+topicBytes)

	// Home Assistant's birth message: everything again.
	birth(t, c)
	again := collect(t, msgs, simDiscovery, nil)
	for tp, p := range again {
		if string(p) != string(configs[tp]) {
			t.Errorf("%s changed on the birth message:\n%s\n%s", tp, configs[tp], p)
		}
	}

	var climate map[string]any
	if err := json.Unmarshal(configs["homeassistant/climate/sim-01/heat/config"], &climate); err != nil {
		t.Fatal(err)
	}
	str := func(k string) string {
		s, ok := climate[k].(string)
		if !ok {
			t.Fatalf("climate config has no %s", k)
		}
		return s
	}
	stateTopic := str("temperature_state_topic")
	var sensor map[string]any
	if err := json.Unmarshal(configs["homeassistant/sensor/sim-01/air_temperature/config"], &sensor); err != nil {
		t.Fatal(err)
	}
	readingTopic := sensor["state_topic"].(string)
	subscribe(t, c, stateTopic)
	subscribe(t, c, readingTopic)

	// What Home Assistant sends when a user sets 19.5 °C and turns the
	// thermostat off.
	cmds := hasstest.Render(t,
		hasstest.Command(str("temperature_command_template"), 19.5),
		hasstest.Command(str("mode_command_template"), "off"),
		hasstest.Command(str("mode_command_template"), "heat"),
	)
	for i, p := range []struct{ topic, payload string }{
		{str("temperature_command_topic"), cmds[0]},
		{str("mode_command_topic"), cmds[1]},
	} {
		if rc := publish(t, c, &paho.Publish{Topic: p.topic, QoS: 1, Payload: []byte(p.payload)}); rc >= 0x80 {
			t.Fatalf("command %d %s to %s refused: 0x%02x", i, p.payload, p.topic, rc)
		}
	}
	// The state edged publishes says so; the value templates read it.
	var state, reading []byte
	deadline := time.After(15 * time.Second)
	for state == nil || reading == nil {
		select {
		case m := <-msgs:
			switch m.Topic {
			case stateTopic:
				var s struct {
					Setpoint float64 `json:"setpoint"`
					Mode     string  `json:"mode"`
				}
				if json.Unmarshal(m.Payload, &s) == nil && s.Setpoint == 19.5 && s.Mode == "off" {
					state = m.Payload
				}
			case readingTopic:
				reading = m.Payload
			}
		case <-deadline:
			t.Fatalf("no state with setpoint 19.5 and mode off (commands %q), or no reading, after 15 s", cmds[:2])
		}
	}
	got := hasstest.Render(t,
		hasstest.Value(str("temperature_state_template"), state),
		hasstest.Value(str("mode_state_template"), state),
		hasstest.Value(str("action_template"), state),
		hasstest.Value(str("current_temperature_template"), state),
		hasstest.Value(sensor["value_template"].(string), reading),
	)
	if sp, err := strconv.ParseFloat(got[0], 64); err != nil || sp != 19.5 || got[1] != "off" || got[2] != "off" {
		t.Errorf("over %s: target %q, mode %q, action %q; want 19.5, off, off", state, got[0], got[1], got[2])
	}
	var st struct{ Input *float64 }
	var rd struct{ Value float64 }
	if err := json.Unmarshal(state, &st); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(reading, &rd); err != nil {
		t.Fatal(err)
	}
	if st.Input == nil && got[3] != "None" || st.Input != nil && got[3] != strconv.FormatFloat(*st.Input, 'f', -1, 64) {
		t.Errorf("current_temperature_template over %s: %q", state, got[3])
	}
	if v, err := strconv.ParseFloat(got[4], 64); err != nil || v != rd.Value {
		t.Errorf("sensor value_template over %s: %q", reading, got[4])
	}

	// And back on: heat is edged's auto, seen over REST as well.
	if rc := publish(t, c, &paho.Publish{Topic: str("mode_command_topic"), QoS: 1, Payload: []byte(cmds[2])}); rc >= 0x80 {
		t.Fatalf("%s refused: 0x%02x", cmds[2], rc)
	}
	var ctl struct {
		State struct {
			Setpoint float64 `json:"setpoint"`
			Mode     string  `json:"mode"`
		} `json:"state"`
	}
	for i := 0; ; i++ {
		if code, _, body := apiCall(t, "GET", "http://"+httpAddr+"/api/v1/controllers/heat", "", nil, &ctl); code != 200 {
			t.Fatalf("GET controller: %d %s", code, body)
		}
		if ctl.State.Mode == "auto" && ctl.State.Setpoint == 19.5 {
			break
		}
		if i == 150 {
			t.Fatalf("controller after %s: %+v, want auto at 19.5", cmds[2], ctl.State)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHomeAssistantRemovalIntegration: a sensor removed from the config
// between two runs of `edged run` is removed from Home Assistant: at Home
// Assistant's birth message after the restart, an empty retained config
// on its topic, from what the first run kept in state_dir.
func TestHomeAssistantRemovalIntegration(t *testing.T) {
	bin := edgedBinary(t)
	stateDir := filepath.Join(t.TempDir(), "state")
	keepState := func(s string) string {
		i := strings.Index(s, "state_dir: ")
		j := strings.Index(s[i:], "\n")
		return s[:i] + "state_dir: " + stateDir + s[i+j:]
	}

	d, mqttAddr, _, _ := startSim(t, bin, func(s string) string { return keepState(asOperator(s)) })
	_, msgs := haClient(t, mqttAddr)
	collect(t, msgs, simDiscovery, nil)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatal("edged did not stop")
	}
	rec := readHassState(t, stateDir)
	if !sameTopics(rec.Announced, simDiscovery) {
		t.Fatalf("state file after the first run: %+v", rec)
	}

	_, mqttAddr, _, _ = startSim(t, bin, func(s string) string { return withoutLight(t, keepState(asOperator(s))) })
	c, msgs := haClient(t, mqttAddr)
	gone := "homeassistant/sensor/sim-01/light_illuminance/config"
	kept := slices.DeleteFunc(slices.Clone(simDiscovery), func(s string) bool { return s == gone })
	retained := collect(t, msgs, kept, nil)
	if len(retained[gone]) != 0 {
		t.Fatalf("the removed sensor's config is still announced")
	}
	birth(t, c)
	got := collect(t, msgs, append([]string{gone}, kept...), nil)
	if len(got[gone]) != 0 {
		t.Errorf("%s after the birth message: %q, want an empty payload", gone, got[gone])
	}
	for _, k := range kept {
		if len(got[k]) == 0 {
			t.Errorf("%s empty after the birth message", k)
		}
	}
	// Home Assistant heard it: the removal is forgotten.
	for i := 0; ; i++ {
		rec = readHassState(t, stateDir)
		if sameTopics(rec.Announced, kept) && len(rec.Removed) == 0 {
			break
		}
		if i == 100 {
			t.Fatalf("state file after the birth: %+v", rec)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// withoutLight removes the sim example's light sensor from config s.
func withoutLight(t *testing.T, s string) string {
	t.Helper()
	start := strings.Index(s, "  - id: light\n")
	end := strings.Index(s, "  # Temperature and humidity")
	if start < 0 || end < start {
		t.Fatal("sim.yaml's light sensor is not where the test expects it; update the test")
	}
	return s[:start] + s[end:]
}

type hassRecord struct {
	Announced []string `json:"announced"`
	Removed   []string `json:"removed"`
}

func readHassState(t *testing.T, dir string) hassRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, hass.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	var r hassRecord
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return r
}

func sameTopics(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestHomeAssistantUplinkIntegration: with an uplink (to a real
// Mosquitto), the uplink's connection and backlog are announced, and
// their templates, rendered by Jinja2 over the uplink state edged
// publishes, say ON while connected and OFF once the cloud is gone.
func TestHomeAssistantUplinkIntegration(t *testing.T) {
	bin := edgedBinary(t)
	mqBin := requireTool(t, "mosquitto", "EDGED_REQUIRE_MOSQUITTO")
	hasstest.Python(t)
	mq, err := uplinktest.StartMosquitto(mqBin, t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mq.Stop)
	dir := t.TempDir()
	var mqttAddr string
	startReady(t, bin, func() (string, []string) {
		mqttAddr = freePort(t)
		cfg := filepath.Join(dir, "edged.yaml")
		conf := fmt.Sprintf(`device: {id: gw-ha}
state_dir: %s
broker: {mqtt: %q, websocket: "", anonymous_role: operator}
http: {listen: ""}
uplink:
  url: mqtt://%s
  keep_alive: 5s
  forward: [{local: "lan/#"}]
`, filepath.Join(dir, "state"), mqttAddr, mq.Addr)
		if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		return cfg, []string{mqttAddr}
	})
	c, msgs := haClient(t, mqttAddr)
	connTopic := "homeassistant/binary_sensor/gw-ha/uplink_connected/config"
	backlogTopic := "homeassistant/sensor/gw-ha/uplink_backlog/config"
	configs := collect(t, msgs, []string{connTopic, backlogTopic}, nil)
	var conn, backlog map[string]any
	if err := json.Unmarshal(configs[connTopic], &conn); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(configs[backlogTopic], &backlog); err != nil {
		t.Fatal(err)
	}
	stateTopic := conn["state_topic"].(string)
	if stateTopic != backlog["state_topic"] || conn["device_class"] != "connectivity" {
		t.Fatalf("uplink configs: %s\n%s", configs[connTopic], configs[backlogTopic])
	}
	subscribe(t, c, stateTopic)
	// waitState waits for an uplink state with connected == want and
	// renders both templates over it.
	waitState := func(want bool) []string {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case m := <-msgs:
				var s struct{ Connected bool }
				if m.Topic == stateTopic && json.Unmarshal(m.Payload, &s) == nil && s.Connected == want {
					return hasstest.Render(t,
						hasstest.Value(conn["value_template"].(string), m.Payload),
						hasstest.Value(backlog["value_template"].(string), m.Payload))
				}
			case <-deadline:
				t.Fatalf("no uplink state with connected %v after 30 s", want)
			}
		}
	}
	got := waitState(true)
	if _, err := strconv.Atoi(got[1]); got[0] != "ON" || err != nil {
		t.Errorf("connected: binary sensor %q (want ON), backlog %q (want a count)", got[0], got[1])
	}
	mq.Stop()
	if got := waitState(false); got[0] != "OFF" {
		t.Errorf("cloud gone: binary sensor %q, want OFF", got[0])
	}
}
