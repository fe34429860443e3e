package configs_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
	"github.com/edged/edged/drivers/sim"
	"github.com/edged/edged/pipeline/control"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/uplink"
	"github.com/edged/edged/uplink/wal"
)

var update = flag.Bool("update", false, "rewrite testdata/broken/*.golden from the current output")

// testEnv is the environment the golden files are written against.
func testEnv(name string) (string, bool) {
	v, ok := map[string]string{"EDGED_CLOUD_PASSWORD": "from-env"}[name]
	return v, ok
}

// TestExamples loads every shipped example with the real driver registry:
// an example that does not load is a broken promise to users.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := configs.Load(f, drivers.Default, testEnv)
			if err != nil {
				t.Fatalf("%s does not load:\n%v", f, err)
			}
			if c.Path != f {
				t.Errorf("Path = %q, want %q", c.Path, f)
			}
			if c.Device.TopicPrefix != "edged/"+c.Device.ID {
				t.Errorf("topic prefix %q, want the default edged/%s", c.Device.TopicPrefix, c.Device.ID)
			}
			if len(c.Sensors) == 0 || len(c.Actuators) == 0 || len(c.Controllers) == 0 {
				t.Errorf("example has %d sensors, %d actuators, %d controllers; want some of each",
					len(c.Sensors), len(c.Actuators), len(c.Controllers))
			}
			for _, s := range c.Sensors {
				if s.Opts == nil {
					t.Errorf("sensor %q has no driver options", s.ID)
				}
			}
			for _, a := range c.Actuators {
				if a.Opts == nil {
					t.Errorf("actuator %q has no driver options", a.ID)
				}
			}
		})
	}
}

// TestBrokenGolden loads every testdata/broken/NAME.yaml and compares the
// problems with NAME.golden, line for line. Run `go test ./configs -update`
// to rewrite the golden files, then review the diff.
func TestBrokenGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/broken/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden cases found: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			c, err := configs.Load(f, drivers.Default, testEnv)
			if err == nil {
				t.Fatalf("%s loaded without error; a broken config must not", f)
			}
			if c != nil {
				t.Errorf("a broken config returned a config as well as the error")
			}
			var errs *configs.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want *configs.Errors: %v", err, err)
			}
			for _, e := range errs.List {
				if e.File != f || e.Line < 1 || e.Col < 1 {
					t.Errorf("badly positioned error %+v", e)
				}
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./configs -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("problems differ from %s\ngot:\n%swant:\n%s", golden, got, want)
			}
		})
	}
}

