package dashboard

// fakeAPI is a test double of edged's REST API and event stream
// (/api/v1, see the README's Dashboard section), so that the page can be
// tested in a real browser on its own, with data the test controls. It
// is not the API: the end-to-end test in cmd/edged runs the page
// against the real daemon.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

var roleRank = map[string]int{"viewer": 0, "publisher": 1, "operator": 2, "admin": 3}

type fakeUser struct{ password, role string }

type fakeQuantity struct {
	Name  string  `json:"name"`
	Unit  string  `json:"unit"`
	Value float64 `json:"value"`
	Time  string  `json:"time"`
}

type fakeSensor struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Driver     string          `json:"driver"`
	Status     string          `json:"status"`
	Samples    int             `json:"samples"`
	Failures   int             `json:"failures"`
	LastError  string          `json:"last_error"`
	Quantities []*fakeQuantity `json:"quantities"`
}

type fakeState struct {
	Setpoint    float64  `json:"setpoint"`
	Input       *float64 `json:"input"`
	Output      float64  `json:"output"`
	Mode        string   `json:"mode"`
	Applied     string   `json:"applied"`
	Fault       string   `json:"fault"`
	SetpointMin float64  `json:"setpoint_min"`
	SetpointMax float64  `json:"setpoint_max"`
}

type fakeController struct {
	ID     string    `json:"id"`
	Input  string    `json:"input"`
	Output string    `json:"output"`
	State  fakeState `json:"state"`
}

type fakeUplink struct {
	Enabled         bool    `json:"enabled"`
	Connected       bool    `json:"connected"`
	BacklogMessages int     `json:"backlog_messages"`
	BacklogBytes    int     `json:"backlog_bytes"`
	OldestAgeS      float64 `json:"oldest_age_s"`
	LastPuback      string  `json:"last_puback"`
	Dropped         int     `json:"dropped"`
	DeadLetters     int     `json:"dead_letters"`
}

type sseEvent struct {
	name string
	data []byte
}

type fakeAPI struct {
	mu          sync.Mutex
	anonRole    string // "" when an anonymous client gets 401
	users       map[string]fakeUser
	sessions    map[string]string // cookie value -> user
	sensors     []*fakeSensor
	ctl         *fakeController
	uplink      fakeUplink
	subs        map[chan sseEvent]struct{}
	connects    int // event stream connections so far
	patches     []string
	step        int
	stop        chan struct{}
	stopped     sync.WaitGroup
	srv         *httptest.Server
	historyBase time.Time

	// beforeAnswer, when set, runs in a PATCH that succeeded, after its
	// controller event went out and before the answer: a test holds the
	// answer there to send other events first. It must return once stop
	// is closed.
	beforeAnswer func()
}

