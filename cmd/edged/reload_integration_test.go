package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/edged/edged/uplink/uplinktest"
)

// lanRecorder is a LAN MQTT client that keeps every message it gets, so
// the test can look back at what arrived after a reload, and never
// stalls the broker's writer for it.
type lanRecorder struct {
	c    *paho.Client
	mu   sync.Mutex
	msgs []*paho.Publish
}

func (r *lanRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// since returns the messages from index i on.
func (r *lanRecorder) since(i int) []*paho.Publish {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs[i:])
}

// waitFor waits until a message from index i on satisfies ok.
func (r *lanRecorder) waitFor(t *testing.T, i int, what string, ok func(*paho.Publish) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if slices.ContainsFunc(r.since(i), ok) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("LAN subscriber: no %s within 20s", what)
}

// sseRecorder reads /api/v1/events on one connection for the whole test.
type sseRecorder struct {
	mu     sync.Mutex
	events []sse
	err    error // why the stream ended
	done   chan struct{}
	cancel context.CancelFunc
}

func recordSSE(t *testing.T, base string) *sseRecorder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/events", nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		cancel()
		resp.Body.Close()
		t.Fatalf("events: status %d", resp.StatusCode)
	}
	s := &sseRecorder{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		var e sse
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				s.mu.Lock()
				s.err = err
				s.mu.Unlock()
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "" && e.name != "":
				s.mu.Lock()
				s.events = append(s.events, e)
				s.mu.Unlock()
				e = sse{}
			case strings.HasPrefix(line, "event: "):
				e.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				e.data = line[6:]
			}
		}
	}()
	return s
}

func (s *sseRecorder) stop() {
	s.cancel()
	<-s.done
}

