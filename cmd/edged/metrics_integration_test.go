package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/edged/edged/sensors/liveness"
	"github.com/edged/edged/uplink/uplinktest"
)

// The tests of /metrics, /healthz, /readyz and the watchdog against a
// real `edged run` on the sim example, real MQTT clients, a real
// Mosquitto as the cloud, and promtool.

// fastSim makes the sim example's air sensor sample every second and lets
// anonymous clients publish, so counters move within a test.
func fastSim(extra string) func(string) string {
	return func(c string) string {
		c = strings.Replace(c, "    interval: 5s\n    timeout: 2s", "    interval: 1s\n    timeout: 500ms", 1)
		c = strings.Replace(c, "anonymous_role: viewer ", "anonymous_role: publisher ", 1)
		// Room for a message above the uplink buffer's record limit.
		c = strings.Replace(c, "max_packet_size: 256KiB", "max_packet_size: 2MiB", 1)
		return c + extra
	}
}

// uplinkYAML forwards the sim's readings and lan/# to url.
func uplinkYAML(url, more string) string {
	return fmt.Sprintf(`
uplink:
  url: mqtt://%s
  keep_alive: 5s
  forward:
    - {local: "edged/sim-01/sensor/#"}
    - {local: "lan/#"}
  buffer: {sync: interval, sync_interval: 20ms}
%s`, url, more)
}

