package metrics

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/pipeline/control"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/liveness"
	"github.com/edged/edged/sensors/sensorstest"
	"github.com/edged/edged/sensors/wallclock"
	"github.com/edged/edged/uplink"
)

// sources returns Sources that serve the snapshots the pointers hold.
func sources(bs *localbroker.Stats, us *uplink.Stats, ss *[]sensors.SensorStats, r *Readings) Sources {
	in := 21.5
	return Sources{
		Version:      "test",
		Sensors:      func() []sensors.SensorStats { return *ss },
		Readings:     r,
		Broker:       func() localbroker.Stats { return *bs },
		Uplink:       func() uplink.Stats { return *us },
		QueueDropped: func() uint64 { return 3 },
		Controllers:  controllers(control.State{Setpoint: 22.5, Input: &in, Output: 0.4, Fault: "input stale"}),
		Beats:        func() []*liveness.Beat { return []*liveness.Beat{liveness.New("control/heat")} },
		Reloads: func() Reloads {
			return Reloads{Applied: 2, Refused: 1, LastSuccess: time.Unix(1700000002, 0), RestartNeeded: true}
		},
		Clock:       trustedClock(),
		HTTPRefused: func() localbroker.AcceptRefusals { return localbroker.AcceptRefusals{PerAddress: 4, PerMinute: 6} },
	}
}

// trustedClock is a wall clock judge that trusts its clock.
func trustedClock() *wallclock.Clock {
	wc, err := wallclock.New(sensorstest.NewClock(time.Unix(1700000000, 0)), nil, wallclock.Opts{}, nil)
	if err != nil {
		panic(err)
	}
	wc.Check()
	return wc
}

// TestClockMetrics: edged_clock_synced follows the judge, and a step is
// counted.
func TestClockMetrics(t *testing.T) {
	clk := sensorstest.NewClock(time.Unix(0, 0))
	synced := false
	wc, err := wallclock.New(clk, wallclock.KernelFunc(func() (bool, error) { return synced, nil }), wallclock.Opts{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wc.Check()
	h := Handler(Sources{Sensors: func() []sensors.SensorStats { return nil }, Broker: func() localbroker.Stats { return localbroker.Stats{} }, Clock: wc})
	fams, _ := scrape(t, h)
	if v, ok := value(fams, "edged_clock_synced", nil); !ok || v != 0 {
		t.Fatalf("edged_clock_synced = %v (present %v) before NTP, want 0", v, ok)
	}
	clk.Advance(time.Second)
	clk.Step(50 * 365 * 24 * time.Hour)
	synced = true
	wc.Check()
	clk.Advance(time.Second)
	wc.Check()
	fams, _ = scrape(t, h)
	if v, ok := value(fams, "edged_clock_synced", nil); !ok || v != 1 {
		t.Errorf("edged_clock_synced = %v (present %v) after NTP, want 1", v, ok)
	}
	if v, ok := value(fams, "edged_clock_steps_total", nil); !ok || v != 1 {
		t.Errorf("edged_clock_steps_total = %v (present %v), want 1", v, ok)
	}
}

// controllers returns a table in which "heat" published st, and "cool"
// nothing yet.
func controllers(st control.State) *Controllers {
	c := NewControllers([]string{"heat", "cool"})
	b, _ := json.Marshal(st)
	c.Publish("heat", b)
	c.Publish("heat", []byte("not json")) // ignored: the last good state stays
	c.Publish("ghost", b)                 // not configured: ignored
	return c
}

// scrape GETs the handler and parses the text format.
func scrape(t *testing.T, h http.Handler) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	body := rec.Body.Bytes()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the exposition does not parse: %v\n%s", err, body)
	}
	return fams, body
}

// value returns the value of the sample of family name whose labels
// include want; false if there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
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
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		case dto.MetricType_SUMMARY:
			return m.GetSummary().GetSampleSum(), true
		}
	}
	return 0, false
}