// TestBrokerLimitsLoad: the bounds on what a client leaves in the broker
// have their defaults and take values.
func TestBrokerLimitsLoad(t *testing.T) {
	if d := configs.Default().Broker; d.MaxSubscriptions != 128 || d.MaxTopicLevels != 16 || d.MaxQueuedMessages != 1024 || d.MaxQueuedBytes != 1<<20 || d.MaxSessions != 32 {
		t.Errorf("defaults %d subscriptions of %d levels, %d queued of %d bytes, %d sessions; want 128, 16, 1024, 1MiB, 32",
			d.MaxSubscriptions, d.MaxTopicLevels, d.MaxQueuedMessages, d.MaxQueuedBytes, d.MaxSessions)
	}
	c, err := configs.Parse("limits.yaml", []byte("device: {id: gh-01}\nbroker: {max_subscriptions: 50, max_topic_levels: 8, max_queued_messages: 200, max_queued_bytes: 64KiB, max_sessions: 5}\n"), drivers.Default, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Broker; b.MaxSubscriptions != 50 || b.MaxTopicLevels != 8 || b.MaxQueuedMessages != 200 || b.MaxQueuedBytes != 64<<10 || b.MaxSessions != 5 {
		t.Errorf("got %d subscriptions of %d levels, %d queued of %d bytes, %d sessions; want 50, 8, 200, 64KiB, 5",
			b.MaxSubscriptions, b.MaxTopicLevels, b.MaxQueuedMessages, b.MaxQueuedBytes, b.MaxSessions)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := configs.Load(filepath.Join(t.TempDir(), "nope.yaml"), drivers.Default, testEnv)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want a wrapped os.ErrNotExist", err)
	}
	if !strings.HasPrefix(err.Error(), "configs: ") {
		t.Errorf("err = %q, want the configs: prefix", err)
	}
}

// TestParseDefaultsAndValues pins what a minimal and a fuller config
// decode to: omitted keys keep their defaults, given ones land in place.
func TestParseDefaultsAndValues(t *testing.T) {
	min, err := configs.Parse("min.yaml", []byte("device: {id: gh-01}\n"), drivers.Default, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := configs.Default()
	want.Path = "min.yaml"
	want.Device = configs.Device{ID: "gh-01", TopicPrefix: "edged/gh-01"}
	if !reflect.DeepEqual(*min, want) {
		t.Errorf("minimal config:\ngot  %+v\nwant %+v", *min, want)
	}
	if ha := min.HomeAssistant; !ha.Enabled || ha.Prefix != "homeassistant" || ha.ConfigurationURL != "" {
		t.Errorf("homeassistant defaults %+v, want on under homeassistant/", ha)
	}
	off, err := configs.Parse("off.yaml", []byte("device: {id: gh-01}\nhomeassistant: {enabled: false}\n"), drivers.Default, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if ha := off.HomeAssistant; ha.Enabled || ha.Prefix != "homeassistant" {
		t.Errorf("homeassistant: {enabled: false} gave %+v", ha)
	}

	src := `
device: {id: gh-01, topic_prefix: farm/gh-01}
sensors:
  - {id: air, driver: sim_climate, interval: 2s, ambient: 5, filters: [{delta: 0.5}]}
  - {id: light, driver: sim_light}
actuators:
  - {id: heater, driver: sim_relay, plant: greenhouse}
controllers:
  - {id: heat, input: air/temperature, output: heater, setpoint: 20, pid: {kp: 1}, cycle: 60s}
uplink:
  url: mqtt://10.0.0.2:1883
  password: ${EDGED_CLOUD_PASSWORD}
  forward: [{local: "farm/gh-01/#", qos: 0}]
  buffer: {max_bytes: 64MiB, sync: always}
`
	c, err := configs.Parse("full.yaml", []byte(src), drivers.Default, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	air := c.Sensors[0]
	poll := sensors.DefaultPollOpts()
	poll.Interval = 2 * time.Second
	delta := 0.5
	poll.Filters = []sensors.FilterSpec{{Delta: &delta}}
	if !reflect.DeepEqual(air.PollOpts, poll) {
		t.Errorf("air poll options = %+v, want %+v", air.PollOpts, poll)
	}
	climate, ok := air.Opts.(*sim.ClimateOpts)
	if !ok {
		t.Fatalf("air options are %T", air.Opts)
	}
	wantClimate := sim.DefaultClimateOpts()
	wantClimate.Ambient = 5
	if *climate != wantClimate {
		t.Errorf("air options = %+v, want %+v", *climate, wantClimate)
	}
	if c.Sensors[1].PollOpts.Interval != sensors.DefaultPollOpts().Interval {
		t.Errorf("light interval = %v, want the default", c.Sensors[1].PollOpts.Interval)
	}
	wantCtl := control.DefaultOpts()
	wantCtl.ID, wantCtl.Input, wantCtl.Output, wantCtl.Setpoint, wantCtl.PID.Kp = "heat", "air/temperature", "heater", 20, 1
	wantCtl.Cycle = time.Minute
	if !reflect.DeepEqual(c.Controllers[0], wantCtl) {
		t.Errorf("controller = %+v, want %+v", c.Controllers[0], wantCtl)
	}
	wantUp := uplink.DefaultOpts()
	wantUp.URL, wantUp.ClientID, wantUp.Password = "mqtt://10.0.0.2:1883", "gh-01", "from-env"
	wantUp.Forward = []uplink.Rule{{Local: "farm/gh-01/#", QoS: 0}}
	wantUp.Buffer.MaxBytes, wantUp.Buffer.Sync = 64<<20, wal.SyncAlways
	if c.Uplink == nil || !reflect.DeepEqual(*c.Uplink, wantUp) {
		t.Errorf("uplink = %+v, want %+v", c.Uplink, wantUp)
	}
	if c.Device.TopicPrefix != "farm/gh-01" {
		t.Errorf("topic prefix = %q", c.Device.TopicPrefix)
	}
}

// TestParseForwardRules checks the uplink's filter and template rules as
// the loader reports them.
func TestParseForwardRules(t *testing.T) {
	tests := []struct {
		local, remote string
		want          string // "" = valid, else a substring of the one problem
	}{
		{"edged/gh-01/sensor/#", "", ""},
		{"#", "", ""},
		{"+/+/sensor/+/temperature", "", ""},
		{"edged/+/sensor/#", "farms/{device}/{topic}", ""},
		{"edged/gh-01/status", "gh-01/status", ""},
		{"$SYS/#", "sys/{device}", ""},
		{"", "", "empty topic filter"},
		{"edged/#/sensor", "", "'#' must be the last level"},
		{"edged/gh-01#", "", "'#' must stand alone in its level"},
		{"edged/gh+/x", "", "'+' must stand alone in its level"},
		{"edged/#", "farms/#", "wildcards (+ #) are not allowed"},
		{"edged/#", "farms/+/x", "wildcards (+ #) are not allowed"},
		{"edged/#", "farms/{id}/x", "unknown placeholder {id}"},
		{"edged/#", "farms/{topic", "unclosed '{'"},
	}
	for _, tt := range tests {
		src := fmt.Sprintf("device: {id: gh-01}\nuplink:\n  url: mqtts://c.example:8883\n  forward: [{local: %q, remote: %q}]\n", tt.local, tt.remote)
		_, err := configs.Parse("t.yaml", []byte(src), drivers.Default, testEnv)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("local %q remote %q: %v", tt.local, tt.remote, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || strings.Count(err.Error(), "\n") > 0):
			t.Errorf("local %q remote %q: got %v, want one problem containing %q", tt.local, tt.remote, err, tt.want)
		}
	}
}

func TestParseSyntaxAndDocuments(t *testing.T) {
	tests := []struct{ src, want string }{
		{"", "t.yaml:1:1: the file is empty"},
		{"# only a comment\n", "t.yaml:1:1: the file is empty"},
		{"device: {id: gh-01}\n---\ndevice: {id: gh-02}\n", "t.yaml:2:1: yaml syntax: a config file holds one YAML document"},
		{"device: {id: gh-01\n", "t.yaml:1:1: yaml syntax: did not find expected ',' or '}'"},
		{"device:\n\tid: x\n", "t.yaml:2:1: yaml syntax: found character that cannot start any token"},
		{"- 1\n- 2\n", "t.yaml:1:1: want a mapping, got a list"},
		{"sensors: *nope\n", "t.yaml:1:1: yaml syntax: unknown anchor 'nope' referenced"},
	}
	for _, tt := range tests {
		_, err := configs.Parse("t.yaml", []byte(tt.src), drivers.Default, testEnv)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want an error starting %q", tt.src, err, tt.want)
		}
	}
}

// BenchmarkParse measures loading the Pi example, which edged does at
// start and on every SIGHUP.
func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("examples/pi-greenhouse.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := configs.Parse("pi.yaml", data, drivers.Default, testEnv); err != nil {
			b.Fatal(err)
		}
	}
}

