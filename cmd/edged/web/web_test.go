package web

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAuth knows one user per role ("<role>" with password "pw") and one
// token ("tok-operator"), and lets anonymous requests in with anonRole
// unless it is "".
type fakeAuth struct{ anonRole string }

func (fakeAuth) Basic(_ context.Context, user, pass string, _ net.Addr) (Identity, error) {
	switch {
	case user == "esp-3" && pass == "pw": // an operator whose rules cover no controller
		return Identity{Name: user, Role: RoleOperator}, nil
	case user == "flood":
		return Identity{}, ErrTooManyFailures
	case rank(user) > 0 && pass == "pw":
		return Identity{Name: user, Role: user}, nil
	}
	return Identity{}, ErrNoSuchUser
}

func (fakeAuth) MayCommand(id Identity, _ bool, _ string) bool { return id.Name != "esp-3" }

func (fakeAuth) Bearer(tok string, _ net.Addr) (Identity, error) {
	if tok == "tok-operator" {
		return Identity{Name: "robot", Role: RoleOperator}, nil
	}
	return Identity{}, ErrNoSuchUser
}

func (a fakeAuth) Anonymous() (Identity, bool) {
	return Identity{Name: "anonymous", Role: a.anonRole}, a.anonRole != ""
}

type fakeStats struct{}

func (fakeStats) SensorStats() []SensorStat {
	return []SensorStat{{ID: "air", Status: "online", Samples: 10, Failures: 1, LastError: "crc"}}
}

// fakeControllers has controller "heat": setpoint 5..30.
type fakeControllers struct {
	mu sync.Mutex
	sp float64
}

func (*fakeControllers) Controllers() []ControllerInfo {
	return []ControllerInfo{{ID: "heat", Input: "air/temperature", Output: "heater"}}
}

