package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// TestHealthzHostCheckedIntegration checks the daemon's own wiring: the
// HTTP server of `edged run` answers /healthz by its address and refuses
// a foreign Host.
func TestHealthzHostCheckedIntegration(t *testing.T) {
	bin := edgedBinary(t)
	cfg, _, _, httpAddr := simConfig(t)
	d := startDaemon(t, bin, cfg)
	waitListening(t, d, httpAddr)
	for host, want := range map[string]int{
		httpAddr:       http.StatusOK,
		"evil.example": http.StatusMisdirectedRequest,
	} {
		req, err := http.NewRequest("GET", "http://"+httpAddr+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %q: status %d, want %d (%s)", host, resp.StatusCode, want, body)
		}
	}
}

// apiCall makes one request to edged's API and decodes a JSON answer
// into out (unless nil).
func apiCall(t *testing.T, method, url, body string, hdr map[string]string, out any) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Errorf("%s %s: %v in %s", method, url, err, b)
		}
	}
	return resp.StatusCode, resp.Header, string(b)
}

// httpClient bounds every request of these tests (a hang guard).
var httpClient = &http.Client{Timeout: 30 * time.Second}

// withRole starts the sim example with the given anonymous role ("" for
// no anonymous access) and returns its API base URL and MQTT address.
func withRole(t *testing.T, role string) (base, mqttAddr string) {
	t.Helper()
	bin := edgedBinary(t)
	_, mqttAddr, _, httpAddr := startSim(t, bin, func(s string) string {
		if role == "" {
			return strings.Replace(s, "allow_anonymous: true", "allow_anonymous: false", 1)
		}
		return strings.Replace(s, "anonymous_role: viewer", "anonymous_role: "+role, 1)
	})
	return "http://" + httpAddr, mqttAddr
}