// newFakeAPI starts the double with the page mounted at / and readings
// ticking every tick; anonRole "" makes it a protected setup.
func newFakeAPI(t *testing.T, anonRole string, tick time.Duration) *fakeAPI {
	t.Helper()
	now := time.Now().UTC()
	ts := func(d time.Duration) string { return now.Add(-d).Format(time.RFC3339Nano) }
	f := &fakeAPI{
		anonRole: anonRole,
		users: map[string]fakeUser{
			"olivia": {"greenhouse-op", "operator"},
			"victor": {"look-only", "viewer"},
		},
		sessions: map[string]string{},
		sensors: []*fakeSensor{
			{ID: "air", Name: "Greenhouse air", Driver: "sim_climate", Status: "online", Samples: 720, Failures: 3,
				Quantities: []*fakeQuantity{
					{Name: "temperature", Unit: "°C", Value: 21.9, Time: ts(0)},
					{Name: "humidity", Unit: "%", Value: 64.2, Time: ts(0)},
				}},
			{ID: "light", Name: "Light", Driver: "sim_light", Status: "online", Samples: 360,
				Quantities: []*fakeQuantity{{Name: "illuminance", Unit: "lx", Value: 18250, Time: ts(0)}}},
			{ID: "soil", Name: "Soil probe", Driver: "sht3x", Status: "offline", Samples: 200, Failures: 41,
				LastError:  "i2c read 0x44: no ACK",
				Quantities: []*fakeQuantity{{Name: "temperature", Unit: "°C", Value: 17.4, Time: ts(7 * time.Minute)}}},
		},
		ctl: &fakeController{ID: "heat", Input: "air/temperature", Output: "heater",
			State: fakeState{Setpoint: 22.5, Output: 0.4, Mode: "auto", Applied: "pid", SetpointMin: 5, SetpointMax: 30}},
		uplink: fakeUplink{Enabled: true, Connected: true, BacklogMessages: 12, BacklogBytes: 3400,
			OldestAgeS: 4.2, LastPuback: ts(time.Second), Dropped: 0, DeadLetters: 1},
		subs:        map[chan sseEvent]struct{}{},
		stop:        make(chan struct{}),
		historyBase: now,
	}
	in := 21.9
	f.ctl.State.Input = &in

	mux := http.NewServeMux()
	mux.Handle("/", Handler())
	mux.HandleFunc("GET /api/v1/me", f.me)
	mux.HandleFunc("POST /api/v1/login", f.login)
	mux.HandleFunc("POST /api/v1/logout", f.logout)
	mux.HandleFunc("GET /api/v1/sensors", f.auth(func(w http.ResponseWriter, r *http.Request, role string) {
		f.mu.Lock()
		defer f.mu.Unlock()
		writeJSON(w, 200, map[string]any{"sensors": f.sensors})
	}))
	mux.HandleFunc("GET /api/v1/sensors/{id}/history", f.auth(f.history))
	mux.HandleFunc("GET /api/v1/controllers", f.auth(func(w http.ResponseWriter, r *http.Request, role string) {
		f.mu.Lock()
		defer f.mu.Unlock()
		writeJSON(w, 200, map[string]any{"controllers": []*fakeController{f.ctl}})
	}))
	mux.HandleFunc("PATCH /api/v1/controllers/{id}", f.auth(f.patch))
	mux.HandleFunc("GET /api/v1/uplink", f.auth(func(w http.ResponseWriter, r *http.Request, role string) {
		f.mu.Lock()
		defer f.mu.Unlock()
		writeJSON(w, 200, f.uplink)
	}))
	mux.HandleFunc("GET /api/v1/events", f.auth(f.events))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) { apiError(w, 404, "no such route") })

	f.srv = httptest.NewServer(mux) // 127.0.0.1 only
	t.Cleanup(f.close)
	f.stopped.Add(1)
	go f.run(tick)
	return f
}

func (f *fakeAPI) close() {
	select {
	case <-f.stop:
		return
	default:
	}
	close(f.stop) // ends the ticker and every event stream
	f.stopped.Wait()
	f.srv.Close()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, code int, msg string) {
	if code == 401 {
		w.Header().Set("WWW-Authenticate", `Cookie realm="edged", cookie-name="edged_session"`)
	}
	writeJSON(w, code, map[string]string{"error": msg})
}

// who returns the caller's user name ("" when anonymous) and role, or
// ok false when the caller must log in.
func (f *fakeAPI) who(r *http.Request) (user, role string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, err := r.Cookie("edged_session"); err == nil {
		if u, found := f.sessions[c.Value]; found {
			return u, f.users[u].role, true
		}
	}
	return "", f.anonRole, f.anonRole != ""
}

func (f *fakeAPI) auth(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, role, ok := f.who(r)
		if !ok {
			apiError(w, 401, "login required")
			return
		}
		h(w, r, role)
	}
}

func (f *fakeAPI) me(w http.ResponseWriter, r *http.Request) {
	user, role, ok := f.who(r)
	if !ok {
		apiError(w, 401, "login required")
		return
	}
	writeJSON(w, 200, map[string]any{"user": user, "role": role, "anonymous": user == "", "can_command": roleRank[role] >= roleRank["operator"]})
}