func (c *fakeControllers) State(id string) (json.RawMessage, bool) {
	if id != "heat" {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return json.RawMessage(fmt.Sprintf(`{"setpoint":%v}`, c.sp)), true
}

func (c *fakeControllers) Command(_ context.Context, id string, body []byte, _ string) (json.RawMessage, error) {
	var cmd struct{ Setpoint *float64 }
	if err := json.Unmarshal(body, &cmd); err != nil || cmd.Setpoint == nil {
		return nil, fmt.Errorf("%w: want {\"setpoint\": n}", ErrRefused)
	}
	if *cmd.Setpoint < 5 || *cmd.Setpoint > 30 {
		return nil, fmt.Errorf("%w: setpoint %v is out of range (5..30)", ErrRefused, *cmd.Setpoint)
	}
	c.mu.Lock()
	c.sp = *cmd.Setpoint
	c.mu.Unlock()
	st, _ := c.State(id)
	return st, nil
}

type fakeActuators struct{}

func (fakeActuators) Actuators() []Actuator {
	return []Actuator{{ID: "heater", Driver: "sim_relay", Level: 1, SafeState: "off"}}
}

func testDeps(anonRole string) Deps {
	return Deps{
		Auth: fakeAuth{anonRole},
		Sensors: []SensorInfo{{ID: "air", Name: "Air", Driver: "sim_climate",
			Quantities: []Quantity{{"temperature", "°C"}, {"humidity", "%"}}}},
		Stats:       fakeStats{},
		Controllers: &fakeControllers{sp: 20},
		Actuators:   fakeActuators{},
	}
}

// serve runs a Server on a loopback port as edged does (Host check,
// limits) and returns it and its base URL; both end with the test.
func serve(t testing.TB, deps Deps, opts Opts) (*Server, string) {
	t.Helper()
	s, err := New(deps, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer(map[string]struct{}{"127.0.0.1": {}, "localhost": {}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = srv.Serve(ln); done <- struct{}{} }()
	go func() { s.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		_ = srv.Close()
		<-done
		<-done
	})
	return s, "http://" + ln.Addr().String()
}

// call makes one request; hdr holds extra headers ("Content-Type" is
// application/json when a body is given, unless hdr sets it).
func call(t *testing.T, method, url, body string, hdr map[string]string) (int, http.Header, string) {
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
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func basic(user string) map[string]string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, "pw")
	return map[string]string{"Authorization": req.Header.Get("Authorization")}
}

// TestRoutesMatchOpenAPI walks the routes the mux is built from and the
// OpenAPI document's paths: a route without documentation, or a
// documented route that is not served, fails.
func TestRoutesMatchOpenAPI(t *testing.T) {
	s, err := New(testDeps(RoleViewer), DefaultOpts(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapiJSON, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi.json: %v (openapi %q)", err, doc.OpenAPI)
	}
	var documented, served []string
	for p, ops := range doc.Paths {
		for m := range ops {
			documented = append(documented, strings.ToUpper(m)+" "+p)
		}
	}
	for _, r := range s.routes() {
		served = append(served, r.method+" "+r.path)
		// The mux serves it under exactly this pattern.
		req := httptest.NewRequest(r.method, strings.ReplaceAll(r.path, "{id}", "x"), nil)
		if _, pattern := s.mux.Handler(req); pattern != r.method+" "+r.path {
			t.Errorf("%s %s: the mux matches %q", r.method, r.path, pattern)
		}
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Errorf("routes and openapi.json differ:\nserved:     %q\ndocumented: %q", served, documented)
	}
}

func TestAPIStatuses(t *testing.T) {
	_, viewer := serve(t, testDeps(RoleViewer), DefaultOpts())
	_, closed := serve(t, testDeps(""), DefaultOpts())
	opHdr := basic(RoleOperator)
	with := func(h map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for a, b := range h {
			out[a] = b
		}
		return out
	}
	for _, tc := range []struct {
		name, method, base, path, body string
		hdr                            map[string]string
		want                           int
	}{
		{"me anonymous", "GET", viewer, "/api/v1/me", "", nil, 200},
		{"no credentials, anonymous off", "GET", closed, "/api/v1/sensors", "", nil, 401},
		{"bad password", "GET", viewer, "/api/v1/sensors", "", map[string]string{"Authorization": "Basic b3BlcmF0b3I6bm8="}, 401},
		{"bad token", "GET", viewer, "/api/v1/sensors", "", map[string]string{"Authorization": "Bearer nope"}, 401},
		{"unknown scheme", "GET", viewer, "/api/v1/sensors", "", map[string]string{"Authorization": "Digest x"}, 401},
		{"stale session", "GET", viewer, "/api/v1/sensors", "", map[string]string{"Cookie": sessionCookie + "=nope"}, 401},
		{"token", "GET", closed, "/api/v1/sensors", "", map[string]string{"Authorization": "Bearer tok-operator"}, 200},
		{"sensor", "GET", viewer, "/api/v1/sensors/air", "", nil, 200},
		{"unknown sensor", "GET", viewer, "/api/v1/sensors/nope", "", nil, 404},
		{"history", "GET", viewer, "/api/v1/sensors/air/history?quantity=humidity&since=10m", "", nil, 200},
		{"history without quantity", "GET", viewer, "/api/v1/sensors/air/history", "", nil, 400},
		{"history bad since", "GET", viewer, "/api/v1/sensors/air/history?quantity=humidity&since=yesterday", "", nil, 400},
		{"history unknown quantity", "GET", viewer, "/api/v1/sensors/air/history?quantity=voltage", "", nil, 404},
		{"controllers", "GET", viewer, "/api/v1/controllers", "", nil, 200},
		{"controller", "GET", viewer, "/api/v1/controllers/heat", "", nil, 200},
		{"unknown controller", "GET", viewer, "/api/v1/controllers/nope", "", nil, 404},
		{"actuators", "GET", viewer, "/api/v1/actuators", "", nil, 200},
		{"uplink", "GET", viewer, "/api/v1/uplink", "", nil, 200},
		{"unknown path", "GET", viewer, "/api/v1/nope", "", nil, 404},
		{"root left free", "GET", viewer, "/", "", nil, 404},
		{"method", "DELETE", viewer, "/api/v1/controllers/heat", "", opHdr, 405},
		{"method on list", "POST", viewer, "/api/v1/sensors", "{}", nil, 405},
		{"command as viewer", "PATCH", viewer, "/api/v1/controllers/heat", `{"setpoint":21}`, nil, 403},
		{"command", "PATCH", viewer, "/api/v1/controllers/heat", `{"setpoint":21}`, opHdr, 200},
		{"command as admin", "PATCH", viewer, "/api/v1/controllers/heat", `{"setpoint":21}`, basic(RoleAdmin), 200},
		{"command as publisher", "PATCH", viewer, "/api/v1/controllers/heat", `{"setpoint":21}`, basic(RolePublisher), 403},
		{"command outside the user's rules", "PATCH", viewer, "/api/v1/controllers/heat", `{"setpoint":21}`, basic("esp-3"), 403},
		{"login limit reached", "GET", viewer, "/api/v1/me", "", basic("flood"), 429},
		{"command out of bounds", "PATCH", viewer, "/api/v1/controllers/heat", `{"setpoint":99}`, opHdr, 422},
		{"command bad JSON", "PATCH", viewer, "/api/v1/controllers/heat", `{"setpoint":`, opHdr, 400},
		{"command too large", "PATCH", viewer, "/api/v1/controllers/heat", `{"x":"` + strings.Repeat("a", 70<<10) + `"}`, opHdr, 413},
		{"command not JSON", "PATCH", viewer, "/api/v1/controllers/heat", `setpoint=21`, with(opHdr, "Content-Type", "application/x-www-form-urlencoded"), 415},
		{"command unknown controller", "PATCH", viewer, "/api/v1/controllers/nope", `{"setpoint":21}`, opHdr, 404},
		{"command foreign origin", "PATCH", viewer, "/api/v1/controllers/heat", `{"setpoint":21}`, with(opHdr, "Origin", "http://evil.example"), 403},
		{"command own origin", "PATCH", viewer, "/api/v1/controllers/heat", `{"setpoint":21}`, with(opHdr, "Origin", "http://localhost:"+viewer[strings.LastIndex(viewer, ":")+1:]), 200},
		{"login foreign origin", "POST", viewer, "/api/v1/login", `{"user":"admin","password":"pw"}`, map[string]string{"Origin": "http://evil.example"}, 403},
		{"login bad password", "POST", viewer, "/api/v1/login", `{"user":"admin","password":"no"}`, nil, 401},
		{"login bad body", "POST", viewer, "/api/v1/login", `[1]`, nil, 400},
	} {
		code, hdr, body := call(t, tc.method, tc.base+tc.path, tc.body, tc.hdr)
		if code != tc.want {
			t.Errorf("%s: %s %s: status %d, want %d (%s)", tc.name, tc.method, tc.path, code, tc.want, body)
			continue
		}
		if tc.path == "/" && code == 404 {
			continue
		}
		if hdr.Get("Content-Type") != "application/json" || !json.Valid([]byte(body)) {
			t.Errorf("%s: %s (%s): want JSON", tc.name, body, hdr.Get("Content-Type"))
		}
		if code >= 400 {
			var e apiError
			if json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
				t.Errorf("%s: body %s, want {\"error\": ...}", tc.name, body)
			}
		}
		if code == 401 && hdr.Get("WWW-Authenticate") != `Basic realm="edged"` {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, hdr.Get("WWW-Authenticate"))
		}
		if code == 405 && hdr.Get("Allow") == "" {
			t.Errorf("%s: no Allow header", tc.name)
		}
	}
}

