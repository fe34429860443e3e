// Package web is edged's LAN HTTP surface: the server and its limits,
// the Host check, /healthz, the REST API under /api/v1 with its
// authentication and sessions, and the server-sent event stream.
//
// It owns the API's JSON shapes and statuses (the contract the dashboard
// and LAN apps build on) and nothing else: it sees the daemon's rooms
// (sensors, controllers, actuators, uplink) only through the small
// interfaces below, which cmd/edged adapts, and it imports no edged
// package. It must not apply anything itself: a controller command goes
// to the same inbox and checks as one from MQTT. The path "/" is left to
// whoever calls Handle (the dashboard).
package web

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Roles, weakest first; the names are localbroker's.
const (
	RoleViewer    = "viewer"
	RolePublisher = "publisher"
	RoleOperator  = "operator"
	RoleAdmin     = "admin"
)

// rank orders roles; an unknown role ranks below viewer and may do
// nothing.
func rank(role string) int {
	switch role {
	case RoleViewer:
		return 1
	case RolePublisher:
		return 2
	case RoleOperator:
		return 3
	case RoleAdmin:
		return 4
	}
	return 0
}

// SensorInfo is what the config says about a sensor.
type SensorInfo struct {
	ID, Name, Driver string
	Quantities       []Quantity // what it measures, in its order
}

// Quantity is a measured quantity's name and unit, e.g. temperature, °C.
type Quantity struct{ Name, Unit string }

// SensorStat is one sensor's health as the Poller sees it.
type SensorStat struct {
	ID                string
	Status            string // online, offline or unknown
	Samples, Failures uint64
	LastError         string
	LastSample        time.Time // zero: none yet
}

// SensorStats reports every sensor's health (sensors.Poller, adapted).
type SensorStats interface {
	SensorStats() []SensorStat
}

// ControllerInfo names a controller's input and output.
type ControllerInfo struct {
	ID     string
	Input  string // <sensor>/<quantity>
	Output string // actuator id
}

// Controllers is the control loops: their state, and a command path
// that must be the one MQTT commands take (control.Inbox).
type Controllers interface {
	Controllers() []ControllerInfo
	// State is the controller's state JSON as it publishes it; false
	// for an unknown id.
	State(id string) (json.RawMessage, bool)
	// Command applies a JSON command and returns the state after it. Its
	// errors wrap ErrUnknown, ErrRefused (the command is bad or out of
	// bounds: nothing changed), ErrSuperseded or ErrUnavailable.
	Command(ctx context.Context, id string, body []byte, client string) (json.RawMessage, error)
}

// Errors a Controllers implementation wraps, mapped to statuses.
var (
	ErrUnknown     = errors.New("web: no such controller")                          // 404
	ErrRefused     = errors.New("web: command refused")                             // 422 (400 for a body that is not JSON)
	ErrSuperseded  = errors.New("web: superseded by a newer command")               // 409
	ErrUnavailable = errors.New("web: not taking commands now (edged is stopping)") // 503
	ErrNoSuchUser  = errors.New("web: no such user, or a wrong password or token")  // 401
	// ErrTooManyFailures is what an Authenticator wraps when it refused
	// to check credentials from an address that failed too often: 429.
	ErrTooManyFailures = errors.New("web: too many failed logins from this address; wait a minute") // 429
	// ErrBusy is what an Authenticator wraps when no password check
	// could run in time: 503 with Retry-After.
	ErrBusy    = errors.New("web: too many logins being checked; try again shortly") // 503
	errTooMany = errors.New("web: too many event streams; try again later")          // 503
	errClosed  = errors.New("web: the server is stopping")                           // 503
)

// Actuator is one output's level now.
type Actuator struct {
	ID, Driver string
	Level      float64
	SafeState  string // off or on
}

// Actuators reports the outputs.
type Actuators interface {
	Actuators() []Actuator
}

// UplinkStats is the uplink's delivery health, in the API's terms.
type UplinkStats struct {
	Connected    bool
	Backlog      uint64
	BacklogBytes int64
	OldestAgeSec float64
	LastPuback   time.Time // zero: none since start
	Dropped      uint64    // every reason together
	DeadLetters  uint64
}