// TestParseGuards decodes every runaway guard and failure action key of
// a controller (issue 9).
func TestParseGuards(t *testing.T) {
	src := `device: {id: gh-01}
sensors:
  - {id: air, driver: sim_climate}
actuators:
  - {id: heater, driver: sim_relay}
controllers:
  - id: heat
    input: air/temperature
    output: heater
    setpoint: 18
    pid: {kp: 0.4, ki: 0.002}
    cycle: 60s
    input_min: -20
    input_max: 60
    stuck_after: 30m
    cutoff_above: 35
    on_input_failure: fixed
    fixed_output: 0.2
`
	c, err := configs.Parse("guards.yaml", []byte(src), drivers.Default, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	f := func(v float64) *float64 { return &v }
	want := control.DefaultOpts()
	want.ID, want.Input, want.Output, want.Setpoint = "heat", "air/temperature", "heater", 18
	want.PID, want.Cycle = control.Gains{Kp: 0.4, Ki: 0.002}, time.Minute
	want.InputMin, want.InputMax, want.StuckAfter, want.CutoffAbove = f(-20), f(60), 30*time.Minute, f(35)
	want.OnInputFailure, want.FixedOutput = control.FailFixed, f(0.2)
	if !reflect.DeepEqual(c.Controllers[0], want) {
		t.Errorf("controller = %+v, want %+v", c.Controllers[0], want)
	}
	if def := control.DefaultOpts(); def.OnInputFailure != control.FailSafe {
		t.Errorf("default on_input_failure %q, want safe", def.OnInputFailure)
	}
}

// TestUsersLoad: users decode with a hash inline or from the
// environment, keep their rules and tokens, and reach the broker.
func TestUsersLoad(t *testing.T) {
	const hash = "$2a$10$Waq98b1ZVWP6ebXxfgezyOUclcF6pZyr5Mv0x.U3hZZCjtb9ln7S6"
	yaml := `device: {id: gh-01}
broker:
  mqtts: 0.0.0.0:8883
  tls: {cert_file: /etc/edged/tls/server.pem, key_file: /etc/edged/tls/server.key}
users:
  - name: alice
    password_hash: "` + hash + `"
    role: operator
  - name: esp-3
    password_hash: ${ESP3_HASH}
    role: publisher
    publish: ["home/esp-3/#"]
  - name: dash
    role: viewer
    tokens: ["sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"]
`
	env := func(k string) (string, bool) { return map[string]string{"ESP3_HASH": hash}[k], k == "ESP3_HASH" }
	c, err := configs.Parse("users.yaml", []byte(yaml), drivers.Default, env)
	if err != nil {
		t.Fatal(err)
	}
	u := c.Broker.Users
	if len(u) != 3 || u[0].PasswordHash != hash || u[1].PasswordHash != hash || u[1].Publish[0] != "home/esp-3/#" || u[2].Tokens[0] == "" || u[2].Role != "viewer" {
		t.Fatalf("users %+v", u)
	}
	if c.Broker.TLS.KeyFile != "/etc/edged/tls/server.key" || c.Broker.MQTTS != "0.0.0.0:8883" {
		t.Fatalf("broker %+v", c.Broker)
	}
}

// TestLoadForCheckUnsetEnv: on a machine without the secrets, an unset
// ${NAME} is reported with its variable and position and the rest of the
// config is still checked, down to the struct that holds the secret;
// Load keeps refusing the same file.
func TestLoadForCheckUnsetEnv(t *testing.T) {
	noEnv := func(string) (string, bool) { return "", false }
	const pi = "examples/pi-greenhouse.yaml"
	if _, err := configs.Load(pi, drivers.Default, noEnv); err == nil || !strings.Contains(err.Error(), "EDGED_CLOUD_PASSWORD is not set") {
		t.Fatalf("Load without the secret: %v, want the unset variable named", err)
	}
	c, unset, err := configs.LoadForCheck(pi, drivers.Default, noEnv)
	if err != nil {
		t.Fatalf("LoadForCheck: %v", err)
	}
	if c == nil || c.Uplink == nil || c.Uplink.Password != "" {
		t.Fatalf("config %+v", c)
	}
	at := secretAt(t, pi)
	if len(unset) != 1 || unset[0].Unset != "EDGED_CLOUD_PASSWORD" || fmt.Sprintf("%d:%d", unset[0].Line, unset[0].Col) != at ||
		unset[0].Error() != pi+":"+at+": password: environment variable EDGED_CLOUD_PASSWORD is not set" {
		t.Fatalf("unset = %+v", unset)
	}

	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// An unset password does not hide a problem beside it in the uplink.
	bad := write("bad.yaml", `device: {id: gh-01}
uplink:
  url: mqtt://10.0.0.2:1883
  password: ${EDGED_CLOUD_PASSWORD}
  keep_alive: 0s
`)
	_, unset, err = configs.LoadForCheck(bad, drivers.Default, noEnv)
	if err == nil || err.Error() != bad+":5:15: keep_alive: 0s is out of range (1s..18h12m15s)" || len(unset) != 1 {
		t.Fatalf("unset password beside a bad keep_alive: err %v, unset %+v", err, unset)
	}
	// A user whose hash is unset is not also "missing" a hash.
	users := write("users.yaml", `device: {id: gh-01}
users:
  - {name: esp-3, password_hash: "${ESP3_HASH}", role: publisher, publish: ["home/#"]}
`)
	c, unset, err = configs.LoadForCheck(users, drivers.Default, noEnv)
	if err != nil || c == nil || len(unset) != 1 || unset[0].Unset != "ESP3_HASH" {
		t.Fatalf("unset hash: err %v, unset %+v", err, unset)
	}
}

// secretAt is where the Pi example's ${EDGED_CLOUD_PASSWORD} value
// stands, "LINE:COL", found in the file so that an edit above it does
// not break the tests that expect the position.
func secretAt(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(data), "\n") {
		if k := strings.Index(l, "password: "); k >= 0 && strings.Contains(l, "${EDGED_CLOUD_PASSWORD}") && !strings.HasPrefix(strings.TrimSpace(l), "#") {
			return fmt.Sprintf("%d:%d", i+1, k+len("password: ")+1)
		}
	}
	t.Fatalf("%s: no password: ${EDGED_CLOUD_PASSWORD} line", file)
	return ""
}