func (f *fakeAPI) login(w http.ResponseWriter, r *http.Request) {
	var req struct{ User, Password string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		apiError(w, 400, "want JSON {\"user\", \"password\"}")
		return
	}
	f.mu.Lock()
	u, found := f.users[req.User]
	if !found || u.password != req.Password {
		f.mu.Unlock()
		apiError(w, 401, "wrong user or password")
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	f.sessions[tok] = req.User
	f.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "edged_session", Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(204)
}

func (f *fakeAPI) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie("edged_session"); err == nil {
		f.mu.Lock()
		delete(f.sessions, c.Value)
		f.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: "edged_session", Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(204)
}

// wave is the fake signal of a quantity at time t: a slow sine.
func wave(base, amp float64, t time.Time) float64 {
	x := float64(t.UnixMilli()) / 600e3 // one period in about an hour
	return math.Round((base+amp*math.Sin(x*2*math.Pi/6))*100) / 100
}

func (f *fakeAPI) history(w http.ResponseWriter, r *http.Request, role string) {
	id, qn := r.PathValue("id"), r.URL.Query().Get("quantity")
	if since := r.URL.Query().Get("since"); since != "" {
		if _, err := time.ParseDuration(since); err != nil {
			apiError(w, 400, "since: "+err.Error())
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sensors {
		if s.ID != id {
			continue
		}
		for _, q := range s.Quantities {
			if q.Name != qn {
				continue
			}
			base, amp := q.Value, 0.05*math.Max(math.Abs(q.Value), 1)
			var pts []map[string]any
			end := f.historyBase
			if s.Status == "offline" {
				end = end.Add(-7 * time.Minute)
			}
			for i := 60; i >= 1; i-- {
				at := end.Add(-time.Duration(i) * time.Minute)
				pts = append(pts, map[string]any{"t": at.Format(time.RFC3339), "v": wave(base, amp, at)})
			}
			writeJSON(w, 200, map[string]any{"sensor": id, "quantity": qn, "unit": q.Unit, "points": pts})
			return
		}
		apiError(w, 404, fmt.Sprintf("sensor %s has no quantity %q", id, qn))
		return
	}
	apiError(w, 404, "no sensor "+id)
}

func (f *fakeAPI) patch(w http.ResponseWriter, r *http.Request, role string) {
	if roleRank[role] < roleRank["operator"] {
		apiError(w, 403, fmt.Sprintf("role %s may not command controllers (operator or admin may)", role))
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		apiError(w, 415, "want Content-Type application/json")
		return
	}
	if r.PathValue("id") != f.ctl.ID {
		apiError(w, 404, "no controller "+r.PathValue("id"))
		return
	}
	var cmd map[string]json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024)).Decode(&cmd); err != nil || len(cmd) == 0 {
		apiError(w, 400, "want a JSON object such as {\"setpoint\": 21.5}")
		return
	}
	f.mu.Lock()
	st := f.ctl.State
	for k, raw := range cmd {
		switch k {
		case "setpoint":
			var v float64
			if json.Unmarshal(raw, &v) != nil {
				f.mu.Unlock()
				apiError(w, 400, "setpoint: want a number")
				return
			}
			if v < st.SetpointMin || v > st.SetpointMax {
				f.mu.Unlock()
				apiError(w, 400, fmt.Sprintf("setpoint %v is out of range (%v..%v)", v, st.SetpointMin, st.SetpointMax))
				return
			}
			st.Setpoint = v
		case "mode":
			var m string
			_ = json.Unmarshal(raw, &m)
			if m != "auto" && m != "manual" && m != "off" {
				f.mu.Unlock()
				apiError(w, 400, fmt.Sprintf("mode %s: want \"auto\", \"manual\" or \"off\"", raw))
				return
			}
			st.Mode = m
			st.Applied = map[string]string{"auto": "pid", "manual": "manual", "off": "safe"}[m]
			if m == "off" {
				st.Output = 0
			}
		case "output":
			var v float64
			if json.Unmarshal(raw, &v) != nil || v < 0 || v > 1 {
				f.mu.Unlock()
				apiError(w, 400, "output: want a number in 0..1")
				return
			}
			st.Output = v
		default:
			f.mu.Unlock()
			apiError(w, 400, fmt.Sprintf("unknown field %q", k))
			return
		}
	}
	if _, ok := cmd["output"]; ok && st.Mode != "manual" {
		f.mu.Unlock()
		apiError(w, 409, "output is set in manual mode only")
		return
	}
	f.ctl.State = st
	body, _ := json.Marshal(cmd)
	f.patches = append(f.patches, string(body))
	ev, _ := json.Marshal(map[string]any{"id": f.ctl.ID, "state": st})
	f.broadcastLocked("controller", ev)
	hold := f.beforeAnswer
	f.mu.Unlock()
	if hold != nil {
		hold()
	}
	writeJSON(w, 200, map[string]any{"state": st})
}

// events is the SSE stream: a retry hint, then events as they come and a
// heartbeat comment every second.
func (f *fakeAPI) events(w http.ResponseWriter, r *http.Request, role string) {
	ch := make(chan sseEvent, 64)
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	f.connects++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	fmt.Fprint(w, "retry: 300\n\n")
	_ = rc.Flush()
	hb := time.NewTicker(time.Second)
	defer hb.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-r.Context().Done():
			return
		case <-hb.C:
			fmt.Fprint(w, ": heartbeat\n\n")
		case ev, open := <-ch:
			if !open {
				return // dropped by dropStreams
			}
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.name, ev.data)
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// setpointFromElsewhere changes the controller's setpoint as another
// user or an MQTT command would, and sends its event.
func (f *fakeAPI) setpointFromElsewhere(sp float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ctl.State.Setpoint = sp
	ev, _ := json.Marshal(map[string]any{"id": f.ctl.ID, "state": f.ctl.State})
	f.broadcastLocked("controller", ev)
}

// broadcastLocked sends an event to every stream; one that is too far
// behind is dropped (its client reconnects and reloads).
func (f *fakeAPI) broadcastLocked(name string, data []byte) {
	for ch := range f.subs {
		select {
		case ch <- sseEvent{name, data}:
		default:
			delete(f.subs, ch)
			close(ch)
		}
	}
}

// dropStreams ends every open event stream, as a restart of edged or a
// broken Wi-Fi link would.
func (f *fakeAPI) dropStreams() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		delete(f.subs, ch)
		close(ch)
	}
}