func TestMeAndSessions(t *testing.T) {
	s, base := serve(t, testDeps(""), DefaultOpts())
	code, hdr, body := call(t, "POST", base+"/api/v1/login", `{"user":"operator","password":"pw"}`, nil)
	if code != http.StatusNoContent {
		t.Fatalf("login: %d %s", code, body)
	}
	var cookie *http.Cookie
	for _, c := range (&http.Response{Header: hdr}).Cookies() {
		if c.Name == sessionCookie {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || len(cookie.Value) < 43 {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, 32 random bytes", cookie)
	}
	withCookie := map[string]string{"Cookie": sessionCookie + "=" + cookie.Value}
	code, _, body = call(t, "GET", base+"/api/v1/me", "", withCookie)
	want := `{"user":"operator","role":"operator","anonymous":false,"can_command":true}`
	if code != 200 || strings.TrimSpace(body) != want {
		t.Errorf("me with the session: %d %s, want %s", code, body, want)
	}
	if code, _, body := call(t, "PATCH", base+"/api/v1/controllers/heat", `{"setpoint":22}`, withCookie); code != 200 || !strings.Contains(body, `"setpoint":22`) {
		t.Errorf("command with the session: %d %s", code, body)
	}
	if code, _, _ := call(t, "POST", base+"/api/v1/logout", "", withCookie); code != http.StatusNoContent {
		t.Errorf("logout: %d", code)
	}
	if code, _, _ := call(t, "GET", base+"/api/v1/me", "", withCookie); code != http.StatusUnauthorized {
		t.Errorf("me after logout: %d, want 401", code)
	}
	_ = s
	_, anon := serve(t, testDeps(RoleViewer), DefaultOpts())
	_, _, body = call(t, "GET", anon+"/api/v1/me", "", nil)
	if want := `{"user":"anonymous","role":"viewer","anonymous":true,"can_command":false}`; strings.TrimSpace(body) != want {
		t.Errorf("anonymous me: %s, want %s", body, want)
	}
}

// TestUserEvictsOtherUsersSessions pins the bug where any user could end
// every other user's browser session: a full table evicted the oldest
// session, whoever's it was. Now a user's sessions past
// maxSessionsPerUser evict only that user's oldest, and a table full of
// other users' sessions refuses the new login (errSessionsFull: 503).
func TestUserEvictsOtherUsersSessions(t *testing.T) {
	now := time.Unix(1000, 0)
	ss := newSessions(time.Hour, maxSessionsPerUser+2, func() time.Time { return now })
	create := func(name string) (string, error) {
		now = now.Add(time.Second)
		return ss.create(Identity{Name: name, Role: RoleViewer})
	}
	victim, err := create("victim")
	if err != nil {
		t.Fatal(err)
	}
	var mine []string
	for i := range maxSessionsPerUser + 3 {
		tok, err := create("mallory")
		if err != nil {
			t.Fatalf("mallory's login %d: %v", i, err)
		}
		mine = append(mine, tok)
	}
	if _, ok := ss.lookup(victim); !ok {
		t.Fatal("another user's logins ended the victim's session")
	}
	if _, ok := ss.lookup(mine[0]); ok {
		t.Error("mallory's oldest session survived past the per-user cap")
	}
	if _, ok := ss.lookup(mine[len(mine)-1]); !ok {
		t.Error("mallory's newest session is gone")
	}
	if _, err := create("bob"); err != nil {
		t.Fatalf("bob fits in the table: %v", err)
	}
	if _, err := create("carol"); !errors.Is(err, errSessionsFull) {
		t.Errorf("a login into a table full of other users' sessions: %v, want errSessionsFull", err)
	}
	if _, ok := ss.lookup(victim); !ok {
		t.Error("a refused login ended someone's session")
	}
	now = now.Add(2 * time.Hour)
	if _, ok := ss.lookup(victim); ok {
		t.Error("an expired session still works")
	}
	if _, err := create("carol"); err != nil {
		t.Errorf("expired sessions make room: %v", err)
	}
}

// TestEndSessions: after a reload changed the users, no session made
// before it works, and the streams opened with one are told to end.
func TestEndSessions(t *testing.T) {
	ss := newSessions(time.Hour, 8, time.Now)
	tok, err := ss.create(Identity{Name: "gone", Role: RoleOperator})
	if err != nil {
		t.Fatal(err)
	}
	ended, _, ok := ss.watch(tok)
	if !ok {
		t.Fatal("no session")
	}
	ss.clear()
	if _, ok := ss.lookup(tok); ok {
		t.Error("a session outlived clear")
	}
	select {
	case <-ended:
	default:
		t.Error("the session's streams were not told to end")
	}
}

func TestCORS(t *testing.T) {
	opts := DefaultOpts()
	opts.CORSOrigins = []string{"http://dash.lan:3000/"}
	_, base := serve(t, testDeps(RoleOperator), opts)
	code, hdr, _ := call(t, "OPTIONS", base+"/api/v1/controllers/heat", "", map[string]string{
		"Origin": "http://dash.lan:3000", "Access-Control-Request-Method": "PATCH"})
	if code != http.StatusNoContent || hdr.Get("Access-Control-Allow-Origin") != "http://dash.lan:3000" || !strings.Contains(hdr.Get("Access-Control-Allow-Methods"), "PATCH") {
		t.Errorf("preflight from a configured origin: %d %v", code, hdr)
	}
	if code, _, body := call(t, "PATCH", base+"/api/v1/controllers/heat", `{"setpoint":21}`, map[string]string{"Origin": "http://dash.lan:3000"}); code != 200 {
		t.Errorf("command from a configured origin: %d %s", code, body)
	}
	code, hdr, _ = call(t, "GET", base+"/api/v1/sensors", "", map[string]string{"Origin": "http://evil.example"})
	if code != 200 || hdr.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("GET from another origin: %d, Access-Control-Allow-Origin %q: want none", code, hdr.Get("Access-Control-Allow-Origin"))
	}
}

func TestSensorsAndHistory(t *testing.T) {
	opts := DefaultOpts()
	opts.HistoryPoints = 4
	s, base := serve(t, testDeps(RoleViewer), opts)
	t0 := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	for i := range 6 {
		s.Reading("air", "temperature", "°C", 20+float64(i)+0.123456, t0.Add(time.Duration(i)*time.Second))
	}
	_, _, body := call(t, "GET", base+"/api/v1/sensors/air", "", nil)
	var sj sensorJSON
	if err := json.Unmarshal([]byte(body), &sj); err != nil {
		t.Fatal(err)
	}
	if sj.Status != "online" || sj.Samples != 10 || sj.LastError != "crc" || len(sj.Quantities) != 2 ||
		sj.Quantities[0].Value == nil || *sj.Quantities[0].Value != 25.1235 || sj.Quantities[1].Value != nil {
		t.Errorf("sensor: %s", body)
	}
	_, _, body = call(t, "GET", base+"/api/v1/sensors/air/history?quantity=temperature&since=1h", "", nil)
	var h struct {
		Unit   string
		Points []struct {
			T string
			V float64
		}
	}
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatal(err)
	}
	if h.Unit != "°C" || len(h.Points) != 4 || h.Points[0].V != 22.1235 || h.Points[3].V != 25.1235 {
		t.Errorf("history (bound 4): %s", body)
	}
	since := t0.Add(4 * time.Second).UTC().Format(time.RFC3339Nano)
	_, _, body = call(t, "GET", base+"/api/v1/sensors/air/history?quantity=temperature&since="+since, "", nil)
	if err := json.Unmarshal([]byte(body), &h); err != nil || len(h.Points) != 2 {
		t.Errorf("history since %s: %s", since, body)
	}
}