func TestExposition(t *testing.T) {
	bs := localbroker.Stats{Clients: 4, MessagesReceived: 120, Dropped: localbroker.Drops{Fanout: 2}}
	us := uplink.Stats{Connected: true, Backlog: 7, OldestUnsent: 90 * time.Second, Sent: 50, Acked: 43, Resent: 5,
		Dropped: map[string]uint64{"overflow": 9, "age": 0}, LastPuback: time.Unix(1700000000, 0), Fsyncs: 11, BytesWritten: 4096}
	ss := []sensors.SensorStats{{ID: "air", Status: sensors.StatusOnline, Samples: 10, Failures: 2, SenseTime: 500 * time.Millisecond, LastSample: time.Unix(1700000000, 0)}}
	r := NewReadings([]string{"air"}, [][]sensors.Quantity{{sensors.Temperature, sensors.Humidity}})
	r.Input(sensors.Reading{Sensor: "air", Quantity: sensors.Temperature, Value: 21.37, Time: time.Unix(1700000001, 0)})
	r.Input(sensors.Reading{Sensor: "ghost", Quantity: sensors.Temperature, Value: 1}) // not in the table: ignored
	fams, body := scrape(t, Handler(sources(&bs, &us, &ss, r)))

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"edged_sensor_value", map[string]string{"sensor": "air", "quantity": "temperature", "unit": "celsius"}, 21.37},
		{"edged_sensor_value_timestamp_seconds", map[string]string{"sensor": "air", "quantity": "temperature"}, 1700000001},
		{"edged_sensor_samples_total", map[string]string{"sensor": "air"}, 10},
		{"edged_sensor_sample_errors_total", map[string]string{"sensor": "air"}, 2},
		{"edged_sensor_sample_duration_seconds", map[string]string{"sensor": "air"}, 0.5},
		{"edged_sensor_online", map[string]string{"sensor": "air"}, 1},
		{"edged_broker_clients", nil, 4},
		{"edged_broker_messages_received_total", nil, 120},
		{"edged_broker_dropped_total", map[string]string{"reason": "fanout"}, 2},
		{"edged_reading_queue_dropped_total", nil, 3},
		{"edged_uplink_backlog_messages", nil, 7},
		{"edged_uplink_oldest_unsent_age_seconds", nil, 90},
		{"edged_uplink_resent_total", nil, 5},
		{"edged_uplink_dropped_total", map[string]string{"reason": "overflow"}, 9},
		{"edged_uplink_last_puback_timestamp_seconds", nil, 1700000000},
		{"edged_uplink_buffer_fsyncs_total", nil, 11},
		{"edged_uplink_buffer_written_bytes_total", nil, 4096},
		{"edged_control_setpoint", map[string]string{"controller": "heat"}, 22.5},
		{"edged_control_input", map[string]string{"controller": "heat"}, 21.5},
		{"edged_control_output_ratio", map[string]string{"controller": "heat"}, 0.4},
		{"edged_control_fault", map[string]string{"controller": "heat"}, 1},
		{"edged_loop_overdue_seconds", map[string]string{"loop": "control/heat"}, 0},
		{"edged_build_info", map[string]string{"version": "test"}, 1},
		{"edged_clock_synced", nil, 1},
		{"edged_clock_steps_total", nil, 0},
		{"edged_config_reloads_total", map[string]string{"result": "applied"}, 2},
		{"edged_config_reloads_total", map[string]string{"result": "refused"}, 1},
		{"edged_config_reloads_total", map[string]string{"result": "failed"}, 0},
		{"edged_config_last_reload_successful", nil, 0},
		{"edged_config_last_reload_success_timestamp_seconds", nil, 1700000002},
		{"edged_config_restart_needed", nil, 1},
		{"edged_http_connections_refused_total", map[string]string{"reason": "max_connections"}, 0},
		{"edged_http_connections_refused_total", map[string]string{"reason": "max_connections_per_address"}, 4},
		{"edged_http_connections_refused_total", map[string]string{"reason": "max_connects_per_minute"}, 6},
	} {
		got, ok := value(fams, c.name, c.labels)
		if !ok || math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if _, ok := value(fams, "edged_sensor_value", map[string]string{"quantity": "humidity"}); ok {
		t.Error("humidity has a value before any reading")
	}
	if _, ok := value(fams, "edged_control_setpoint", map[string]string{"controller": "cool"}); ok {
		t.Error("a controller that published nothing has a setpoint")
	}
	if _, ok := value(fams, "edged_control_setpoint", map[string]string{"controller": "ghost"}); ok {
		t.Error("an unknown controller's state made a series")
	}
	if _, ok := value(fams, "edged_sensor_value", map[string]string{"sensor": "ghost"}); ok {
		t.Error("a reading of an unknown sensor made a series")
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if fams[name] == nil {
			t.Errorf("%s missing: the Go and process collectors must be registered", name)
		}
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "edged_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
}

// TestEveryStatsFieldIsExported sets each numeric field of the broker's
// and the uplink's Stats in turn and checks that some metric moves: a
// field added to either Stats without its line in brokerMetrics or
// uplinkMetrics fails here.
func TestEveryStatsFieldIsExported(t *testing.T) {
	// Fields with no metric of their own, and why.
	skip := map[string]string{
		"uplink.Epoch":        "a label-worthy string that changes per buffer; in the state topic",
		"uplink.OldestAgeSec": "OldestUnsent, rounded, for JSON",
		"uplink.BufferError":  "text; edged_uplink_buffer_failed says whether there is one",
		// Totals kept for /healthz whose parts are the per-reason families.
		"localbroker.SlowClientsDisconnected": "the sum of SlowClients",
		"localbroker.ConnectionsRefused":      "the accept-time part of ConnectsRefused",
		"localbroker.WillsRefused":            "ConnectsRefused.WillNotAllowed",
		"localbroker.RetainedRefused":         "PublishesRefused.RetainedFull, and Wills published but not retained (logged)",
		"localbroker.LocalDropped":            "Dropped.Fanout",
	}
	check := func(t *testing.T, kind string, zero any, render func(v reflect.Value) []byte) {
		base := render(reflect.ValueOf(zero))
		typ := reflect.TypeOf(zero)
		for i := range typ.NumField() {
			f := typ.Field(i)
			if _, ok := skip[kind+"."+f.Name]; ok {
				continue
			}
			v := reflect.New(typ).Elem()
			v.Set(reflect.ValueOf(zero))
			fv := v.Field(i)
			switch fv.Kind() {
			case reflect.Int, reflect.Int64:
				fv.SetInt(7)
			case reflect.Uint64:
				fv.SetUint(7)
			case reflect.Float64:
				fv.SetFloat(7)
			case reflect.Bool:
				fv.SetBool(true)
			case reflect.Map:
				fv.Set(reflect.ValueOf(map[string]uint64{"some_reason": 7}))
			case reflect.Struct:
				if fv.Type() == reflect.TypeOf(time.Time{}) {
					fv.Set(reflect.ValueOf(time.Unix(1700000000, 0)))
					break
				}
				// A per-reason struct: every reason moves its own sample.
				for j := range fv.NumField() {
					w := reflect.New(typ).Elem()
					w.Set(reflect.ValueOf(zero))
					w.Field(i).Field(j).SetUint(7)
					if bytes.Equal(render(w), base) {
						t.Errorf("%s.Stats.%s.%s moves no metric", kind, f.Name, fv.Type().Field(j).Name)
					}
				}
				continue
			default:
				t.Errorf("%s.%s: kind %s not handled here; add it", kind, f.Name, fv.Kind())
				continue
			}
			if bytes.Equal(render(v), base) {
				t.Errorf("%s.Stats.%s moves no metric: add its line to the table in metrics.go (or to skip here, saying why)", kind, f.Name)
			}
		}
	}
	ss := []sensors.SensorStats{}
	emptyUplink := uplink.Stats{}
	check(t, "localbroker", localbroker.Stats{}, func(v reflect.Value) []byte {
		bs := v.Interface().(localbroker.Stats)
		_, body := scrape(t, Handler(Sources{Sensors: func() []sensors.SensorStats { return ss }, Broker: func() localbroker.Stats { return bs }}))
		return edgedLines(body)
	})
	check(t, "uplink", emptyUplink, func(v reflect.Value) []byte {
		us := v.Interface().(uplink.Stats)
		_, body := scrape(t, Handler(Sources{Sensors: func() []sensors.SensorStats { return ss }, Broker: func() localbroker.Stats { return localbroker.Stats{} }, Uplink: func() uplink.Stats { return us }}))
		return edgedLines(body)
	})
}

// edgedLines keeps edged's own samples (the Go and process collectors
// move by themselves).
func edgedLines(body []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(body, []byte("\n")) {
		if bytes.HasPrefix(l, []byte("edged_")) {
			out = append(append(out, l...), '\n')
		}
	}
	return out
}

func TestReadingsAllocateNothing(t *testing.T) {
	r := NewReadings([]string{"air"}, [][]sensors.Quantity{{sensors.Temperature}})
	rd := sensors.Reading{Sensor: "air", Quantity: sensors.Temperature, Value: 20, Time: time.Now()}
	if n := testing.AllocsPerRun(100, func() { r.Input(rd) }); n != 0 {
		t.Errorf("Input allocates %v times, want 0", n)
	}
}

// TestReadingsSet: a reload's new table keeps the last value of a
// quantity still there, drops the ones gone and takes the new ones.
func TestReadingsSet(t *testing.T) {
	r := NewReadings([]string{"air", "gone"}, [][]sensors.Quantity{{sensors.Temperature}, {sensors.Humidity}})
	r.Input(sensors.Reading{Sensor: "air", Quantity: sensors.Temperature, Value: 21, Time: time.Unix(1700000001, 0)})
	r.Input(sensors.Reading{Sensor: "gone", Quantity: sensors.Humidity, Value: 50, Time: time.Unix(1700000001, 0)})
	r.Set([]string{"air", "fresh"}, [][]sensors.Quantity{{sensors.Temperature}, {sensors.Pressure}})
	r.Input(sensors.Reading{Sensor: "fresh", Quantity: sensors.Pressure, Value: 1000, Time: time.Unix(1700000002, 0)})
	bs, us, ss := localbroker.Stats{}, uplink.Stats{}, []sensors.SensorStats{}
	fams, _ := scrape(t, Handler(sources(&bs, &us, &ss, r)))
	if v, ok := value(fams, "edged_sensor_value", map[string]string{"sensor": "air", "quantity": "temperature", "unit": "celsius"}); !ok || v != 21 {
		t.Errorf("kept quantity: %v %v, want 21", v, ok)
	}
	if v, ok := value(fams, "edged_sensor_value", map[string]string{"sensor": "fresh", "quantity": "pressure", "unit": "pascals"}); !ok || v != 1000 {
		t.Errorf("new quantity: %v %v, want 1000", v, ok)
	}
	if _, ok := value(fams, "edged_sensor_value", map[string]string{"sensor": "gone", "quantity": "humidity", "unit": "percent"}); ok {
		t.Error("removed sensor still exported")
	}
}

// TestControllersSet: after a reload's Set, a controller kept keeps its
// last state, a removed one is gone and an added one is exported once it
// publishes.
func TestControllersSet(t *testing.T) {
	c := controllers(control.State{Setpoint: 22.5, Output: 0.4})
	c.Set([]string{"heat", "vent"})
	b, _ := json.Marshal(control.State{Setpoint: 18})
	c.Publish("vent", b)
	c.Publish("cool", b) // removed: ignored
	bs, us, ss := localbroker.Stats{}, uplink.Stats{}, []sensors.SensorStats{}
	src := sources(&bs, &us, &ss, NewReadings(nil, nil))
	src.Controllers = c
	fams, _ := scrape(t, Handler(src))
	for id, want := range map[string]float64{"heat": 22.5, "vent": 18} {
		if v, ok := value(fams, "edged_control_setpoint", map[string]string{"controller": id}); !ok || v != want {
			t.Errorf("%s setpoint %v %v, want %v", id, v, ok, want)
		}
	}
	if _, ok := value(fams, "edged_control_setpoint", map[string]string{"controller": "cool"}); ok {
		t.Error("removed controller still exported")
	}
}