func (f *fakeAPI) streams() (open, connects int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs), f.connects
}

func (f *fakeAPI) state() fakeState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctl.State
}

// run moves the online sensors' values every tick and sends them as
// reading events, with the controller's input following the air.
func (f *fakeAPI) run(tick time.Duration) {
	defer f.stopped.Done()
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-tk.C:
		}
		f.mu.Lock()
		f.step++
		now := time.Now().UTC()
		for _, s := range f.sensors {
			if s.Status != "online" {
				continue
			}
			s.Samples++
			for _, q := range s.Quantities {
				d := 0.1
				if q.Unit == "lx" {
					d = 25
				}
				if f.step%10 < 5 {
					q.Value += d
				} else {
					q.Value -= d
				}
				q.Value = math.Round(q.Value*100) / 100
				q.Time = now.Format(time.RFC3339Nano)
				ev, _ := json.Marshal(map[string]any{"sensor": s.ID, "quantity": q.Name, "value": q.Value, "unit": q.Unit, "time": q.Time})
				f.broadcastLocked("reading", ev)
				if s.ID == "air" && q.Name == "temperature" {
					v := q.Value
					f.ctl.State.Input = &v
				}
			}
		}
		if f.step%5 == 0 {
			f.uplink.BacklogMessages = 10 + f.step%7
			f.uplink.LastPuback = now.Format(time.RFC3339)
			ev, _ := json.Marshal(f.uplink)
			f.broadcastLocked("uplink", ev)
		}
		f.mu.Unlock()
	}
}