// Uplink reports the uplink's health.
type Uplink interface {
	UplinkStats() UplinkStats
}

// Health is what /healthz adds besides the sensors (the broker's
// stats).
type Health interface {
	Health() any
}

// Probes say what is wrong with edged, one line per problem (naming the
// loop, sensor or backlog); none means all is well.
type Probes interface {
	// Live is for /healthz: the main loops come round.
	Live() []string
	// Ready is for /readyz: started, sensors sampled, backlog young
	// enough (and alive).
	Ready() []string
}

// Noter is an optional capability of Probes: lines /readyz shows as
// "notes" without failing (the clock not trusted yet).
type Noter interface {
	Notes() []string
}

// Deps are the rooms the API serves. Auth and Stats are required; a nil
// Controllers, Actuators or Uplink serves an empty list or "disabled".
type Deps struct {
	Auth        Authenticator
	Sensors     []SensorInfo
	Stats       SensorStats
	Controllers Controllers
	Actuators   Actuators
	Uplink      Uplink
	Health      Health
	// Probes makes /healthz and /readyz answer 503 with the problems;
	// nil: always ok.
	Probes Probes
	// Metrics serves /metrics (Prometheus) to viewers and above; nil
	// answers 404.
	Metrics http.Handler
}

// Opts configures the server.
type Opts struct {
	Limits Limits
	// CORSOrigins are the browser origins (scheme://host[:port]) besides
	// the gateway's own that may call the API, with credentials, and
	// send state-changing requests. None by default.
	CORSOrigins []string
	// HistoryPoints bounds each quantity's history ring.
	HistoryPoints int
	// EventRing bounds the events kept for Last-Event-ID.
	EventRing int
	// ClientBuffer bounds the events waiting for one SSE client; a
	// client that lets it fill is dropped.
	ClientBuffer int
	// MaxStreams bounds concurrent SSE clients.
	MaxStreams int
	// Heartbeat is the SSE comment interval that keeps proxies and
	// dead-peer detection going.
	Heartbeat time.Duration
	// EventWrite bounds writing one event to an SSE client.
	EventWrite time.Duration
	// UplinkEvery is how often the uplink's health is checked for an
	// `uplink` event.
	UplinkEvery time.Duration
	// SessionTTL and MaxSessions bound browser sessions.
	SessionTTL  time.Duration
	MaxSessions int
}

// DefaultOpts are edged's defaults. 720 points per quantity is an hour
// at a 5 s interval, 720 × 16 bytes = 11.25 KiB per quantity.
func DefaultOpts() Opts {
	return Opts{
		Limits:        DefaultLimits,
		HistoryPoints: 720,
		EventRing:     1024,
		ClientBuffer:  256,
		MaxStreams:    32,
		Heartbeat:     15 * time.Second,
		EventWrite:    10 * time.Second,
		UplinkEvery:   5 * time.Second,
		SessionTTL:    12 * time.Hour,
		MaxSessions:   64,
	}
}

// Validate checks that every bound is set.
func (o *Opts) Validate() error {
	if o.HistoryPoints < 1 || o.EventRing < 1 || o.ClientBuffer < 1 || o.MaxStreams < 1 || o.MaxSessions < 1 ||
		o.Heartbeat <= 0 || o.EventWrite <= 0 || o.UplinkEvery <= 0 || o.SessionTTL <= 0 {
		return errors.New("web: every bound in Opts must be positive (start from DefaultOpts)")
	}
	return nil
}

// Server is the HTTP surface. Build it with New, feed it events
// (Reading, Availability, ControllerState), run Run for the uplink
// events, and serve HTTPServer on a listener.
type Server struct {
	deps Deps
	opts Opts
	log  *slog.Logger
	mux  *http.ServeMux
	cors map[string]struct{}
	// hosts are the names and addresses the Host header and a page's
	// origin may carry; set by HTTPServer before serving.
	hosts map[string]struct{}

	hist     *history
	hub      *hub
	sessions *sessions
	// sensors is Deps.Sensors until SetSensors replaces it.
	sensors atomic.Pointer[[]SensorInfo]

	mu        sync.Mutex
	stopOnce  sync.Once
	uplinkOld []byte // the last uplink event's data
}