// TestAPIIntegration walks every route of `edged run`'s API with Go's
// HTTP client, as an operator (the anonymous role), and every error
// status.
func TestAPIIntegration(t *testing.T) {
	base, _ := withRole(t, "operator")

	var me map[string]any
	apiCall(t, "GET", base+"/api/v1/me", "", nil, &me)
	if me["role"] != "operator" || me["anonymous"] != true || me["can_command"] != true {
		t.Errorf("me: %v", me)
	}
	// The first samples are taken at start; the readings reach the API
	// through the pipeline. Poll (a hang guard bounds it).
	var air struct {
		ID, Status string
		Samples    int
		Quantities []struct {
			Name, Unit string
			Value      *float64
			Time       *string
		}
	}
	for i := 0; ; i++ {
		apiCall(t, "GET", base+"/api/v1/sensors/air", "", nil, &air)
		if len(air.Quantities) == 2 && air.Quantities[0].Value != nil && air.Quantities[1].Value != nil {
			break
		}
		if i == 300 {
			t.Fatalf("no readings in the API after 30 s: %+v", air)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if air.Status != "online" || air.Quantities[0].Name != "temperature" || air.Quantities[0].Unit != "°C" {
		t.Errorf("sensor air: %+v", air)
	}
	var list struct{ Sensors []struct{ ID string } }
	apiCall(t, "GET", base+"/api/v1/sensors", "", nil, &list)
	if len(list.Sensors) != 2 || list.Sensors[0].ID != "light" || list.Sensors[1].ID != "air" {
		t.Errorf("sensors: %+v", list)
	}
	var hist struct {
		Sensor, Quantity, Unit string
		Points                 []struct {
			T string
			V float64
		}
	}
	apiCall(t, "GET", base+"/api/v1/sensors/air/history?quantity=temperature&since=10m", "", nil, &hist)
	if hist.Unit != "°C" || len(hist.Points) == 0 || hist.Points[len(hist.Points)-1].V != *air.Quantities[0].Value {
		t.Errorf("history: %+v, want the latest point %v", hist, *air.Quantities[0].Value)
	}
	var ctls struct {
		Controllers []struct {
			ID, Input, Output string
			State             map[string]any
		}
	}
	apiCall(t, "GET", base+"/api/v1/controllers", "", nil, &ctls)
	if len(ctls.Controllers) != 1 || ctls.Controllers[0].ID != "heat" || ctls.Controllers[0].Input != "air/temperature" ||
		ctls.Controllers[0].Output != "heater" || ctls.Controllers[0].State["setpoint"] != 22.5 {
		t.Errorf("controllers: %+v", ctls)
	}
	var patched struct{ State map[string]any }
	if code, _, body := apiCall(t, "PATCH", base+"/api/v1/controllers/heat", `{"setpoint":21}`, nil, &patched); code != 200 || patched.State["setpoint"] != 21.0 {
		t.Errorf("PATCH setpoint 21: %d %s", code, body)
	}
	var one struct{ State map[string]any }
	apiCall(t, "GET", base+"/api/v1/controllers/heat", "", nil, &one)
	if one.State["setpoint"] != 21.0 {
		t.Errorf("controller after the command: %+v", one)
	}
	_, _, body := apiCall(t, "GET", base+"/api/v1/actuators", "", nil, nil)
	if !strings.Contains(body, `"id":"heater","driver":"sim_relay","level":`) || !strings.Contains(body, `"safe_state":"off"`) {
		t.Errorf("actuators: %s", body)
	}
	_, _, body = apiCall(t, "GET", base+"/api/v1/uplink", "", nil, nil)
	if want := `{"enabled":false,"connected":false,"backlog_messages":0,"backlog_bytes":0,"oldest_age_s":0,"last_puback":null,"dropped":0,"dead_letters":0}`; strings.TrimSpace(body) != want {
		t.Errorf("uplink: %s, want %s", body, want)
	}
	var doc struct{ Paths map[string]any }
	apiCall(t, "GET", base+"/api/v1/openapi.json", "", nil, &doc)
	if len(doc.Paths) < 10 {
		t.Errorf("openapi.json: %d paths", len(doc.Paths))
	}
	var hz struct{ Status string }
	apiCall(t, "GET", base+"/healthz", "", nil, &hz)
	if hz.Status != "ok" {
		t.Errorf("healthz: %+v", hz)
	}

	viewer, _ := withRole(t, "viewer")
	closed, _ := withRole(t, "")
	for _, tc := range []struct {
		name, method, url, body string
		hdr                     map[string]string
		want                    int
	}{
		{"bad JSON", "PATCH", base + "/api/v1/controllers/heat", `{"setpoint":`, nil, 400},
		{"no credentials", "GET", closed + "/api/v1/sensors", "", nil, 401},
		{"no such user", "GET", closed + "/api/v1/me", "", map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, 401},
		{"no such token", "GET", base + "/api/v1/me", "", map[string]string{"Authorization": "Bearer x"}, 401},
		{"login: no users yet", "POST", base + "/api/v1/login", `{"user":"u","password":"p"}`, nil, 401},
		{"viewer commands", "PATCH", viewer + "/api/v1/controllers/heat", `{"setpoint":21}`, nil, 403},
		{"foreign origin", "PATCH", base + "/api/v1/controllers/heat", `{"setpoint":21}`, map[string]string{"Origin": "http://evil.example"}, 403},
		{"unknown sensor", "GET", base + "/api/v1/sensors/nope", "", nil, 404},
		{"unknown controller", "PATCH", base + "/api/v1/controllers/nope", `{"setpoint":21}`, nil, 404},
		{"method", "PUT", base + "/api/v1/controllers/heat", `{"setpoint":21}`, nil, 405},
		{"too large", "PATCH", base + "/api/v1/controllers/heat", `{"a":"` + strings.Repeat("x", 65<<10) + `"}`, nil, 413},
		{"content type", "PATCH", base + "/api/v1/controllers/heat", `{"setpoint":21}`, map[string]string{"Content-Type": "text/plain"}, 415},
		{"out of bounds", "PATCH", base + "/api/v1/controllers/heat", `{"setpoint":99}`, nil, 422},
	} {
		code, hdr, body := apiCall(t, tc.method, tc.url, tc.body, tc.hdr, nil)
		var e struct{ Error string }
		if code != tc.want || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
			t.Errorf("%s: %d %s, want %d with a JSON error", tc.name, code, body, tc.want)
		}
		if code == 401 && hdr.Get("WWW-Authenticate") != `Basic realm="edged"` {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, hdr.Get("WWW-Authenticate"))
		}
	}
	// The refused commands changed nothing.
	apiCall(t, "GET", base+"/api/v1/controllers/heat", "", nil, &one)
	if one.State["setpoint"] != 21.0 {
		t.Errorf("setpoint %v after refused commands, want 21", one.State["setpoint"])
	}
	var vme map[string]any
	apiCall(t, "GET", viewer+"/api/v1/me", "", nil, &vme)
	if vme["role"] != "viewer" || vme["can_command"] != false {
		t.Errorf("viewer me: %v", vme)
	}
}

