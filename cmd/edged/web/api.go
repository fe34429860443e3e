package web

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"sort"
	"strings"
	"time"
)

// maxBody bounds a request body (a command is tens of bytes).
const maxBody = 64 << 10

// commandTimeout bounds the wait for a command's reply: the inbox
// applies commands in order, each within milliseconds.
const commandTimeout = 10 * time.Second

// route is one API route; routes is the table the mux is built from and
// the OpenAPI document is checked against.
type route struct {
	method, path string
	handler      http.Handler
}

//go:embed openapi.json
var openapiJSON []byte

func (s *Server) routes() []route {
	open := func(h http.HandlerFunc) http.Handler { return h }
	return []route{
		{"GET", "/healthz", open(s.healthz)},
		{"GET", "/readyz", open(s.readyz)},
		{"GET", "/metrics", s.auth(RoleViewer, s.metrics)},
		{"GET", "/api/v1/openapi.json", open(s.openapi)},
		{"POST", "/api/v1/login", open(s.login)},
		{"POST", "/api/v1/logout", open(s.logout)},
		{"GET", "/api/v1/me", s.auth(RoleViewer, s.me)},
		{"GET", "/api/v1/sensors", s.auth(RoleViewer, s.sensorList)},
		{"GET", "/api/v1/sensors/{id}", s.auth(RoleViewer, s.sensor)},
		{"GET", "/api/v1/sensors/{id}/history", s.auth(RoleViewer, s.sensorHistory)},
		{"GET", "/api/v1/controllers", s.auth(RoleViewer, s.controllerList)},
		{"GET", "/api/v1/controllers/{id}", s.auth(RoleViewer, s.controller)},
		{"PATCH", "/api/v1/controllers/{id}", s.auth(RoleOperator, s.command)},
		{"GET", "/api/v1/actuators", s.auth(RoleViewer, s.actuators)},
		{"GET", "/api/v1/uplink", s.auth(RoleViewer, s.uplink)},
		{"GET", "/api/v1/events", s.auth(RoleViewer, s.events)},
	}
}

// methodNotAllowed answers a known path with a method it does not serve.
func (s *Server) methodNotAllowed(path string) http.Handler {
	var allow []string
	for _, r := range s.routes() {
		if r.path == path {
			allow = append(allow, r.method)
			if r.method == "GET" {
				allow = append(allow, "HEAD")
			}
		}
	}
	sort.Strings(allow)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+path+" (allowed: "+strings.Join(allow, ", ")+")")
	})
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(openapiJSON)
}

// healthz is the liveness probe load balancers and scripts use: 200
// while every main loop comes round, 503 naming the stuck ones. It needs
// no credentials. Without any (or with wrong ones) while anonymous
// access is off, it says only ok or fail: sensor ids, errors and
// counters are for users.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	var problems []string
	if s.deps.Probes != nil {
		problems = s.deps.Probes.Live()
	}
	code, status := probeStatus(problems)
	if _, _, err := s.authenticate(r); err != nil {
		writeJSON(w, code, probe{Status: status})
		return
	}
	type sensorHealth struct {
		Status    string    `json:"status"`
		Samples   uint64    `json:"samples"`
		Failures  uint64    `json:"failures"`
		LastError string    `json:"last_error,omitempty"`
		Last      time.Time `json:"last_sample,omitzero"`
	}
	out := struct {
		Status   string                  `json:"status"`
		Problems []string                `json:"problems,omitempty"`
		Sensors  map[string]sensorHealth `json:"sensors"`
		Broker   any                     `json:"broker,omitempty"`
	}{Status: status, Problems: problems, Sensors: map[string]sensorHealth{}}
	if s.deps.Health != nil {
		out.Broker = s.deps.Health.Health()
	}
	for _, st := range s.deps.Stats.SensorStats() {
		out.Sensors[st.ID] = sensorHealth{st.Status, st.Samples, st.Failures, st.LastError, st.LastSample}
	}
	writeJSON(w, code, out)
}