// sseClient reads events from /api/v1/events.
type sseClient struct {
	resp *http.Response
	r    *bufio.Reader
}

type sseEvent struct {
	id, name, data string
}

func openEvents(t *testing.T, base, lastID string) *sseClient {
	t.Helper()
	req, err := http.NewRequest("GET", base+"/api/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	// A hang guard on every read of the stream, not a timing.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close(); cancel() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("events: %d %s", resp.StatusCode, b)
	}
	return &sseClient{resp, bufio.NewReader(resp.Body)}
}

// next returns the next event, skipping comments and retry lines.
func (c *sseClient) next(t *testing.T) sseEvent {
	t.Helper()
	var e sseEvent
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading events: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if e.name != "" {
				return e
			}
		case strings.HasPrefix(line, "id: "):
			e.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			e.name = line[7:]
		case strings.HasPrefix(line, "data: "):
			e.data = line[6:]
		}
	}
}

func TestEventsDeliverAndResume(t *testing.T) {
	opts := DefaultOpts()
	opts.EventRing = 8
	opts.Heartbeat = 50 * time.Millisecond
	s, base := serve(t, testDeps(RoleViewer), opts)
	c := openEvents(t, base, "")
	waitStreams(t, s, 1)
	tm := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s.Reading("air", "temperature", "°C", 21.3, tm)
	s.Availability("air", false)
	s.ControllerState("heat", []byte(`{"setpoint":21}`))
	var got []sseEvent
	for range 3 {
		e := c.next(t)
		if e.name == "uplink" { // the first uplink poll may come first
			e = c.next(t)
		}
		got = append(got, e)
	}
	if got[0].name != "reading" || got[0].data != `{"sensor":"air","quantity":"temperature","value":21.3,"unit":"°C","time":"2026-01-02T03:04:05.000Z"}` ||
		got[1].name != "availability" || got[1].data != `{"sensor":"air","online":false}` ||
		got[2].name != "controller" || got[2].data != `{"id":"heat","state":{"setpoint":21}}` {
		t.Errorf("events: %q", got)
	}
	// Resume after the first: the other two again, same ids.
	r := openEvents(t, base, got[0].id)
	for _, want := range got[1:] {
		if e := r.next(t); e != want {
			t.Errorf("resumed: %q, want %q", e, want)
		}
	}
	// Older than the ring: everything kept, after a gap event.
	for i := range 20 {
		s.Reading("air", "humidity", "%", float64(i), tm)
	}
	g := openEvents(t, base, got[0].id)
	if e := g.next(t); e.name != "gap" || e.id != "" {
		t.Errorf("resume older than the ring: first event %q, want a gap event without id", e)
	}
	first := g.next(t)
	if first.name != "reading" || !strings.Contains(first.data, `"value":12`) {
		t.Errorf("after the gap: %q, want the oldest kept reading (value 12)", first)
	}
}