// waitFor waits until an event from index i on has name and data
// containing sub.
func (s *sseRecorder) waitFor(t *testing.T, i int, name, sub string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		found := slices.ContainsFunc(s.events[min(i, len(s.events)):], func(e sse) bool { return e.name == name && strings.Contains(e.data, sub) })
		err := s.err
		s.mu.Unlock()
		if found {
			return
		}
		if err != nil {
			t.Fatalf("SSE stream ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("SSE: no %s event with %s within 20s", name, sub)
}

func (s *sseRecorder) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

// reloadConfig is the config of TestReloadIntegration; sensors and
// httpAddr vary from step to step.
func reloadConfig(dir, mqttAddr, httpAddr, cloud, sensors string) string {
	return fmt.Sprintf(`device: {id: gw-rl}
state_dir: %s
broker: {mqtt: %q, websocket: "", allow_anonymous: true, anonymous_role: publisher}
http: {listen: %q}
sensors:
%s
uplink:
  url: mqtt://%s
  keep_alive: 5s
  forward:
    - {local: "lan/#", remote: "cloud/{topic}"}
    - {local: "edged/gw-rl/sensor/#", remote: "cloud/{topic}"}
  buffer: {sync: interval, sync_interval: 20ms}
`, filepath.Join(dir, "state"), mqttAddr, httpAddr, sensors, cloud)
}

const (
	reloadKeep  = "  - {id: keep, driver: sim_light, interval: 300ms, filters: [{sliding_window_average: {window: 3}}]}\n"
	reloadGone  = "  - {id: gone, driver: sim_light, interval: 300ms}\n"
	reloadFresh = "  - {id: fresh, driver: sim_light, interval: 300ms}\n"
)

// TestReloadIntegration is issue 13's reload test: a running edged with a
// LAN subscriber, an SSE client and an uplink backlog (the cloud is
// down) reloads on SIGHUP with a changed sensor map. The MQTT session
// and the SSE stream go on over the same connections, the new sensor
// publishes, the removed one goes offline (and leaves Home Assistant),
// the unchanged one keeps sampling on its schedule (its sample count
// goes on, not from zero), and once the cloud is up every buffered
// message arrives, with no gap in the buffer's seqs. A config that does
// not validate is refused and the old one keeps running; a listener
// change is applied as "restart needed". Each reload tells systemd
// RELOADING=1 with MONOTONIC_USEC, then READY=1.
func TestReloadIntegration(t *testing.T) {
	bin := edgedBinary(t)
	mq, proxy := cloudBehindProxy(t) // the cloud is down
	dir := t.TempDir()
	cfg := filepath.Join(dir, "edged.yaml")
	var mqttAddr, httpAddr string
	write := func(sensors, http string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(reloadConfig(dir, mqttAddr, http, proxy.Addr, sensors)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := startReady(t, bin, func() (string, []string) {
		mqttAddr, httpAddr = freePort(t), freePort(t)
		write(reloadKeep+reloadGone, httpAddr)
		return cfg, []string{mqttAddr, httpAddr}
	})
	base := "http://" + httpAddr

	// The LAN subscriber, on one connection for the whole test.
	conn, err := net.DialTimeout("tcp", mqttAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lan := &lanRecorder{}
	lan.c = paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			lan.mu.Lock()
			lan.msgs = append(lan.msgs, pr.Packet)
			lan.mu.Unlock()
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := lan.c.Connect(ctx, &paho.Connect{ClientID: "lan-sub", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lan.c.Disconnect(&paho.Disconnect{}) }()
	subscribe(t, lan.c, "#")
	events := recordSSE(t, base)
	defer events.stop()
	lan.waitFor(t, 0, "reading of keep", func(m *paho.Publish) bool { return m.Topic == "edged/gw-rl/sensor/keep/illuminance" })
	events.waitFor(t, 0, "reading", `"sensor":"keep"`)

	// A backlog: LAN messages the cloud has not got.
	pub, err := uplinktest.Connect(mqttAddr, "lan-pub")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	const perStep = 100
	sent := 0
	publishLAN := func() {
		t.Helper()
		for range perStep {
			if err := pub.Publish("lan/x", []byte(strconv.Itoa(sent))); err != nil {
				t.Fatalf("LAN publish %d: %v", sent, err)
			}
			sent++
		}
	}
	publishLAN()

	reloads := 0
	hup := func() reloadOutcome {
		t.Helper()
		reloads++
		return hupAndWait(t, d, base)
	}

	// 1. A changed sensor map.
	keepBefore := sensorSamples(t, base, "keep")
	if keepBefore < 1 {
		t.Fatalf("keep has not sampled: %d", keepBefore)
	}
	lanMark, sseMark := lan.count(), events.count()
	write(reloadKeep+reloadFresh, httpAddr)
	o := hup()
	if o.Result != reloadApplied || !slices.Contains(o.Changes, "sensor fresh added") || !slices.Contains(o.Changes, "sensor gone removed") ||
		slices.ContainsFunc(o.Changes, func(c string) bool { return strings.Contains(c, "keep") }) || len(o.RestartNeeded) != 0 {
		t.Fatalf("reload 1: %+v, want applied: fresh added, gone removed, keep untouched", o)
	}
	lan.waitFor(t, lanMark, "offline for the removed sensor", func(m *paho.Publish) bool {
		return m.Topic == "edged/gw-rl/sensor/gone/availability" && string(m.Payload) == "offline"
	})
	lan.waitFor(t, lanMark, "reading of the new sensor", func(m *paho.Publish) bool { return m.Topic == "edged/gw-rl/sensor/fresh/illuminance" })
	lan.waitFor(t, lanMark, "removal of the removed sensor's Home Assistant entity", func(m *paho.Publish) bool {
		return strings.HasPrefix(m.Topic, "homeassistant/") && strings.Contains(m.Topic, "gone") && len(m.Payload) == 0
	})
	lan.waitFor(t, lanMark, "Home Assistant config of the new sensor", func(m *paho.Publish) bool {
		return strings.HasPrefix(m.Topic, "homeassistant/") && strings.Contains(m.Topic, "fresh") && len(m.Payload) > 0
	})
	events.waitFor(t, sseMark, "availability", `{"sensor":"gone","online":false}`)
	events.waitFor(t, sseMark, "reading", `"sensor":"fresh"`)
	lan.waitFor(t, lanMark, "reading of the unchanged sensor", func(m *paho.Publish) bool { return m.Topic == "edged/gw-rl/sensor/keep/illuminance" })
	for _, m := range lan.since(lanMark) {
		if m.Topic == "edged/gw-rl/sensor/keep/availability" {
			t.Errorf("the unchanged sensor's availability was published again (%q): it was restarted", m.Payload)
		}
	}
	// The unchanged sensor's sample count went on from where it was: a
	// restarted schedule would count from zero.
	if after := sensorSamples(t, base, "keep"); after < keepBefore {
		t.Errorf("keep's samples went from %d to %d: its schedule was restarted", keepBefore, after)
	}
	if n := sensorSamples(t, base, "gone"); n != -1 {
		t.Errorf("the removed sensor is still sampled (%d samples)", n)
	}
	publishLAN()

	// 2. A config that does not validate: refused, the old one runs on.
	if err := os.WriteFile(cfg, []byte(reloadConfig(dir, mqttAddr, httpAddr, proxy.Addr, reloadKeep+reloadFresh+"  - {id: bad, driver: nonesuch}\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	lanMark = lan.count()
	o = hup()
	if o.Result != reloadRefused || len(o.Errors) == 0 || !regexp.MustCompile(`edged\.yaml:\d+:\d+: .*nonesuch`).MatchString(strings.Join(o.Errors, "\n")) {
		t.Errorf("reload 2: %+v, want refused with FILE:LINE:COL naming the driver", o)
	}
	if !strings.Contains(d.logs.String(), "config reload refused") {
		t.Errorf("no log line for the refused reload")
	}
	lan.waitFor(t, lanMark, "reading of the running sensors after a refused reload", func(m *paho.Publish) bool { return m.Topic == "edged/gw-rl/sensor/fresh/illuminance" })

	// 3. A listener change: applied, reported as restart needed; the
	// listener stays where it is.
	write(reloadKeep+reloadFresh, freePort(t))
	o = hup()
	if o.Result != reloadApplied || !slices.Equal(o.RestartNeeded, []string{"http.listen"}) {
		t.Errorf("reload 3: %+v, want applied with restart_needed [http.listen]", o)
	}
	publishLAN()

	// The outcome in the metrics, as Prometheus would scrape them.
	metrics := getText(t, base+"/metrics")
	for _, want := range []string{
		`edged_config_reloads_total{result="applied"} 2`,
		`edged_config_reloads_total{result="refused"} 1`,
		`edged_config_last_reload_successful 1`,
		`edged_config_restart_needed 1`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("metrics: no %q", want)
		}
	}
	// systemd heard of each reload: RELOADING=1 with the monotonic time,
	// then READY=1.
	// (Other lines, WATCHDOG=1 or STATUS=, may come between.)
	var lines []string
	for _, n := range d.notices() {
		if n.line == "READY=1" || n.line == "RELOADING=1" || strings.HasPrefix(n.line, "MONOTONIC_USEC=") {
			lines = append(lines, n.line)
		}
	}
	mono := regexp.MustCompile(`^MONOTONIC_USEC=[1-9][0-9]*$`)
	want := 1 + 3*reloads // READY=1, then per reload RELOADING=1, MONOTONIC_USEC, READY=1
	if len(lines) != want {
		t.Errorf("notify lines %q, want %d", lines, want)
	} else {
		for i := 1; i < len(lines); i += 3 {
			if lines[i] != "RELOADING=1" || !mono.MatchString(lines[i+1]) || lines[i+2] != "READY=1" {
				t.Errorf("notify lines %d..%d: %q, want RELOADING=1, MONOTONIC_USEC=..., READY=1", i, i+2, lines[i:i+3])
			}
		}
	}

	// The same MQTT session and SSE stream throughout.
	select {
	case <-lan.c.Done():
		t.Fatal("the LAN subscriber's connection ended")
	default:
	}
	events.mu.Lock()
	sseErr := events.err
	events.mu.Unlock()
	if sseErr != nil {
		t.Fatalf("the SSE stream ended: %v", sseErr)
	}

	// The cloud comes up: every buffered message arrives, LAN and
	// readings, and no seq of the buffer is missing.
	col, err := uplinktest.Collect(mq.Addr, "cloud/#")
	if err != nil {
		t.Fatal(err)
	}
	defer col.Close()
	proxy.SetUp(true)
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := map[string]bool{}
		for _, m := range col.Messages() {
			if m.Topic == "cloud/lan/x" {
				got[m.Payload] = true
			}
		}
		if len(got) == sent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d LAN messages reached the cloud", len(got), sent)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rep := uplinktest.Analyze(col.Messages())
	if len(rep.Epochs) != 1 || rep.BadProps != 0 {
		t.Fatalf("epochs %v, %d without properties: want one buffer throughout", rep.Epochs, rep.BadProps)
	}
	var seqs []uint64
	for s := range rep.Seqs {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Errorf("seq %d missing at the cloud (have %d then %d): a buffered message was lost", seqs[i-1]+1, seqs[i-1], seqs[i])
			break
		}
	}
	perTopic := map[string]int{}
	for _, m := range col.Messages() {
		perTopic[m.Topic]++
	}
	t.Logf("cloud: %d distinct messages, seqs %d..%d, %d duplicates, by topic %v", rep.Distinct, seqs[0], seqs[len(seqs)-1], rep.Dups, perTopic)
}

func countLines(ns []notice, line string) int {
	n := 0
	for _, x := range ns {
		if x.line == line {
			n++
		}
	}
	return n
}

// sensorSamples reads a sensor's sample count from /healthz; -1 when
// the sensor is not there.
func sensorSamples(t *testing.T, base, id string) int {
	t.Helper()
	var h struct {
		Sensors map[string]struct {
			Samples int `json:"samples"`
		} `json:"sensors"`
	}
	getJSON(t, base+"/healthz", &h)
	s, ok := h.Sensors[id]
	if !ok {
		return -1
	}
	return s.Samples
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(getText(t, url)), v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func getText(t *testing.T, url string) string {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// hupAndWait sends SIGHUP to d and waits for the READY=1 that ends the
// reload, then returns the outcome /readyz reports.
func hupAndWait(t *testing.T, d *daemonProc, base string) reloadOutcome {
	t.Helper()
	readies := countLines(d.notices(), "READY=1")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil { // by PID: the process we started
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for countLines(d.notices(), "READY=1") == readies {
		if time.Now().After(deadline) {
			t.Fatalf("no READY=1 within 20s of SIGHUP\n%s", d.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var ready struct {
		Reload reloadOutcome `json:"reload"`
	}
	getJSON(t, base+"/readyz", &ready)
	return ready.Reload
}

// TestReloadControllerIntegration: a reload that changes a controller
// and its actuator stops the loop (the heater goes to its safe state),
// reopens the actuator and starts the loop again with the new config; a
// reload that removes the controller stops it for good and the API no
// longer lists it.
func TestReloadControllerIntegration(t *testing.T) {
	bin := edgedBinary(t)
	d, mqttAddr, _, httpAddr := startSim(t, bin, func(c string) string {
		// A LAN client stands for Home Assistant's birth message.
		return strings.Replace(c, "anonymous_role: viewer", "anonymous_role: publisher", 1)
	})
	base := "http://" + httpAddr
	cfg := d.cmd.Args[3]
	conn, err := net.DialTimeout("tcp", mqttAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lan, msgs, _ := login(t, conn, "lan-ha", "", nil)
	subscribe(t, lan, "homeassistant/#")
	subscribe(t, lan, "ha2/#")
	// seen waits for a message on a topic with prefix pre, empty or not.
	seen := func(pre string, empty bool) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case m := <-msgs:
				if strings.HasPrefix(m.Topic, pre) && (len(m.Payload) == 0) == empty {
					return
				}
			case <-deadline:
				t.Fatalf("no message on %s* (empty %v) within 20s", pre, empty)
			}
		}
	}
	setpoint := func() float64 {
		var c struct {
			State struct {
				Setpoint float64 `json:"setpoint"`
			} `json:"state"`
		}
		getJSON(t, base+"/api/v1/controllers/heat", &c)
		return c.State.Setpoint
	}
	if sp := setpoint(); sp != 22.5 {
		t.Fatalf("setpoint %v at start, want 22.5", sp)
	}
	edit := func(pairs ...string) {
		t.Helper()
		data, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s := string(data)
		for i := 0; i < len(pairs); i += 2 {
			if !strings.Contains(s, pairs[i]) {
				t.Fatalf("config has no %q", pairs[i])
			}
			s = strings.Replace(s, pairs[i], pairs[i+1], 1)
		}
		if err := os.WriteFile(cfg, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit("    setpoint: 22.5\n", "    setpoint: 20\n", "    driver: sim_relay\n", "    driver: sim_relay\n    name: Heater two\n")
	o := hupAndWait(t, d, base)
	if o.Result != reloadApplied || !slices.Contains(o.Changes, "actuator heater changed (reopened)") || !slices.Contains(o.Changes, "controller heat restarted") {
		t.Fatalf("reload: %+v, want the heater reopened and heat restarted", o)
	}
	if sp := setpoint(); sp != 20 {
		t.Errorf("setpoint %v after the reload, want 20", sp)
	}
	if !strings.Contains(getText(t, base+"/api/v1/actuators"), `"id":"heater"`) {
		t.Error("the reopened heater is not listed")
	}

	edit("controllers:\n", "old_controllers_removed:\n")
	data, _ := os.ReadFile(cfg)
	// Drop the whole controllers section (up to the broker section).
	s := string(data)
	i, j := strings.Index(s, "old_controllers_removed:\n"), strings.Index(s, "broker:\n")
	if err := os.WriteFile(cfg, []byte(s[:i]+s[j:]), 0o644); err != nil {
		t.Fatal(err)
	}
	o = hupAndWait(t, d, base)
	if o.Result != reloadApplied || !slices.Contains(o.Changes, "controller heat removed") {
		t.Fatalf("reload: %+v, want heat removed", o)
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(base + "/api/v1/controllers/heat")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET the removed controller: %d, want 404", resp.StatusCode)
	}
	seen("homeassistant/climate/", true) // the controller's entity removed

	// A new discovery prefix: the entities move (announced there,
	// removed from the old one) and the birth topic with them.
	edit("  prefix: homeassistant ", "  prefix: ha2 ")
	o = hupAndWait(t, d, base)
	if o.Result != reloadApplied || !slices.Contains(o.Changes, "homeassistant") {
		t.Fatalf("reload: %+v, want homeassistant", o)
	}
	seen("homeassistant/sensor/", true)
	seen("ha2/sensor/", false)
	// Home Assistant's birth on the new prefix asks for the configs again.
	for len(msgs) > 0 {
		<-msgs
	}
	if rc := publish(t, lan, &paho.Publish{Topic: "ha2/status", Payload: []byte("online"), QoS: 1}); rc >= 0x80 {
		t.Fatalf("birth refused: 0x%02x", rc)
	}
	seen("ha2/sensor/", false)
}