// probe is the body of /readyz, and of /healthz for strangers.
type probe struct {
	Status   string   `json:"status"`
	Problems []string `json:"problems,omitempty"`
	// Notes inform without failing (Noter).
	Notes []string `json:"notes,omitempty"`
	// Reload is the outcome of the last config reload, for users; absent
	// before the first.
	Reload any `json:"reload,omitempty"`
}

// reloader is a Probes that also knows how the last config reload went
// (optional).
type reloader interface {
	// LastReload returns the last reload's outcome as JSON-able data,
	// nil before the first.
	LastReload() any
}

func probeStatus(problems []string) (int, string) {
	if len(problems) > 0 {
		return http.StatusServiceUnavailable, "fail"
	}
	return http.StatusOK, "ok"
}

// readyz is the readiness probe (a deploy waits for it): 200 when
// started, every sensor sampled once and the uplink backlog young
// enough; 503 with what is not. Strangers get the status only, as for
// healthz.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	var problems []string
	if s.deps.Probes != nil {
		problems = s.deps.Probes.Ready()
	}
	code, status := probeStatus(problems)
	out := probe{Status: status, Problems: problems}
	if n, ok := s.deps.Probes.(Noter); ok {
		out.Notes = n.Notes()
	}
	if _, _, err := s.authenticate(r); err != nil {
		out.Problems, out.Notes = nil, nil
	} else if rl, ok := s.deps.Probes.(reloader); ok {
		out.Reload = rl.LastReload()
	}
	writeJSON(w, code, out)
}

// metrics serves Prometheus under the API's authentication: open when
// anonymous access is, else Basic or a bearer token (what Prometheus'
// basic_auth and authorization settings send).
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if s.deps.Metrics == nil {
		writeError(w, http.StatusNotFound, "metrics are not enabled")
		return
	}
	s.deps.Metrics.ServeHTTP(w, r)
}

// readJSON reads a JSON request body: application/json, at most
// maxBody, valid JSON. It answers the error itself and returns false.
func readJSON(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, ok := readBody(w, r)
	if ok && !json.Valid(body) {
		writeError(w, http.StatusBadRequest, "the body is not valid JSON")
		return nil, false
	}
	return body, ok
}

// readBody is readJSON without the JSON check.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "the body is larger than 64 KiB")
		} else {
			writeError(w, http.StatusBadRequest, "reading the body: "+err.Error())
		}
		return nil, false
	}
	return body, true
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !s.originAllowed(r) {
		writeError(w, http.StatusForbidden, "origin "+r.Header.Get("Origin")+" may not log in here")
		return
	}
	body, ok := readJSON(w, r)
	if !ok {
		return
	}
	var req struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.User == "" {
		writeError(w, http.StatusBadRequest, `want {"user": "...", "password": "..."}`)
		return
	}
	id, err := s.deps.Auth.Basic(r.Context(), req.User, req.Password, remoteAddr(r))
	if err != nil {
		unauthorized(w, err)
		return
	}
	tok, err := s.sessions.create(id)
	if errors.Is(err, errSessionsFull) {
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot create a session: "+err.Error())
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookieName(r), Value: tok, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(s.opts.SessionTTL / time.Second),
	})
	s.log.Info("logged in", "user", id.Name, "role", id.Role, "remote", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if !s.originAllowed(r) {
		writeError(w, http.StatusForbidden, "origin "+r.Header.Get("Origin")+" may not log out here")
		return
	}
	if c, err := r.Cookie(sessionCookieName(r)); err == nil {
		s.sessions.remove(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookieName(r), Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	a := identityOf(r)
	writeJSON(w, http.StatusOK, struct {
		User       string `json:"user"`
		Role       string `json:"role"`
		Anonymous  bool   `json:"anonymous"`
		CanCommand bool   `json:"can_command"`
	}{a.id.Name, a.id.Role, a.anonymous, rank(a.id.Role) >= rank(RoleOperator)})
}

type sensorJSON struct {
	ID         string         `json:"id"`
	Name       string         `json:"name"`
	Driver     string         `json:"driver"`
	Status     string         `json:"status"`
	Samples    uint64         `json:"samples"`
	Failures   uint64         `json:"failures"`
	LastError  string         `json:"last_error"`
	Quantities []quantityJSON `json:"quantities"`
}

type quantityJSON struct {
	Name  string   `json:"name"`
	Unit  string   `json:"unit"`
	Value *float64 `json:"value"` // null until the first reading
	Time  *string  `json:"time"`
}

func (s *Server) sensorsJSON() []sensorJSON {
	stats := map[string]SensorStat{}
	for _, st := range s.deps.Stats.SensorStats() {
		stats[st.ID] = st
	}
	list := *s.sensors.Load()
	out := make([]sensorJSON, 0, len(list))
	for _, si := range list {
		st, ok := stats[si.ID]
		if !ok {
			st.Status = "unknown"
		}
		j := sensorJSON{ID: si.ID, Name: si.Name, Driver: si.Driver, Status: st.Status, Samples: st.Samples,
			Failures: st.Failures, LastError: st.LastError, Quantities: make([]quantityJSON, 0, len(si.Quantities))}
		for _, q := range si.Quantities {
			qj := quantityJSON{Name: q.Name, Unit: q.Unit}
			if p, ok := s.hist.latest(si.ID, q.Name); ok {
				v, t := p.v, time.UnixMilli(p.t).UTC().Format(timeLayout)
				qj.Value, qj.Time = &v, &t
			}
			j.Quantities = append(j.Quantities, qj)
		}
		out = append(out, j)
	}
	return out
}

func (s *Server) sensorList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"sensors": s.sensorsJSON()})
}