// New returns a server for deps. A nil log discards.
func New(deps Deps, opts Opts, log *slog.Logger) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if deps.Auth == nil || deps.Stats == nil {
		return nil, errors.New("web: Deps.Auth and Deps.Stats are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		deps:     deps,
		opts:     opts,
		log:      log.With("component", "http"),
		mux:      http.NewServeMux(),
		cors:     map[string]struct{}{},
		hist:     newHistory(opts.HistoryPoints),
		hub:      newHub(opts.EventRing, opts.ClientBuffer, opts.MaxStreams),
		sessions: newSessions(opts.SessionTTL, opts.MaxSessions, time.Now),
	}
	s.sensors.Store(&deps.Sensors)
	for _, o := range opts.CORSOrigins {
		s.cors[strings.ToLower(strings.TrimSuffix(o, "/"))] = struct{}{}
	}
	for _, r := range s.routes() {
		s.mux.Handle(r.method+" "+r.path, r.handler)
	}
	// Every API path answers other methods with a JSON 405.
	seen := map[string]bool{}
	for _, r := range s.routes() {
		if !seen[r.path] {
			seen[r.path] = true
			s.mux.Handle(r.path, s.methodNotAllowed(r.path))
		}
	}
	return s, nil
}

// SetSensors replaces the sensors the API lists (a live reload). The
// history of a sensor still listed is kept.
func (s *Server) SetSensors(list []SensorInfo) {
	list = slices.Clone(list)
	s.sensors.Store(&list)
}

// Handle mounts h at pattern (e.g. "/" for the dashboard) before the
// server is served. API paths take precedence, as they are more
// specific.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Handler is the whole surface behind the CORS rules, without the Host
// check (HTTPServer adds it).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.corsHeaders(w, r) {
			return // a preflight, answered
		}
		if _, pattern := s.mux.Handler(r); pattern == "" {
			writeError(w, http.StatusNotFound, "no such path: "+r.URL.Path)
			return
		}
		s.mux.ServeHTTP(w, r) // sets the path values
	})
}

// HTTPServer returns the server to serve on a listener (plain or TLS):
// Handler behind the Host check, bounded by opts.Limits. hosts are the
// names and addresses the Host header may carry, and pages served from
// them may change things (localbroker.OwnHosts of the listener). Call it
// once, before serving. Shutting the server down ends the event streams.
func (s *Server) HTTPServer(hosts map[string]struct{}) *http.Server {
	s.hosts = hosts
	srv := newHTTPServer(s.Handler(), hosts, s.opts.Limits)
	srv.RegisterOnShutdown(s.Close)
	return srv
}

// Close ends every event stream and refuses new ones. It is safe to
// call more than once.
func (s *Server) Close() { s.stopOnce.Do(s.hub.close) }

// Run checks the uplink's health every UplinkEvery and sends an `uplink`
// event when it changed, until ctx is done; then it closes the event
// streams.
func (s *Server) Run(ctx context.Context) {
	defer s.Close()
	t := time.NewTicker(s.opts.UplinkEvery)
	defer t.Stop()
	for {
		s.pollUplink()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) pollUplink() {
	data, _ := json.Marshal(s.uplinkJSON())
	s.mu.Lock()
	changed := string(data) != string(s.uplinkOld)
	s.uplinkOld = data
	s.mu.Unlock()
	if changed {
		s.hub.publish("uplink", data)
	}
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// apiError is every error's body.
type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, apiError{msg})
}

// EndSessions ends every browser session and the event streams opened
// with one: after a reload changes the users, a session keeps the
// identity of its login, which may have been removed or demoted. Browsers
// log in again.
func (s *Server) EndSessions() { s.sessions.clear() }