// A client that stops reading is dropped once its buffer is full, and
// publishing never waits for it: another client gets every event.
func TestEventsSlowClientDropped(t *testing.T) {
	opts := DefaultOpts()
	opts.ClientBuffer = 16
	opts.UplinkEvery = time.Hour // no uplink events in between
	s, base := serve(t, testDeps(RoleViewer), opts)
	slow := openEvents(t, base, "") // never read from until the end
	fast := openEvents(t, base, "")
	waitStreams(t, s, 2)
	tm := time.Now()
	// Far more than the slow client's socket buffers and queue hold; in
	// batches the fast client keeps up with.
	const n, batch = 20000, 8
	for i := 0; i < n; i += batch {
		for j := i; j < i+batch; j++ {
			s.Reading("air", "humidity", "%", float64(j), tm)
		}
		for j := i; j < i+batch; j++ {
			e := fast.next(t)
			if e.name == "uplink" { // the first poll may come after the streams opened
				e = fast.next(t)
			}
			if want := fmt.Sprintf(`"value":%d,`, j); e.name != "reading" || !strings.Contains(e.data, want) {
				t.Fatalf("fast client: event %q, want the reading with %s", e, want)
			}
		}
	}
	if got := s.hub.streams(); got != 1 {
		t.Errorf("%d streams after the flood, want 1 (the slow one dropped)", got)
	}
	// The slow client's stream ends after what reached its socket.
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, slow.r); done <- err }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the slow client's stream did not end") // hang guard
	}
}