// getBody GETs http://addr+path and returns the status and body.
func getBody(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrapeMetrics GETs /metrics, parses it with the Prometheus text parser
// and checks it with promtool; it returns the families.
func scrapeMetrics(t *testing.T, promtool, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := getBody(t, addr, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	return fams
}

// sample returns the value of family name's sample whose labels include
// want (the sum of a summary); false if there is none.
func sample(fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if got[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Summary != nil:
			return m.GetSummary().GetSampleSum(), true
		}
	}
	return 0, false
}

// must is sample that fails the test when the sample is missing.
func must(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	v, ok := sample(fams, name, labels...)
	if !ok {
		t.Fatalf("/metrics has no %s%v", name, labels)
	}
	return v
}

// TestMetricsIntegration scrapes a running edged with a Mosquitto cloud,
// then makes readings, LAN publishes, an uplink drop, a refused
// connection and uplink sends happen, and checks that their counters
// moved by what happened.
func TestMetricsIntegration(t *testing.T) {
	bin := edgedBinary(t)
	promtool := requireTool(t, "promtool", "EDGED_REQUIRE_PROMTOOL")
	mqBin := requireTool(t, "mosquitto", "EDGED_REQUIRE_MOSQUITTO")
	mq, err := uplinktest.StartMosquitto(mqBin, t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mq.Stop)
	_, mqttAddr, _, httpAddr := startSim(t, bin, fastSim(uplinkYAML(mq.Addr, "")))

	before := scrapeMetrics(t, promtool, httpAddr)
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "edged_build_info", "edged_broker_clients", "edged_uplink_connected"} {
		if before[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}

	// LAN traffic: 20 QoS 1 messages forwarded to the cloud, one above
	// the buffer's record limit (1 MiB: dropped as too_large), and, from another
	// LAN address (127.0.0.3), one connection more than
	// max_clients_per_address (16), refused at accept.
	const n = 20
	pub, err := uplinktest.Connect(mqttAddr, "metrics-pub")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := range n {
		if err := pub.Publish("lan/m", []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	// Too large for the cloud, not for the LAN: acknowledged, counted.
	if err := pub.Publish("lan/big", bytes.Repeat([]byte("x"), 1100<<10)); err != nil {
		t.Errorf("a message too large for the uplink's buffer was refused on the LAN: %v", err)
	}
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}, Timeout: 5 * time.Second}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 16 {
		c, err := dialer.Dial("tcp", mqttAddr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	extra, err := dialer.Dial("tcp", mqttAddr)
	if err != nil {
		t.Fatal(err)
	}
	_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil {
		t.Error("a 17th connection from one address got data; want it closed at accept")
	}
	extra.Close()

	// Wait (bounded) until the cloud acknowledged the 20 and a new air
	// sample came.
	var after map[string]*dto.MetricFamily
	deadline := time.Now().Add(20 * time.Second)
	for {
		after = scrapeMetrics(t, promtool, httpAddr)
		acked := must(t, after, "edged_uplink_acked_total") - must(t, before, "edged_uplink_acked_total")
		samples := must(t, after, "edged_sensor_samples_total", "sensor", "air") - must(t, before, "edged_sensor_samples_total", "sensor", "air")
		if acked >= n && samples >= 1 && must(t, after, "edged_uplink_backlog_messages") == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: %v more acked (want >= %d), %v more air samples, backlog %v", acked, n, samples, must(t, after, "edged_uplink_backlog_messages"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	moved := func(name string, labels ...string) float64 {
		t.Helper()
		b, _ := sample(before, name, labels...) // absent before: 0
		return must(t, after, name, labels...) - b
	}
	if d := moved("edged_broker_messages_received_total"); d < n+1 {
		t.Errorf("edged_broker_messages_received_total moved by %v, want >= %d (the LAN publishes)", d, n+1)
	}
	if d := moved("edged_uplink_sent_total"); d < n {
		t.Errorf("edged_uplink_sent_total moved by %v, want >= %d", d, n)
	}
	if d := moved("edged_uplink_dropped_total", "reason", "too_large"); d != 1 {
		t.Errorf(`edged_uplink_dropped_total{reason="too_large"} moved by %v, want 1 (the 1.1 MiB message)`, d)
	}
	if d := moved("edged_broker_connections_refused_total", "reason", "max_clients_per_address"); d < 1 {
		t.Errorf(`edged_broker_connections_refused_total{reason="max_clients_per_address"} moved by %v, want >= 1 (a 17th connection from one address)`, d)
	}
	if d := moved("edged_uplink_buffer_written_bytes_total"); d < n {
		t.Errorf("edged_uplink_buffer_written_bytes_total moved by %v", d)
	}
	if v := must(t, after, "edged_uplink_buffer_fsyncs_total"); v < 1 {
		t.Errorf("edged_uplink_buffer_fsyncs_total = %v with sync: interval, want >= 1", v)
	}
	if v := must(t, after, "edged_uplink_last_puback_timestamp_seconds"); time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("edged_uplink_last_puback_timestamp_seconds = %v, not recent", v)
	}
	if v := must(t, after, "edged_uplink_connected"); v != 1 {
		t.Errorf("edged_uplink_connected = %v, want 1", v)
	}
	if v := must(t, after, "edged_sensor_value", "sensor", "air", "quantity", "temperature", "unit", "celsius"); v < -40 || v > 80 {
		t.Errorf("air temperature %v is not a greenhouse's", v)
	}
	if v := must(t, after, "edged_control_setpoint", "controller", "heat"); v != 22.5 {
		t.Errorf("edged_control_setpoint{heat} = %v, want 22.5", v)
	}
	for _, loop := range []string{"sensor/air", "sensor/light", "control/heat", "pipeline/queue", "broker/fanout", "uplink"} {
		if v := must(t, after, "edged_loop_overdue_seconds", "loop", loop); v != 0 {
			t.Errorf("loop %s overdue by %v s on a healthy edged", loop, v)
		}
	}
	if code, body := getBody(t, httpAddr, "/readyz"); code != 200 {
		t.Errorf("/readyz on a healthy edged: %d %s", code, body)
	}
}

// TestReadyzOldBacklogIntegration: with the cloud down and
// uplink.max_oldest_unsent at 1s, /readyz turns 503 and says why, while
// /healthz stays 200; once the cloud is back and the backlog drains,
// /readyz is 200 again.
func TestReadyzOldBacklogIntegration(t *testing.T) {
	bin := edgedBinary(t)
	_, proxy := cloudBehindProxy(t) // the cloud is down
	_, _, _, httpAddr := startSim(t, bin, fastSim(uplinkYAML(proxy.Addr, "  max_oldest_unsent: 1s\n")))

	waitProbe := func(path string, want int, contains string, within time.Duration) string {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			code, body := getBody(t, httpAddr, path)
			if code == want && strings.Contains(body, contains) {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after %v: %d %s, want %d with %q", path, within, code, body, want, contains)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	body := waitProbe("/readyz", 503, "max_oldest_unsent", 20*time.Second)
	if !strings.Contains(body, `"status":"fail"`) || !strings.Contains(body, "uplink: the oldest unsent message is") {
		t.Errorf("/readyz body %s does not say what is wrong", body)
	}
	if code, body := getBody(t, httpAddr, "/healthz"); code != 200 {
		t.Errorf("/healthz with an old backlog: %d %s, want 200 (alive, only not ready)", code, body)
	}
	proxy.SetUp(true)
	// The forwarder retries with backoff (at most a minute).
	waitProbe("/readyz", 200, `"status":"ok"`, 90*time.Second)
}

// TestStuckLoopStopsWatchdogIntegration stalls one loop of a running
// edged (the failpoint build blocks it for ever in its heartbeat, as a
// hung actuator write or a wedged driver call would): the heat control
// loop, then the air sensor's schedule. /healthz must turn 503 naming it
// and no other loop, edged must stop sending WATCHDOG=1 to its (fake)
// systemd, and it must have sent them before.
func TestStuckLoopStopsWatchdogIntegration(t *testing.T) {
	bin := failpointBinary(t)
	all := []string{"control/heat", "sensor/air", "sensor/light", "pipeline/queue", "broker/fanout"}
	for _, loop := range []string{"control/heat", "sensor/air"} {
		t.Run(strings.ReplaceAll(loop, "/", "_"), func(t *testing.T) { stuckLoop(t, bin, loop, all) })
	}
}

func stuckLoop(t *testing.T, bin, loop string, all []string) {
	var httpAddr string
	d := startReadyEnv(t, bin, []string{"WATCHDOG_USEC=400000", liveness.StallEnv + "=" + loop + "@2s"}, func() (string, []string) {
		cfg, mqttAddr, wsAddr, h := simConfig(t)
		data, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg, []byte(fastSim("")(string(data))), 0o644); err != nil {
			t.Fatal(err)
		}
		httpAddr = h
		return cfg, []string{mqttAddr, wsAddr, h}
	})
	watchdogs := func(after time.Time) int {
		n := 0
		for _, m := range d.notices() {
			if m.line == "WATCHDOG=1" && m.at.After(after) {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(40 * time.Second)
	var stuckAt time.Time
	var body string
	for {
		code, b := getBody(t, httpAddr, "/healthz")
		if code == 503 {
			stuckAt, body = time.Now(), b
			break
		}
		if code != 200 {
			t.Fatalf("/healthz: %d %s", code, b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz still 200 40 s after %s stalled: %s", loop, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(body, "loop "+loop+" is stuck") {
		t.Errorf("/healthz body %s does not name the stuck loop %s", body, loop)
	}
	for _, other := range all {
		if other != loop && strings.Contains(body, "loop "+other+" ") {
			t.Errorf("/healthz names %s, which is not stuck: %s", other, body)
		}
	}
	if n := watchdogs(time.Time{}); n < 2 {
		t.Errorf("%d WATCHDOG=1 before the loop was stuck, want them every 200 ms", n)
	}
	// One ping may have been on its way when the probe failed; after a
	// second none may come, for 2 s (ten intervals).
	time.Sleep(3 * time.Second)
	if n := watchdogs(stuckAt.Add(time.Second)); n != 0 {
		var lines []string
		for _, m := range d.notices() {
			lines = append(lines, m.at.Sub(stuckAt).String()+" "+m.line)
		}
		sort.Strings(lines)
		t.Errorf("%d WATCHDOG=1 sent while %s was stuck:\n%s", n, loop, strings.Join(lines, "\n"))
	}
	// `systemctl status` says why the watchdog is about to fire.
	stuckStatus := regexp.MustCompile(`^STATUS=STUCK: loop ` + regexp.QuoteMeta(loop) + ` is stuck: .*; \d/2 sensors online, no uplink$`)
	for countNotices(d.notices(), stuckStatus) == 0 {
		if time.Since(stuckAt) > 3*statusEvery+10*time.Second {
			t.Errorf("no %s; sent: %q", stuckStatus, lines(d.notices()))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(d.logs.String(), "a main loop is stuck") {
		t.Error("edged did not log that a main loop is stuck")
	}
	if code, _ := getBody(t, httpAddr, "/readyz"); code != 503 {
		t.Errorf("/readyz with a stuck loop: %d, want 503", code)
	}
}