// sseStream reads server-sent events from edged.
type sseStream struct {
	r      *bufio.Reader
	cancel context.CancelFunc
}

type sse struct{ id, name, data string }

// openSSE opens /api/v1/events (resuming after lastID unless it is "").
// Reads end after a minute (a hang guard) or when the test does.
func openSSE(t *testing.T, base, lastID string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/events", nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != 200 {
		t.Fatalf("events: status %d", resp.StatusCode)
	}
	return &sseStream{bufio.NewReader(resp.Body), cancel}
}

// next returns the next event named one of names (any when none given).
func (s *sseStream) next(t *testing.T, names ...string) sse {
	t.Helper()
	var e sse
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading events: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && e.name != "":
			if len(names) == 0 || slices.Contains(names, e.name) {
				return e
			}
			e = sse{}
		case strings.HasPrefix(line, "id: "):
			e.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			e.name = line[7:]
		case strings.HasPrefix(line, "data: "):
			e.data = line[6:]
		}
	}
}

// TestEventsIntegration: readings arrive as SSE events with increasing
// ids, a second stream resumes with Last-Event-ID from exactly the next
// event, and five clients that never read do not stall the others.
func TestEventsIntegration(t *testing.T) {
	bin := edgedBinary(t)
	d, mqttAddr, _, httpAddr := startSim(t, bin, func(s string) string {
		// One air sample a second, so the stream is busy.
		return strings.Replace(s, "interval: 5s\n    timeout: 2s", "interval: 1s\n    timeout: 500ms", 1)
	})
	base := "http://" + httpAddr
	// Five stuck clients: tiny receive buffers, never read; each from its
	// own loopback address, as one address may hold only a few streams.
	for i := range 5 {
		nd := net.Dialer{Timeout: 5 * time.Second, Control: slowRcvBuf,
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(40+i))}}
		c, err := nd.Dial("tcp", httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := fmt.Fprintf(c, "GET /api/v1/events HTTP/1.1\r\nHost: %s\r\n\r\n", httpAddr); err != nil {
			t.Fatal(err)
		}
	}
	a := openSSE(t, base, "")
	first := a.next(t, "reading")
	var r struct {
		Sensor, Quantity, Unit, Time string
		Value                        float64
	}
	if err := json.Unmarshal([]byte(first.data), &r); err != nil || r.Sensor == "" || r.Unit == "" || r.Time == "" {
		t.Errorf("reading event %q: %v", first.data, err)
	}
	after := a.next(t)
	b := openSSE(t, base, first.id)
	if got := b.next(t); got != after {
		t.Errorf("resumed after %s: first event %q, want %q", first.id, got, after)
	}
	// The readers keep getting readings, ids increasing, while the stuck
	// clients sit there; and MQTT readers too.
	msgs := mqttClient(t, dialT(t, mqttAddr), "edged/sim-01/sensor/air/temperature")
	last, _ := strconv.ParseUint(after.id, 10, 64)
	for range 8 {
		e := a.next(t, "reading")
		id, _ := strconv.ParseUint(e.id, 10, 64)
		if id <= last {
			t.Fatalf("event id %d after %d", id, last)
		}
		last = id
	}
	b.next(t, "reading")
	select {
	case <-msgs:
	case <-time.After(30 * time.Second):
		t.Error("no MQTT reading while SSE clients were stuck") // hang guard
	}
	// A clean stop does not wait for the streams.
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
		if d.err != nil {
			t.Errorf("edged exited with %v after SIGTERM", d.err)
		}
	case <-time.After(20 * time.Second):
		t.Error("edged did not stop within 20 s with SSE clients connected")
	}
}

