package web

import (
	"net/http"
	"strings"
	"sync"
	"testing"
)

// fakeProbes reports what the test sets.
type fakeProbes struct {
	mu          sync.Mutex
	live, ready []string
}

func (p *fakeProbes) Live() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live
}

func (p *fakeProbes) Ready() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ready
}

func (p *fakeProbes) set(live, ready []string) {
	p.mu.Lock()
	p.live, p.ready = live, ready
	p.mu.Unlock()
}

// TestProbes: /healthz and /readyz answer 200 while nothing is wrong and
// 503 with the problems when something is; a caller without credentials
// while anonymous access is off gets the status and no names.
func TestProbes(t *testing.T) {
	probes := &fakeProbes{}
	deps := testDeps("")
	deps.Probes = probes
	_, base := serve(t, deps, DefaultOpts())
	for _, path := range []string{"/healthz", "/readyz"} {
		code, _, body := call(t, "GET", base+path, "", nil)
		if code != http.StatusOK || !strings.Contains(body, `"status":"ok"`) {
			t.Errorf("%s, all well: %d %s, want 200 ok", path, code, body)
		}
	}
	probes.set([]string{"loop control/heat is stuck"}, []string{"loop control/heat is stuck", "uplink: the oldest unsent message is 2m0s old"})
	for _, c := range []struct {
		path, want string
	}{
		{"/healthz", "control/heat"},
		{"/readyz", "oldest unsent"},
	} {
		code, _, body := call(t, "GET", base+c.path, "", basic(RoleViewer))
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `"status":"fail"`) || !strings.Contains(body, c.want) {
			t.Errorf("%s as a viewer, something wrong: %d %s, want 503 naming %q", c.path, code, body, c.want)
		}
		code, _, body = call(t, "GET", base+c.path, "", nil)
		if code != http.StatusServiceUnavailable || strings.TrimSpace(body) != `{"status":"fail"}` {
			t.Errorf("%s without credentials (anonymous off): %d %s, want 503 {\"status\":\"fail\"} and no names", c.path, code, body)
		}
	}
	// Not ready but alive: /healthz stays 200.
	probes.set(nil, []string{"sensor air: no sample attempted yet"})
	if code, _, body := call(t, "GET", base+"/healthz", "", nil); code != http.StatusOK {
		t.Errorf("/healthz while only not ready: %d %s, want 200", code, body)
	}
}

// notingProbes are probes with notes (web.Noter).
type notingProbes struct {
	fakeProbes
	notes []string
}

func (p *notingProbes) Notes() []string { return p.notes }

// TestReadyzNotes: a note (the clock not trusted) shows in /readyz for
// users, fails nothing, and is hidden from strangers as problems are.
func TestReadyzNotes(t *testing.T) {
	probes := &notingProbes{notes: []string{"clock: not trusted (the kernel says the clock is not synchronised)"}}
	deps := testDeps("")
	deps.Probes = probes
	_, base := serve(t, deps, DefaultOpts())
	code, _, body := call(t, "GET", base+"/readyz", "", basic(RoleViewer))
	if code != http.StatusOK || !strings.Contains(body, `"status":"ok"`) || !strings.Contains(body, `"notes":["clock: not trusted`) {
		t.Errorf("/readyz as a viewer with a note: %d %s, want 200 ok with the note", code, body)
	}
	code, _, body = call(t, "GET", base+"/readyz", "", nil)
	if code != http.StatusOK || strings.TrimSpace(body) != `{"status":"ok"}` {
		t.Errorf("/readyz without credentials: %d %s, want 200 {\"status\":\"ok\"}", code, body)
	}
}

// TestMetricsAccess: /metrics follows the API's access rules: open when
// anonymous access is, else HTTP Basic or a bearer token.
func TestMetricsAccess(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("edged_up 1\n")) })
	deps := testDeps("")
	deps.Metrics = h
	_, closed := serve(t, deps, DefaultOpts())
	if code, _, body := call(t, "GET", closed+"/metrics", "", nil); code != http.StatusUnauthorized {
		t.Errorf("anonymous off, no credentials: %d %s, want 401", code, body)
	}
	if code, _, body := call(t, "GET", closed+"/metrics", "", map[string]string{"Authorization": "Bearer tok-operator"}); code != http.StatusOK || body != "edged_up 1\n" {
		t.Errorf("bearer token: %d %q, want 200 and the metrics", code, body)
	}
	if code, _, _ := call(t, "GET", closed+"/metrics", "", basic(RoleViewer)); code != http.StatusOK {
		t.Errorf("Basic as a viewer: %d, want 200", code)
	}
	open := testDeps(RoleViewer)
	open.Metrics = h
	_, base := serve(t, open, DefaultOpts())
	if code, _, _ := call(t, "GET", base+"/metrics", "", nil); code != http.StatusOK {
		t.Errorf("anonymous allowed: %d, want 200", code)
	}
	_, none := serve(t, testDeps(RoleViewer), DefaultOpts())
	if code, _, _ := call(t, "GET", none+"/metrics", "", nil); code != http.StatusNotFound {
		t.Errorf("no Metrics handler: %d, want 404", code)
	}
}

// reloadProbes is fakeProbes that knows the last reload.
type reloadProbes struct {
	fakeProbes
	last any
}

func (p *reloadProbes) LastReload() any { return p.last }

// TestReadyzReload: /readyz carries the last config reload's outcome
// for users (issue 13), and nothing of it for strangers.
func TestReadyzReload(t *testing.T) {
	probes := &reloadProbes{last: map[string]any{"result": "refused", "errors": []string{"edged.yaml:3:5: bad"}}}
	deps := testDeps("")
	deps.Probes = probes
	_, base := serve(t, deps, DefaultOpts())
	code, _, body := call(t, "GET", base+"/readyz", "", basic(RoleViewer))
	if code != http.StatusOK || !strings.Contains(body, `"reload":{"errors":["edged.yaml:3:5: bad"],"result":"refused"}`) {
		t.Errorf("/readyz as a viewer: %d %s, want 200 with the reload outcome", code, body)
	}
	code, _, body = call(t, "GET", base+"/readyz", "", nil)
	if code != http.StatusOK || strings.TrimSpace(body) != `{"status":"ok"}` {
		t.Errorf("/readyz without credentials: %d %s, want only the status", code, body)
	}
}

// TestSetSensors: the sensor list follows a reload.
func TestSetSensors(t *testing.T) {
	deps := testDeps(RoleViewer)
	s, base := serve(t, deps, DefaultOpts())
	s.SetSensors([]SensorInfo{{ID: "fresh", Quantities: []Quantity{{Name: "pressure", Unit: "Pa"}}}})
	code, _, body := call(t, "GET", base+"/api/v1/sensors", "", nil)
	if code != http.StatusOK || !strings.Contains(body, `"id":"fresh"`) || strings.Count(body, `"id":`) != 1 {
		t.Errorf("sensors after SetSensors: %d %s, want only fresh", code, body)
	}
	if code, _, _ := call(t, "GET", base+"/api/v1/sensors/fresh", "", nil); code != http.StatusOK {
		t.Errorf("the added sensor: %d, want 200", code)
	}
}
