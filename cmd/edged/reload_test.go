package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
)

// reloadBase is a config the diff tests change one key at a time.
const reloadBase = `device: {id: gw}
state_dir: /tmp/edged-reload-test
broker: {mqtt: "127.0.0.1:1883", websocket: ""}
http: {listen: "127.0.0.1:8080"}
users:
  - {name: op, role: operator, tokens: ["sha256:5f0c5f0c5f0c5f0c5f0c5f0c5f0c5f0c5f0c5f0c5f0c5f0c5f0c5f0c5f0c5f0c"]}
sensors:
  - {id: keep, driver: sim_light, interval: 1s, filters: [{delta: 5}]}
  - {id: change, driver: sim_light, interval: 1s}
  - {id: gone, driver: sim_light, interval: 1s}
uplink:
  url: mqtt://127.0.0.1:1
  forward: [{local: "edged/gw/sensor/#"}]
`

func parseReload(t *testing.T, yaml string) *configs.Config {
	t.Helper()
	cfg, err := configs.Parse("edged.yaml", []byte(yaml), drivers.Default, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config does not parse: %v\n%s", err, yaml)
	}
	return cfg
}

// TestDiffConfigs: sensors are told apart by id and whole-entry
// equality; users and forward rules are live; listener addresses,
// state_dir, device id and the uplink's connection take a restart, and
// are named by their config keys.
func TestDiffConfigs(t *testing.T) {
	old := parseReload(t, reloadBase)
	edit := func(pairs ...string) *configs.Config {
		s := reloadBase
		for i := 0; i < len(pairs); i += 2 {
			if !strings.Contains(s, pairs[i]) {
				t.Fatalf("base has no %q", pairs[i])
			}
			s = strings.Replace(s, pairs[i], pairs[i+1], 1)
		}
		return parseReload(t, s)
	}
	for _, tc := range []struct {
		name                   string
		cur                    *configs.Config
		added, removed, change []string
		users, forward         bool
		restart                []string
	}{
		{name: "same file", cur: edit()},
		{name: "sensor map", cur: edit(
			"  - {id: gone, driver: sim_light, interval: 1s}\n", "  - {id: fresh, driver: sim_light, interval: 2s}\n",
			"{id: change, driver: sim_light, interval: 1s}", "{id: change, driver: sim_light, interval: 1s, peak_lux: 5}"),
			added: []string{"fresh"}, removed: []string{"gone"}, change: []string{"change"}},
		{name: "a filter is part of the sensor", cur: edit("filters: [{delta: 5}]", "filters: [{delta: 6}]"), change: []string{"keep"}},
		{name: "users", cur: edit("name: op, role: operator", "name: op, role: viewer"), users: true},
		{name: "anonymous", cur: edit(`websocket: ""}`, `websocket: "", allow_anonymous: false}`), users: true},
		{name: "broker limits", cur: edit(`websocket: ""}`, `websocket: "", max_subscriptions: 10, max_topic_levels: 8, max_sessions: 4, max_queued_messages: 50, max_queued_bytes: 64KiB}`),
			restart: []string{"broker.max_subscriptions", "broker.max_topic_levels", "broker.max_queued_messages", "broker.max_queued_bytes", "broker.max_sessions"}},
		{name: "forward rules", cur: edit(`local: "edged/gw/sensor/#"`, `local: "edged/gw/#"`), forward: true},
		{name: "listeners", cur: edit(`mqtt: "127.0.0.1:1883"`, `mqtt: "127.0.0.1:1884"`, `listen: "127.0.0.1:8080"`, `listen: "127.0.0.1:8081"`),
			restart: []string{"broker.mqtt", "http.listen"}},
		{name: "device and state", cur: edit("id: gw}", "id: gw2}", "/tmp/edged-reload-test", "/tmp/other", `local: "edged/gw/sensor/#"`, `local: "edged/gw2/sensor/#"`),
			restart: []string{"device.id", "device.topic_prefix", "state_dir", "uplink.client_id"}, forward: true}, // the client id defaults to the device id
		{name: "clock trust", cur: edit("device: {id: gw}", "device: {id: gw}\nclock: {trust: always}"), restart: []string{"clock.trust"}},
		{name: "uplink connection", cur: edit("mqtt://127.0.0.1:1", "mqtt://127.0.0.1:2"), restart: []string{"uplink.url"}},
		{name: "uplink buffer", cur: edit("  forward:", "  buffer: {max_bytes: 64MiB}\n  forward:"), restart: []string{"uplink.buffer"}},
		{name: "uplink removed", cur: edit("uplink:\n  url: mqtt://127.0.0.1:1\n  forward: [{local: \"edged/gw/sensor/#\"}]\n", ""), restart: []string{"uplink"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := diffConfigs(old, tc.cur)
			for _, c := range []struct {
				what      string
				got, want []string
			}{{"added", d.sensorsAdded, tc.added}, {"removed", d.sensorsRemoved, tc.removed}, {"changed", d.sensorsChanged, tc.change}, {"restart", d.restart, tc.restart}} {
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s: %q, want %q", c.what, c.got, c.want)
				}
			}
			if d.users != tc.users || d.forward != tc.forward {
				t.Errorf("users %v forward %v, want %v %v", d.users, d.forward, tc.users, tc.forward)
			}
			// What runs keeps the restart keys as they were and takes
			// the rest from the file.
			run := runningConfig(old, tc.cur)
			if run.Device.ID != old.Device.ID || run.StateDir != old.StateDir || run.Broker.MQTT != old.Broker.MQTT ||
				run.HTTP.Listen != old.HTTP.Listen || (run.Uplink == nil) != (old.Uplink == nil) {
				t.Errorf("running config took a restart key from the file: %+v", run)
			}
			if run.Uplink != nil && tc.cur.Uplink != nil && !slices.Equal(run.Uplink.Forward, tc.cur.Uplink.Forward) {
				t.Errorf("running forward rules %v, want the file's %v", run.Uplink.Forward, tc.cur.Uplink.Forward)
			}
			if !slices.EqualFunc(run.Sensors, tc.cur.Sensors, func(a, b configs.Sensor) bool { return a.ID == b.ID }) {
				t.Errorf("running sensors are not the file's")
			}
			if d2 := diffConfigs(run, tc.cur); len(d2.sensorsAdded)+len(d2.sensorsRemoved)+len(d2.sensorsChanged) != 0 || d2.users || d2.forward || !slices.Equal(d2.restart, tc.restart) {
				t.Errorf("the file against what runs after the reload: %+v, want only the same restart keys", d2)
			}
		})
	}
}