func (s *Server) sensorInfo(id string) (SensorInfo, bool) {
	for _, si := range *s.sensors.Load() {
		if si.ID == id {
			return si, true
		}
	}
	return SensorInfo{}, false
}

func (s *Server) sensor(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	for _, j := range s.sensorsJSON() {
		if j.ID == id {
			writeJSON(w, http.StatusOK, j)
			return
		}
	}
	writeError(w, http.StatusNotFound, "no sensor "+quote(id))
}

// defaultSince is the history route's window without ?since.
const defaultSince = time.Hour

func (s *Server) sensorHistory(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	si, ok := s.sensorInfo(id)
	if !ok {
		writeError(w, http.StatusNotFound, "no sensor "+quote(id))
		return
	}
	qname := r.URL.Query().Get("quantity")
	if qname == "" && len(si.Quantities) == 1 {
		qname = si.Quantities[0].Name
	}
	if qname == "" {
		writeError(w, http.StatusBadRequest, "sensor "+quote(id)+" measures more than one quantity: give ?quantity=")
		return
	}
	var q *Quantity
	for i := range si.Quantities {
		if si.Quantities[i].Name == qname {
			q = &si.Quantities[i]
		}
	}
	if q == nil {
		writeError(w, http.StatusNotFound, "sensor "+quote(id)+" does not measure "+quote(qname))
		return
	}
	since := time.Now().Add(-defaultSince)
	if v := r.URL.Query().Get("since"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, v); err == nil {
			since = t
		} else {
			writeError(w, http.StatusBadRequest, "since "+quote(v)+": want a duration back (10m) or an RFC 3339 time")
			return
		}
	}
	type pt struct {
		T string  `json:"t"`
		V float64 `json:"v"`
	}
	pts := s.hist.since(id, qname, since)
	out := struct {
		Sensor   string `json:"sensor"`
		Quantity string `json:"quantity"`
		Unit     string `json:"unit"`
		Points   []pt   `json:"points"`
	}{id, qname, q.Unit, make([]pt, 0, len(pts))}
	for _, p := range pts {
		out.Points = append(out.Points, pt{time.UnixMilli(p.t).UTC().Format(timeLayout), p.v})
	}
	writeJSON(w, http.StatusOK, out)
}

type controllerJSON struct {
	ID     string          `json:"id"`
	Input  string          `json:"input"`
	Output string          `json:"output"`
	State  json.RawMessage `json:"state"`
}