// TestCommandParityIntegration sends the same table of commands through
// PATCH and through MQTT (with a response topic): each gets the same
// answer, since both go through control.Inbox's one validation path.
func TestCommandParityIntegration(t *testing.T) {
	base, mqttAddr := withRole(t, "operator")
	conn := dialT(t, mqttAddr)
	msgs := make(chan *paho.Publish, 64)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { msgs <- pr.Packet; return true, nil }}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "parity", CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "parity/reply", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	n := 0
	viaMQTT := func(payload string) string {
		n++
		corr := strconv.Itoa(n)
		if _, err := c.Publish(ctx, &paho.Publish{Topic: "edged/sim-01/control/heat/set", QoS: 1, Payload: []byte(payload),
			Properties: &paho.PublishProperties{ResponseTopic: "parity/reply", CorrelationData: []byte(corr)}}); err != nil {
			t.Fatal(err)
		}
		for {
			select {
			case m := <-msgs:
				if m.Properties != nil && string(m.Properties.CorrelationData) == corr {
					return string(m.Payload)
				}
			case <-ctx.Done():
				t.Fatalf("no MQTT reply to %s", payload)
			}
		}
	}
	// outcome reduces an answer to what must agree: the error, or the
	// commanded fields of the state (input and output move on their own).
	outcome := func(answer []byte) string {
		var v struct {
			Error    string
			State    json.RawMessage
			Setpoint *float64
			Mode     string
			Gains    map[string]float64
		}
		if err := json.Unmarshal(answer, &v); err != nil {
			return "not JSON: " + string(answer)
		}
		if v.Error != "" {
			return "error: " + v.Error
		}
		if v.State != nil {
			if err := json.Unmarshal(v.State, &v); err != nil {
				return "bad state: " + string(v.State)
			}
		}
		if v.Setpoint == nil {
			return "no state: " + string(answer)
		}
		return fmt.Sprintf("setpoint %v mode %s gains %v", *v.Setpoint, v.Mode, v.Gains)
	}
	for _, tc := range []struct {
		cmd    string
		status int
	}{
		{`{"setpoint":21}`, 200},
		{`{"setpoint":99}`, 422},
		{`{"setpoint":"21"}`, 422},
		{`{"setpoint":null}`, 422},
		{`{"mode":"sideways"}`, 422},
		{`{"nope":1}`, 422},
		{`{}`, 422},
		{`null`, 422},
		{`[1]`, 422},
		{`{"setpoint":`, 400},
		{`{"setpoint":21} {"setpoint":22}`, 400},
		{`{"mode":"manual","output":0.3}`, 200},
		{`{"output":1.5}`, 422},
		{`{"output":0.4}`, 200},
		{`{"mode":"auto"}`, 200},
		{`{"output":0.4}`, 422},
		{`{"mode":"auto","output":0.4}`, 422},
		{`{"gains":{"kp":0.5,"ki":0.002,"kd":0}}`, 200},
		{`{"gains":{"kp":100,"ki":0,"kd":0}}`, 422},
		{`{"gains":{"kp":0.5}}`, 422},
		{`{"reset":"integral"}`, 200},
		{`{"reset":"all"}`, 422},
		{`{"autotune":{},"setpoint":20}`, 422},
		{`{"setpoint":` + strings.Repeat("1", 2000) + `}`, 422},
	} {
		mq := outcome([]byte(viaMQTT(tc.cmd)))
		code, _, body := apiCall(t, "PATCH", base+"/api/v1/controllers/heat", tc.cmd, nil, nil)
		rest := outcome([]byte(body))
		if code != tc.status || rest != mq {
			t.Errorf("%s:\n  MQTT: %s\n  REST: %d %s (want status %d)", tc.cmd, mq, code, rest, tc.status)
		}
	}
}