func TestEventsBounded(t *testing.T) {
	opts := DefaultOpts()
	opts.MaxStreams = 1
	s, base := serve(t, testDeps(RoleViewer), opts)
	openEvents(t, base, "")
	waitStreams(t, s, 1)
	if code, hdr, _ := call(t, "GET", base+"/api/v1/events", "", nil); code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Errorf("second stream: %d, want 503 with Retry-After", code)
	}
	if code, _, _ := call(t, "GET", base+"/api/v1/events", "", map[string]string{"Last-Event-ID": "x"}); code != 400 {
		t.Errorf("bad Last-Event-ID: %d, want 400", code)
	}
}

// Close (what http.Server.Shutdown calls) ends the streams, so a
// shutdown does not wait for them.
func TestShutdownEndsStreams(t *testing.T) {
	s, base := serve(t, testDeps(RoleViewer), DefaultOpts())
	c := openEvents(t, base, "")
	waitStreams(t, s, 1)
	s.Close()
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, c.r); done <- err }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, io.EOF) {
			t.Logf("stream ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end") // hang guard
	}
}

// waitStreams waits until n event streams are registered (a hang guard
// bounds it).
func waitStreams(t *testing.T, s *Server, n int) {
	t.Helper()
	for i := 0; s.hub.streams() != n; i++ {
		if i > 1000 {
			t.Fatalf("%d event streams, want %d", s.hub.streams(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHubNeverBlocks(t *testing.T) {
	h := newHub(4, 1, 2)
	st, _, _, err := h.subscribe(false, 0, streamOwner{})
	if err != nil {
		t.Fatal(err)
	}
	h.publish("a", []byte("1"))
	h.publish("a", []byte("2")) // the buffer of 1 is full: dropped
	select {
	case <-st.gone:
	default:
		t.Fatal("a full stream was not dropped")
	}
	_, backlog, gap, _ := h.subscribe(true, 1, streamOwner{})
	if gap || len(backlog) != 1 || backlog[0].id != 2 {
		t.Errorf("resume after 1: gap %v, backlog %d", gap, len(backlog))
	}
	for range 5 {
		h.publish("a", nil)
	}
	_, backlog, gap, _ = h.subscribe(true, 1, streamOwner{})
	if !gap || len(backlog) != 4 || backlog[0].id != 4 {
		t.Errorf("resume older than the ring: gap %v, backlog %d", gap, len(backlog))
	}
}

// TestHealthzLeaksWhenAnonymousOff pins the bug where /healthz answered
// everyone in full (sensor ids, last errors, counters) with anonymous
// access off. Without credentials it now says only {"status":"ok"}, so
// probes still work; a user (or anonymous, where allowed) gets it all.
func TestHealthzLeaksWhenAnonymousOff(t *testing.T) {
	_, closed := serve(t, testDeps(""), DefaultOpts())
	code, _, body := call(t, "GET", closed+"/healthz", "", nil)
	if code != http.StatusOK || strings.TrimSpace(body) != `{"status":"ok"}` {
		t.Errorf("anonymous off, no credentials: %d %s, want 200 {\"status\":\"ok\"}", code, body)
	}
	code, _, body = call(t, "GET", closed+"/healthz", "", map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("viewer:pw"))})
	if code != http.StatusOK || !strings.Contains(body, `"air"`) {
		t.Errorf("a viewer: %d %s, want the full answer", code, body)
	}
	_, open := serve(t, testDeps(RoleViewer), DefaultOpts())
	if _, _, body := call(t, "GET", open+"/healthz", "", nil); !strings.Contains(body, `"air"`) {
		t.Errorf("anonymous allowed: %s, want the full answer", body)
	}
}

// loginCookie logs in as user (password "pw") and returns the Cookie
// header of the session.
func loginCookie(t *testing.T, base, user string) string {
	t.Helper()
	code, hdr, body := call(t, "POST", base+"/api/v1/login", `{"user":"`+user+`","password":"pw"}`, nil)
	if code != http.StatusNoContent {
		t.Fatalf("login: %d %s", code, body)
	}
	for _, c := range (&http.Response{Header: hdr}).Cookies() {
		if c.Name == sessionCookie {
			return c.Name + "=" + c.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// openStream opens /api/v1/events with extra headers and returns the
// response (200) or fails.
func openStream(t *testing.T, base string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", base+"/api/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second) // hang guard
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close(); cancel() })
	return resp
}

// TestLogoutLeavesEventStreamsOpen pins the bug where logging out (or a
// session expiring) left the session's open event streams running. A
// stream now ends with its session.
func TestLogoutLeavesEventStreamsOpen(t *testing.T) {
	opts := DefaultOpts()
	opts.SessionTTL = 2 * time.Second
	_, base := serve(t, testDeps(""), opts)
	for _, how := range []string{"logout", "expiry"} {
		cookie := loginCookie(t, base, RoleOperator)
		resp := openStream(t, base, map[string]string{"Cookie": cookie})
		if resp.StatusCode != 200 {
			t.Fatalf("%s: events: %d", how, resp.StatusCode)
		}
		if how == "logout" {
			if code, _, _ := call(t, "POST", base+"/api/v1/logout", "", map[string]string{"Cookie": cookie}); code != http.StatusNoContent {
				t.Fatalf("logout: %d", code)
			}
		}
		// The stream must end (EOF) well before the hang guard; with the
		// bug it runs on, sending pings, until the guard cancels it.
		_, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			t.Errorf("%s: the session's event stream did not end: %v", how, err)
		}
	}
}

// TestOneHostTakesAllEventStreams pins the bug where anyone could take
// all MaxStreams event streams: one address now gets maxStreamsPerAddr,
// one user maxStreamsPerUser, and the last quarter are kept for
// operators and admins.
func TestOneHostTakesAllEventStreams(t *testing.T) {
	_, base := serve(t, testDeps(RoleViewer), DefaultOpts())
	for i := range maxStreamsPerAddr {
		if resp := openStream(t, base, nil); resp.StatusCode != 200 {
			t.Fatalf("stream %d: %d", i, resp.StatusCode)
		}
	}
	if resp := openStream(t, base, nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("stream %d from one address: %d, want 503", maxStreamsPerAddr+1, resp.StatusCode)
	}

	h := newHub(4, 1, 8) // 2 kept for operators and admins
	for i := range 6 {
		if _, _, _, err := h.subscribe(false, 0, streamOwner{addr: fmt.Sprint("192.0.2.", i)}); err != nil {
			t.Fatalf("anonymous stream %d: %v", i, err)
		}
	}
	if _, _, _, err := h.subscribe(false, 0, streamOwner{addr: "192.0.2.100", user: "v"}); err == nil {
		t.Error("a viewer took a stream kept for operators")
	}
	for i := range 2 {
		if _, _, _, err := h.subscribe(false, 0, streamOwner{addr: fmt.Sprint("192.0.2.", 200+i), user: "op", privileged: true}); err != nil {
			t.Errorf("operator stream %d: %v", i, err)
		}
	}
	h2 := newHub(4, 1, 32)
	for i := range maxStreamsPerUser {
		if _, _, _, err := h2.subscribe(false, 0, streamOwner{addr: fmt.Sprint("192.0.2.", i), user: "op", privileged: true}); err != nil {
			t.Fatalf("op stream %d: %v", i, err)
		}
	}
	if _, _, _, err := h2.subscribe(false, 0, streamOwner{addr: "192.0.2.99", user: "op", privileged: true}); err == nil {
		t.Errorf("user stream %d: admitted past maxStreamsPerUser", maxStreamsPerUser+1)
	}
}

// TestOriginIgnoresSchemeAndPort pins the bug where the Origin check
// compared only the host: a page of any other app on the gateway (another
// port, or http for https) could POST /api/v1/logout and commands. The
// whole origin must now be the listener's: scheme, host and port. Over
// TLS the session cookie is __Host-edged_session (Secure, Path=/, no
// Domain), so apps on other ports cannot set or read it.
func TestOriginIgnoresSchemeAndPort(t *testing.T) {
	_, base := serve(t, testDeps(RoleViewer), DefaultOpts())
	u, _ := url.Parse(base)
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{base, true},
		{"http://localhost:" + u.Port(), true},
		{"http://127.0.0.1:1", false},
		{"http://127.0.0.1", false},
		{"https://" + u.Host, false},
	} {
		code, _, body := call(t, "POST", base+"/api/v1/logout", "", map[string]string{"Origin": tc.origin})
		if got := code != http.StatusForbidden; got != tc.ok {
			t.Errorf("logout from origin %s: %d %s, want allowed %v", tc.origin, code, body, tc.ok)
		}
	}

	s, err := New(testDeps(""), DefaultOpts(), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := s.HTTPServer(map[string]struct{}{"localhost": {}}).Handler
	req := httptest.NewRequest("POST", "https://localhost/api/v1/login", strings.NewReader(`{"user":"operator","password":"pw"}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var c *http.Cookie
	for _, k := range rec.Result().Cookies() {
		c = k
	}
	if rec.Code != http.StatusNoContent || c == nil || c.Name != "__Host-edged_session" || !c.Secure || c.Path != "/" || c.Domain != "" {
		t.Fatalf("login over TLS: %d, cookie %+v; want __Host-edged_session, Secure, Path=/, no Domain", rec.Code, c)
	}
	req = httptest.NewRequest("GET", "https://localhost/api/v1/me", nil)
	req.AddCookie(c)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("me with the __Host- cookie: %d %s", rec.Code, rec.Body)
	}
}