func (s *Server) controllersJSON() []controllerJSON {
	out := []controllerJSON{}
	if s.deps.Controllers == nil {
		return out
	}
	for _, c := range s.deps.Controllers.Controllers() {
		st, ok := s.deps.Controllers.State(c.ID)
		if !ok {
			st = json.RawMessage("null")
		}
		out = append(out, controllerJSON{c.ID, c.Input, c.Output, st})
	}
	return out
}

func (s *Server) controllerList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"controllers": s.controllersJSON()})
}

func (s *Server) controller(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	for _, c := range s.controllersJSON() {
		if c.ID == id {
			writeJSON(w, http.StatusOK, c)
			return
		}
	}
	writeError(w, http.StatusNotFound, "no controller "+quote(id))
}

// command serves PATCH /api/v1/controllers/{id}: the body is the MQTT
// command, applied through the same inbox and checks.
func (s *Server) command(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.knownController(id) {
		writeError(w, http.StatusNotFound, "no controller "+quote(id))
		return
	}
	// Even a body that is not JSON goes to the controller's checks, so
	// the error says what an MQTT sender's reply says.
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	a := identityOf(r)
	if !s.deps.Auth.MayCommand(a.id, a.anonymous, id) {
		writeError(w, http.StatusForbidden, "user "+quote(a.id.Name)+" may not command controller "+quote(id)+" (its publish rules do not cover it)")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), commandTimeout)
	defer cancel()
	who := "http:" + a.id.Name
	if a.anonymous {
		who = "http:anonymous@" + r.RemoteAddr
	}
	st, err := s.deps.Controllers.Command(ctx, id, body, who)
	if err != nil {
		status := commandStatus(err)
		if status == http.StatusUnprocessableEntity && !json.Valid(body) {
			status = http.StatusBadRequest
		}
		writeError(w, status, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, struct {
		State json.RawMessage `json:"state"`
	}{st})
}

// commandStatus maps a Controllers.Command error to a status.
func commandStatus(err error) int {
	switch {
	case errors.Is(err, ErrRefused):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrUnknown):
		return http.StatusNotFound
	case errors.Is(err, ErrSuperseded):
		return http.StatusConflict
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (s *Server) knownController(id string) bool {
	if s.deps.Controllers == nil {
		return false
	}
	for _, c := range s.deps.Controllers.Controllers() {
		if c.ID == id {
			return true
		}
	}
	return false
}

func (s *Server) actuators(w http.ResponseWriter, r *http.Request) {
	type actuatorJSON struct {
		ID        string  `json:"id"`
		Driver    string  `json:"driver"`
		Level     float64 `json:"level"`
		SafeState string  `json:"safe_state"`
	}
	out := []actuatorJSON{}
	if s.deps.Actuators != nil {
		for _, a := range s.deps.Actuators.Actuators() {
			out = append(out, actuatorJSON(a))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"actuators": out})
}

type uplinkJSON struct {
	Enabled      bool    `json:"enabled"`
	Connected    bool    `json:"connected"`
	Backlog      uint64  `json:"backlog_messages"`
	BacklogBytes int64   `json:"backlog_bytes"`
	OldestAgeSec float64 `json:"oldest_age_s"`
	LastPuback   *string `json:"last_puback"`
	Dropped      uint64  `json:"dropped"`
	DeadLetters  uint64  `json:"dead_letters"`
}

func (s *Server) uplinkJSON() uplinkJSON {
	if s.deps.Uplink == nil {
		return uplinkJSON{}
	}
	st := s.deps.Uplink.UplinkStats()
	j := uplinkJSON{true, st.Connected, st.Backlog, st.BacklogBytes, st.OldestAgeSec, nil, st.Dropped, st.DeadLetters}
	if !st.LastPuback.IsZero() {
		t := st.LastPuback.UTC().Format(timeLayout)
		j.LastPuback = &t
	}
	return j
}

func (s *Server) uplink(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.uplinkJSON())
}

// quote quotes a client-supplied string for a message.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
