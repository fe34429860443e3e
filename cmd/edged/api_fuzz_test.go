package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/edged/edged/cmd/edged/web"
	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/pipeline/control"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/topics"
)

// levelOut is an actuator that keeps its level.
type levelOut struct {
	mu    sync.Mutex
	level float64
}

func (o *levelOut) String() string { return "test-output" }
func (o *levelOut) Set(l float64) error {
	o.mu.Lock()
	o.level = l
	o.mu.Unlock()
	return nil
}
func (o *levelOut) Level() float64 { o.mu.Lock(); defer o.mu.Unlock(); return o.level }
func (o *levelOut) Safe() error    { return o.Set(0) }
func (o *levelOut) Halt() error    { return o.Safe() }

var _ sensors.Actuator = (*levelOut)(nil)

// apiWithLoop is the API over one real control loop and inbox, wired by
// the daemon's own adapter, served in-process.
func apiWithLoop(t testing.TB) http.Handler {
	o := control.DefaultOpts()
	o.ID, o.Input, o.Output, o.Setpoint = "heat", "air/temperature", "heater", 20
	lo, hi := 5.0, 30.0
	o.SetpointMin, o.SetpointMax = &lo, &hi
	o.PID = control.Gains{Kp: 0.4, Ki: 0.002}
	l, err := control.New(o, &levelOut{}, nil, nil, "edged/t", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{ctlOpts: []control.Opts{o}}
	d.control = &controlRoom{d: d, loops: map[string]*runningLoop{"heat": {l: l}}}
	d.control.inbox = control.NewInbox(d.control.loopMap(), nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.control.inbox.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	bo := localbroker.DefaultOpts()
	bo.MQTT, bo.WebSocket, bo.AnonymousRole = "127.0.0.1:0", "", localbroker.RoleOperator
	b, err := localbroker.New(bo, "edged/fuzz", nil) // not started: its access rules only
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	s, err := web.New(web.Deps{
		Auth:        brokerAuth{b: b, tree: topics.New("edged/fuzz")},
		Stats:       noStats{},
		Controllers: controllers{d},
	}, web.DefaultOpts(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s.Handler()
}

type noStats struct{}

func (noStats) SensorStats() []web.SensorStat { return nil }

// FuzzRESTCommand sends arbitrary bodies to PATCH
// /api/v1/controllers/heat, through the REST path into the control
// package's command decoder: the answer is always JSON with a status the
// API documents, never a 500, and a 200 carries the state.
func FuzzRESTCommand(f *testing.F) {
	for _, s := range []string{
		`{"setpoint":21}`, `{"setpoint":99}`, `{"mode":"manual","output":0.3}`, `{"output":0.5}`,
		`{"gains":{"kp":0.5,"ki":0.002,"kd":0}}`, `{"reset":"integral"}`, `{"autotune":{"output_high":1}}`,
		`{"setpoint":`, `null`, `[]`, `{}`, `{"setpoint":1e400}`, `{"mode":null}`, "\xff", `{"a":1} {"b":2}`,
	} {
		f.Add(s)
	}
	h := apiWithLoop(f)
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("PATCH", "/api/v1/controllers/heat", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var out struct {
			Error string
			State *control.State
		}
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("%q: answer %q is not JSON: %v", body, w.Body.Bytes(), err)
		}
		switch w.Code {
		case http.StatusOK:
			if out.State == nil || out.State.Setpoint < 5 || out.State.Setpoint > 30 {
				t.Fatalf("%q: 200 with %s", body, w.Body.Bytes())
			}
		case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge, http.StatusConflict:
			if out.Error == "" {
				t.Fatalf("%q: %d without an error: %s", body, w.Code, w.Body.Bytes())
			}
			if w.Code == http.StatusBadRequest && json.Valid([]byte(body)) {
				t.Fatalf("%q: 400 for valid JSON", body)
			}
		default:
			t.Fatalf("%q: status %d: %s", body, w.Code, w.Body.Bytes())
		}
	})
}
