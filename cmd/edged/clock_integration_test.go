package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/edged/edged/uplink/uplinktest"
)

// TestClockUnsyncedThenCorrectedIntegration is issue 13's clock test on
// the real daemon: a failpoint build of `edged run` whose clock reads
// 1970 and whose kernel says "not synchronised" (EDGED_FAKE_CLOCK) until
// the test lets NTP sync it, with the cloud (Mosquitto) out of reach
// meanwhile. Before the sync, LAN subscribers get readings marked
// "clock":"unsynced" with a boot id and since_boot, /readyz notes it
// (still 200) and edged_clock_synced is 0. After it, the cloud gets every
// message, gapless in seq order from seq 1 (max_age: 1h dropped none of
// the "56 year old" captures, and max_oldest_unsent: 10m did not fail
// /readyz over them), each with the true time: the readings
// captured before the sync with their payload's ts corrected and
// "clock":"corrected", the LAN publisher's message with its ts property
// corrected; nothing arrives unsynced.
func TestClockUnsyncedThenCorrectedIntegration(t *testing.T) {
	bin := failpointBinary(t)
	mq, proxy := cloudBehindProxy(t) // the cloud is out of reach
	col, err := uplinktest.Collect(mq.Addr, "cloud/#")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(col.Close)

	dir := t.TempDir()
	syncFile := filepath.Join(dir, "ntp-synced")
	began := time.Now()
	step := time.Date(1970, 1, 1, 1, 0, 0, 0, time.UTC).Sub(began)
	env := []string{fmt.Sprintf("EDGED_FAKE_CLOCK=step=%s,sync_file=%s,check=300ms", step, syncFile)}
	var mqttAddr, httpAddr string
	d := startReadyEnv(t, bin, env, func() (string, []string) {
		mqttAddr, httpAddr = freePort(t), freePort(t)
		cfg := filepath.Join(dir, "edged.yaml")
		conf := fmt.Sprintf(`device: {id: gw-clk}
state_dir: %s
broker: {mqtt: %q, websocket: "", anonymous_role: publisher}
http: {listen: %q}
homeassistant: {enabled: false}
sensors:
  - {id: air, driver: sim_climate, interval: 200ms}
uplink:
  url: mqtt://%s
  keep_alive: 5s
  forward:
    - {local: "edged/gw-clk/sensor/air/temperature", strip: "edged/gw-clk/", remote: "cloud/{topic}"}
    - {local: "lan/#", remote: "cloud/{topic}"}
  buffer: {sync: interval, sync_interval: 20ms, max_age: 1h}
  max_oldest_unsent: 10m
`, filepath.Join(dir, "state"), mqttAddr, httpAddr, proxy.Addr)
		if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		return cfg, []string{mqttAddr, httpAddr}
	})

	// Before the sync.
	conn, err := net.Dial("tcp", mqttAddr)
	if err != nil {
		t.Fatal(err)
	}
	lan := mqttClient(t, conn, "edged/gw-clk/sensor/air/temperature")
	p := nextReading(t, lan)
	if p.Clock != "unsynced" || !strings.HasPrefix(p.TS, "1970-01-01T") || len(p.Boot) != 36 || p.SinceBoot <= 0 {
		t.Fatalf("a reading before the sync: %+v, want 1970, unsynced, a boot id and since_boot", p)
	}
	if code, body := getBody(t, httpAddr, "/readyz"); code != 200 || !strings.Contains(body, `"notes":["clock: not trusted`) {
		t.Errorf("/readyz before the sync: %d %s, want 200 with a clock note", code, body)
	}
	if _, body := getBody(t, httpAddr, "/metrics"); !strings.Contains(body, "\nedged_clock_synced 0\n") {
		t.Errorf("/metrics before the sync has no edged_clock_synced 0")
	}
	pub, err := uplinktest.Connect(mqttAddr, "lan-pub")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish("lan/door", []byte("open")); err != nil {
		t.Fatal(err)
	}
	for range 5 { // more readings captured in 1970
		if p := nextReading(t, lan); p.Clock != "unsynced" || !strings.HasPrefix(p.TS, "1970-01-01T") {
			t.Fatalf("a reading before the sync: %+v", p)
		}
	}

	// NTP syncs.
	if err := os.WriteFile(syncFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitLog(t, d, "wall clock trusted", 30*time.Second)
	for p = nextReading(t, lan); p.Clock != ""; p = nextReading(t, lan) {
	}
	if code, body := getBody(t, httpAddr, "/readyz"); code != 200 || strings.Contains(body, "notes") {
		t.Errorf("/readyz after the sync: %d %s, want 200 without notes", code, body)
	}
	if _, body := getBody(t, httpAddr, "/metrics"); !strings.Contains(body, "\nedged_clock_synced 1\n") || strings.Contains(body, "\nedged_clock_steps_total 0\n") {
		t.Errorf("/metrics after the sync: want edged_clock_synced 1 and a step counted")
	}
	synced := time.Now()

	// The cloud comes back: wait for a reading captured after the sync.
	proxy.SetUp(true)
	deadline := time.Now().Add(60 * time.Second)
	for !hasPlainReading(col.Messages()) {
		if time.Now().After(deadline) {
			t.Fatalf("no reading captured after the sync reached the cloud in 60 s; %d messages", col.Len())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var last uint64
	var corrected, lanSeen int
	var lastTS time.Time
	for _, m := range col.Messages() {
		if m.Seq <= last {
			continue // a resend
		}
		if m.Seq != last+1 {
			t.Fatalf("seq %d after %d: a gap (max_age dropped captures?)", m.Seq, last)
		}
		last = m.Seq
		ts, err := time.Parse(time.RFC3339Nano, m.TS)
		if err != nil || m.Clock != "" || ts.Before(began.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
			t.Errorf("seq %d: ts property %q clock %q; want a time since the test began, no clock mark", m.Seq, m.TS, m.Clock)
		}
		if m.Topic == "cloud/lan/door" {
			lanSeen++
			if m.Payload != "open" || ts.After(synced) {
				t.Errorf("the LAN message: %q at %s, want \"open\" captured before the sync", m.Payload, m.TS)
			}
			continue
		}
		var r readingPayload
		if err := json.Unmarshal([]byte(m.Payload), &r); err != nil {
			t.Fatalf("seq %d: %q: %v", m.Seq, m.Payload, err)
		}
		rt, err := time.Parse(time.RFC3339Nano, r.TS)
		if err != nil || r.Clock == "unsynced" || r.Boot != "" || rt.Before(began.Add(-time.Second)) || rt.After(time.Now().Add(time.Second)) {
			t.Errorf("seq %d: payload %s; want a true ts and no unsynced stamp", m.Seq, m.Payload)
		}
		if r.Clock == "corrected" {
			corrected++
		}
		if rt.Before(lastTS) {
			t.Errorf("seq %d: reading ts %s before the previous %s", m.Seq, rt, lastTS)
		}
		lastTS = rt
	}
	t.Logf("%d messages in seq order, %d readings corrected, %d LAN message", last, corrected, lanSeen)
	if last == 0 || corrected < 6 || lanSeen != 1 {
		t.Errorf("%d messages, %d readings corrected, %d LAN messages; want the 1970 readings corrected and the LAN message once", last, corrected, lanSeen)
	}
}

type readingPayload struct {
	Value     float64 `json:"value"`
	TS        string  `json:"ts"`
	Clock     string  `json:"clock"`
	Boot      string  `json:"boot"`
	SinceBoot float64 `json:"since_boot"`
}

func nextReading(t *testing.T, ch chan *paho.Publish) readingPayload {
	t.Helper()
	select {
	case p := <-ch:
		var r readingPayload
		if err := json.Unmarshal(p.Payload, &r); err != nil {
			t.Fatalf("%s: %q: %v", p.Topic, p.Payload, err)
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no reading in 10 s")
	}
	return readingPayload{}
}

func hasPlainReading(msgs []uplinktest.Received) bool {
	for _, m := range msgs {
		if strings.HasPrefix(m.Topic, "cloud/sensor/") && !strings.Contains(m.Payload, `"clock"`) {
			return true
		}
	}
	return false
}

// waitLog waits until edged has logged msg.
func waitLog(t *testing.T, d *daemonProc, msg string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(d.logs.String(), msg) {
		if time.Now().After(deadline) {
			t.Fatalf("edged did not log %q in %v", msg, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
