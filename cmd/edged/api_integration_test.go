package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
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
