// Package metrics is edged's Prometheus exposition: one Collector that
// reads the rooms' own Stats snapshots when scraped (no second set of
// counters, no cost per message), the last published reading of every
// sensor quantity, and the Go and process collectors.
//
// It owns metric names, types, labels and help texts, and nothing else:
// it must not count anything the rooms do not count themselves (except
// the last readings, which it keeps as the API does), and it must not
// serve HTTP beyond the handler it returns (cmd/edged/web mounts it
// behind the API's authentication). A room's new Stats field is one line
// in the tables below.
package metrics

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"

	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/pipeline/control"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/liveness"
	"github.com/edged/edged/sensors/wallclock"
	"github.com/edged/edged/uplink"
)

// Controllers keeps the state each control loop last published, for the
// edged_control_* gauges. It is fed from the state topic (Publish), not
// read from the loops when scraped: a loop stuck in an actuator write
// holds its lock, and a scrape must not hang with it.
type Controllers struct {
	tab atomic.Pointer[controllerTable]
}

type controllerTable struct {
	ids    []string
	states map[string]*atomic.Pointer[control.State] // read-only once made
}

// NewControllers returns a table for the controllers ids, in order.
func NewControllers(ids []string) *Controllers {
	c := &Controllers{}
	c.Set(ids)
	return c
}

// Set replaces the table with one for ids (a live reload); a controller
// in both keeps its last state until it publishes again.
func (c *Controllers) Set(ids []string) {
	t := &controllerTable{ids: slices.Clone(ids), states: map[string]*atomic.Pointer[control.State]{}}
	old := c.tab.Load()
	for _, id := range ids {
		if old != nil && old.states[id] != nil {
			t.states[id] = old.states[id]
			continue
		}
		t.states[id] = new(atomic.Pointer[control.State])
	}
	c.tab.Store(t)
}

// Publish records the state JSON controller id published (at most one a
// second); an unknown id or a payload that does not parse is ignored.
func (c *Controllers) Publish(id string, payload []byte) {
	if c == nil {
		return
	}
	p := c.tab.Load().states[id]
	if p == nil {
		return
	}
	var st control.State
	if json.Unmarshal(payload, &st) == nil {
		p.Store(&st)
	}
}

// Sources are the snapshots a scrape reads. Sensors and Broker are
// required; a nil Uplink, Controllers, QueueDropped or Beats leaves its metrics
// out.
type Sources struct {
	Version      string
	Sensors      func() []sensors.SensorStats
	Readings     *Readings
	Broker       func() localbroker.Stats
	Uplink       func() uplink.Stats
	Controllers  *Controllers
	QueueDropped func() uint64
	Beats        func() []*liveness.Beat
	// Clock is the wall clock's judge (README "Clock"); nil: no clock
	// metrics.
	Clock   *wallclock.Clock
	Reloads func() Reloads
	// HTTPRefused counts the connections the HTTP listeners refused at
	// accept; nil: no such metric.
	HTTPRefused func() localbroker.AcceptRefusals
}

// Reloads are the config reloads (SIGHUP) of a running edged, which
// cmd/edged counts, for the edged_config_* metrics (named as Prometheus
// names its own).
type Reloads struct {
	// Applied, Failed (applied in part: a device did not open) and
	// Refused (the file did not validate; nothing changed) count reloads
	// by result.
	Applied, Failed, Refused uint64
	// LastSuccessful is false after a reload that was not applied in
	// full, until one is.
	LastSuccessful bool
	// LastSuccess is when the running config was last applied in full:
	// the start, then each applied reload.
	LastSuccess time.Time
	// RestartNeeded is true while the file asks for changes that only a
	// restart applies (listener addresses, state_dir, ...).
	RestartNeeded bool
}

// Handler returns the /metrics handler: the text exposition format,
// version 0.0.4, which every Prometheus scraper reads. It is written
// without promhttp: its content negotiation (protobuf, OpenMetrics,
// compression) made the ARMv7 binary 262 KB larger for formats a
// gateway's handful of series does not need.
func Handler(src Sources) http.Handler {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(
		newCollector(src),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	var mu sync.Mutex // one scrape at a time: bounds what a flood costs
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		mfs, err := reg.Gather()
		if err != nil && len(mfs) == 0 {
			http.Error(w, "metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		var buf bytes.Buffer
		for _, mf := range mfs {
			if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
				http.Error(w, "metrics: "+err.Error(), http.StatusInternalServerError)
				return
			}
		}
		w.Header().Set("Content-Type", textFormat)
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(buf.Bytes())
	})
}

// textFormat is the content type of the text exposition format.
const textFormat = "text/plain; version=0.0.4; charset=utf-8"

// metric is one row of a table: a name, its help, its type and how to
// read it from a snapshot.
type metric[S any] struct {
	name, help string
	kind       prometheus.ValueType
	get        func(S) float64
	desc       *prometheus.Desc
}

const (
	counter = prometheus.CounterValue
	gauge   = prometheus.GaugeValue
)

// brokerMetrics reads localbroker.Stats.
var brokerMetrics = []metric[localbroker.Stats]{
	{name: "edged_broker_clients", help: "Connected MQTT clients.", kind: gauge, get: func(s localbroker.Stats) float64 { return float64(s.Clients) }},
	{name: "edged_broker_subscriptions", help: "Live subscriptions.", kind: gauge, get: func(s localbroker.Stats) float64 { return float64(s.Subscriptions) }},
	{name: "edged_broker_messages_received_total", help: "PUBLISH packets received from MQTT clients.", kind: counter, get: func(s localbroker.Stats) float64 { return float64(s.MessagesReceived) }},
	{name: "edged_broker_messages_sent_total", help: "PUBLISH packets sent to MQTT clients.", kind: counter, get: func(s localbroker.Stats) float64 { return float64(s.MessagesSent) }},
	{name: "edged_broker_received_bytes_total", help: "Bytes received from MQTT clients.", kind: counter, get: func(s localbroker.Stats) float64 { return float64(s.BytesReceived) }},
	{name: "edged_broker_sent_bytes_total", help: "Bytes sent to MQTT clients.", kind: counter, get: func(s localbroker.Stats) float64 { return float64(s.BytesSent) }},
	{name: "edged_broker_retained_messages", help: "Retained messages held.", kind: gauge, get: func(s localbroker.Stats) float64 { return float64(s.RetainedMessages) }},
	{name: "edged_broker_retained_bytes", help: "Bytes of retained messages held.", kind: gauge, get: func(s localbroker.Stats) float64 { return float64(s.RetainedBytes) }},
	{name: "edged_login_failures_total", help: "Logins (MQTT or HTTP) refused for wrong credentials.", kind: counter, get: func(s localbroker.Stats) float64 { return float64(s.LoginFailures) }},
	{name: "edged_logins_limited_total", help: "Logins refused unchecked because their address failed too often.", kind: counter, get: func(s localbroker.Stats) float64 { return float64(s.LoginsLimited) }},
}

// brokerReasons are localbroker.Stats' per-reason counts: one counter
// family each, labelled by reason, the field's JSON name (so a new
// reason in localbroker is exported with no line here).
var brokerReasons = []struct {
	name, help string
	get        func(localbroker.Stats) any
}{
	{"edged_broker_dropped_total", "Messages not delivered to a subscriber, by reason: once per subscriber that missed it (fanout: once per gateway message the local fan-out queue had no room for; the uplink still has it).", func(s localbroker.Stats) any { return s.Dropped }},
	{"edged_broker_publishes_refused_total", "LAN publishes the broker refused, by reason.", func(s localbroker.Stats) any { return s.PublishesRefused }},
	{"edged_broker_connections_refused_total", "Connections refused at accept or at CONNECT, by reason.", func(s localbroker.Stats) any { return s.ConnectsRefused }},
	{"edged_broker_slow_clients_disconnected_total", "Clients disconnected because they stopped reading, by what showed it.", func(s localbroker.Stats) any { return s.SlowClients }},
	{"edged_broker_subscriptions_refused_total", "SUBSCRIBE filters the broker refused, by reason.", func(s localbroker.Stats) any { return s.SubscriptionsRefused }},
	{"edged_broker_sessions_ended_total", "Sessions of absent persistent clients that ended, by why (expired, or the oldest beyond max_sessions).", func(s localbroker.Stats) any { return s.SessionsEnded }},
}

// reasons calls f with each uint64 field of the struct v and its JSON name.
func reasons(v any, f func(reason string, n uint64)) {
	rv := reflect.ValueOf(v)
	rt := rv.Type()
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if fv := rv.Field(i); fv.Kind() == reflect.Uint64 && name != "" && name != "-" {
			f(name, fv.Uint())
		}
	}
}

// uplinkMetrics reads uplink.Stats (Dropped, by reason, is its own).
var uplinkMetrics = []metric[uplink.Stats]{
	{name: "edged_uplink_connected", help: "1 while connected to the cloud broker.", kind: gauge, get: func(s uplink.Stats) float64 { return b2f(s.Connected) }},
	{name: "edged_uplink_backlog_messages", help: "Buffered messages the cloud has not acknowledged.", kind: gauge, get: func(s uplink.Stats) float64 { return float64(s.Backlog) }},
	{name: "edged_uplink_backlog_bytes", help: "Disk bytes of the backlog.", kind: gauge, get: func(s uplink.Stats) float64 { return float64(s.BacklogBytes) }},
	{name: "edged_uplink_oldest_unsent_age_seconds", help: "Age of the oldest unacknowledged message; 0 with an empty backlog.", kind: gauge, get: func(s uplink.Stats) float64 { return s.OldestUnsent.Seconds() }},
	{name: "edged_uplink_sent_total", help: "Messages sent to the cloud, resends included.", kind: counter, get: func(s uplink.Stats) float64 { return float64(s.Sent) }},
	{name: "edged_uplink_acked_total", help: "Messages the cloud acknowledged.", kind: counter, get: func(s uplink.Stats) float64 { return float64(s.Acked) }},
	{name: "edged_uplink_no_subscribers_total", help: "Messages the cloud acknowledged with reason 0x10 (no matching subscribers): accepted, delivered to nobody.", kind: counter, get: func(s uplink.Stats) float64 { return float64(s.NoSubscribers) }},
	{name: "edged_uplink_resent_total", help: "Messages sent again after a reconnect (possible duplicates at the cloud).", kind: counter, get: func(s uplink.Stats) float64 { return float64(s.Resent) }},
	{name: "edged_uplink_dead_letters_total", help: "Messages the cloud refused for good, or that could not be sent.", kind: counter, get: func(s uplink.Stats) float64 { return float64(s.DeadLetters) }},
	{name: "edged_uplink_connects_total", help: "Successful connects to the cloud broker.", kind: counter, get: func(s uplink.Stats) float64 { return float64(s.Connects) }},
	{name: "edged_uplink_buffer_corrupt_recovered_total", help: "Damaged buffer files repaired or moved aside.", kind: counter, get: func(s uplink.Stats) float64 { return float64(s.CorruptRecovered) }},
	{name: "edged_uplink_buffer_reopens_total", help: "Times the failed buffer was reopened.", kind: counter, get: func(s uplink.Stats) float64 { return float64(s.BufferReopens) }},
	{name: "edged_uplink_buffer_failed", help: "1 while the buffer is failed and captures are refused.", kind: gauge, get: func(s uplink.Stats) float64 { return b2f(s.BufferError != "") }},
	{name: "edged_uplink_buffer_disk_bytes", help: "Disk bytes of the buffer's files.", kind: gauge, get: func(s uplink.Stats) float64 { return float64(s.DiskBytes) }},
	{name: "edged_uplink_buffer_fsyncs_total", help: "File and directory syncs of the buffer since it was opened.", kind: counter, get: func(s uplink.Stats) float64 { return float64(s.Fsyncs) }},
	{name: "edged_uplink_buffer_written_bytes_total", help: "Bytes the buffer wrote since it was opened.", kind: counter, get: func(s uplink.Stats) float64 { return float64(s.BytesWritten) }},
}

// sensorMetrics reads sensors.SensorStats, labelled by sensor.
var sensorMetrics = []metric[sensors.SensorStats]{
	{name: "edged_sensor_online", help: "1 while the sensor is online (a good sample since the last offline_after failures); 0 offline or before the first sample.", kind: gauge, get: func(s sensors.SensorStats) float64 { return b2f(s.Status == sensors.StatusOnline) }},
	{name: "edged_sensor_samples_total", help: "Successful samples.", kind: counter, get: func(s sensors.SensorStats) float64 { return float64(s.Samples) }},
	{name: "edged_sensor_sample_errors_total", help: "Failed samples, retries and timeouts included.", kind: counter, get: func(s sensors.SensorStats) float64 { return float64(s.Failures) }},
	{name: "edged_sensor_sample_timeouts_total", help: "Failed samples that timed out.", kind: counter, get: func(s sensors.SensorStats) float64 { return float64(s.Timeouts) }},
	{name: "edged_sensor_skipped_slots_total", help: "Grid slots passed without a sample starting (an overrunning sample).", kind: counter, get: func(s sensors.SensorStats) float64 { return float64(s.Skipped) }},
	{name: "edged_sensor_sense_stuck", help: "1 while a timed-out Sense has not returned.", kind: gauge, get: func(s sensors.SensorStats) float64 { return b2f(s.Stuck) }},
}

// controlMetrics reads control.State, labelled by controller.
var controlMetrics = []metric[control.State]{
	{name: "edged_control_setpoint", help: "The controller's setpoint, in its input's unit.", kind: gauge, get: func(s control.State) float64 { return s.Setpoint }},
	{name: "edged_control_output_ratio", help: "The output (duty 0..1) the controller applies.", kind: gauge, get: func(s control.State) float64 { return s.Output }},
	{name: "edged_control_fault", help: "1 while the output is not what the mode asks for (stale or offline input, cutoff, ...); the state topic says why.", kind: gauge, get: func(s control.State) float64 { return b2f(s.Fault != "") }},
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

type collector struct {
	src Sources

	broker                                              []metric[localbroker.Stats]
	brokerReasons                                       []*prometheus.Desc
	buildInfo, readingValue, readingTime, senseTime     *prometheus.Desc
	lastSample, queueDropped, uplinkDropped, lastPuback *prometheus.Desc
	controlInput, loopOverdue, clockSynced, clockSteps  *prometheus.Desc
	reloads, reloadOK, reloadTime, restartNeeded        *prometheus.Desc
	httpRefused                                         *prometheus.Desc
	uplinkRows                                          []metric[uplink.Stats]
	sensorRows                                          []metric[sensors.SensorStats]
	controlRows                                         []metric[control.State]
}

func descs[S any](rows []metric[S], labels ...string) []metric[S] {
	out := append([]metric[S](nil), rows...)
	for i := range out {
		out[i].desc = prometheus.NewDesc(out[i].name, out[i].help, labels, nil)
	}
	return out
}

func newCollector(src Sources) *collector {
	var reasonDescs []*prometheus.Desc
	for _, r := range brokerReasons {
		reasonDescs = append(reasonDescs, prometheus.NewDesc(r.name, r.help, []string{"reason"}, nil))
	}
	return &collector{
		brokerReasons: reasonDescs,
		src:           src,
		broker:        descs(brokerMetrics),
		uplinkRows:    descs(uplinkMetrics),
		sensorRows:    descs(sensorMetrics, "sensor"),
		controlRows:   descs(controlMetrics, "controller"),
		buildInfo:     prometheus.NewDesc("edged_build_info", "edged's version and the Go that built it; always 1.", []string{"version", "goversion"}, nil),
		readingValue:  prometheus.NewDesc("edged_sensor_value", "The last published reading of a sensor quantity (after the filters, as on MQTT), in the unit the label names.", []string{"sensor", "quantity", "unit"}, nil),
		readingTime:   prometheus.NewDesc("edged_sensor_value_timestamp_seconds", "Sample time of the last published reading (Unix seconds).", []string{"sensor", "quantity"}, nil),
		senseTime:     prometheus.NewDesc("edged_sensor_sample_duration_seconds", "Time successful samples took, from their slot to their values.", []string{"sensor"}, nil),
		lastSample:    prometheus.NewDesc("edged_sensor_last_sample_timestamp_seconds", "Time of the latest successful sample (Unix seconds); absent before the first.", []string{"sensor"}, nil),
		queueDropped:  prometheus.NewDesc("edged_reading_queue_dropped_total", "Readings dropped because publishing was behind (the broker or its disk buffer slow).", nil, nil),
		uplinkDropped: prometheus.NewDesc("edged_uplink_dropped_total", "Messages the uplink dropped on purpose, by reason.", []string{"reason"}, nil),
		lastPuback:    prometheus.NewDesc("edged_uplink_last_puback_timestamp_seconds", "Time of the latest PUBACK from the cloud (Unix seconds); absent before the first.", nil, nil),
		controlInput:  prometheus.NewDesc("edged_control_input", "The controller's fresh input value; absent while it has none (stale, offline).", []string{"controller"}, nil),
		loopOverdue:   prometheus.NewDesc("edged_loop_overdue_seconds", "How long a main loop is past the time it should have come round; 0 when alive (see /healthz).", []string{"loop"}, nil),
		clockSynced:   prometheus.NewDesc("edged_clock_synced", "1 while the wall clock is trusted (the kernel says NTP synchronised it, it reads after the build date, it did not just jump); 0 while readings are stamped \"clock\":\"unsynced\".", nil, nil),
		clockSteps:    prometheus.NewDesc("edged_clock_steps_total", "Steps of the wall clock against the monotonic clock seen (NTP's first sync included).", nil, nil),
		reloads:       prometheus.NewDesc("edged_config_reloads_total", "Config reloads (SIGHUP), by result: applied, failed (applied in part, a device did not open), refused (the file did not validate; nothing changed).", []string{"result"}, nil),
		reloadOK:      prometheus.NewDesc("edged_config_last_reload_successful", "1 if the last config reload was applied in full (or none was tried), 0 if it failed or was refused.", nil, nil),
		reloadTime:    prometheus.NewDesc("edged_config_last_reload_success_timestamp_seconds", "When the running config was last applied in full: the start, then each applied reload (Unix seconds).", nil, nil),
		httpRefused:   prometheus.NewDesc("edged_http_connections_refused_total", "Connections the HTTP listeners closed at accept, by the limit that refused them (128 open, 16 from one address, 240 a minute from one address).", []string{"reason"}, nil),
		restartNeeded: prometheus.NewDesc("edged_config_restart_needed", "1 while the config file asks for changes only a restart applies (listener addresses, state_dir, device id, ...).", nil, nil),
	}
}

// Describe sends every descriptor the collector may produce.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.buildInfo, c.readingValue, c.readingTime, c.senseTime, c.lastSample,
		c.queueDropped, c.uplinkDropped, c.lastPuback, c.controlInput, c.loopOverdue, c.clockSynced, c.clockSteps,
		c.reloads, c.reloadOK, c.reloadTime, c.restartNeeded, c.httpRefused} {
		ch <- d
	}
	for _, m := range c.broker {
		ch <- m.desc
	}
	for _, d := range c.brokerReasons {
		ch <- d
	}
	for _, m := range c.uplinkRows {
		ch <- m.desc
	}
	for _, m := range c.sensorRows {
		ch <- m.desc
	}
	for _, m := range c.controlRows {
		ch <- m.desc
	}
}

// Collect reads the snapshots once each and turns them into metrics.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	src := c.src
	ch <- prometheus.MustNewConstMetric(c.buildInfo, gauge, 1, src.Version, runtime.Version())
	for _, st := range src.Sensors() {
		for _, m := range c.sensorRows {
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.get(st), st.ID)
		}
		ch <- prometheus.MustNewConstSummary(c.senseTime, st.Samples, st.SenseTime.Seconds(), nil, st.ID)
		if !st.LastSample.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.lastSample, gauge, unixSeconds(st.LastSample), st.ID)
		}
	}
	if src.Readings != nil {
		t := src.Readings.tab.Load()
		for i := range t.slots {
			r := &t.slots[i]
			ns := r.at.Load()
			if ns == 0 {
				continue // nothing published yet
			}
			ch <- prometheus.MustNewConstMetric(c.readingValue, gauge, math.Float64frombits(r.bits.Load()), r.sensor, r.quantity, r.unit)
			ch <- prometheus.MustNewConstMetric(c.readingTime, gauge, float64(ns)/1e9, r.sensor, r.quantity)
		}
	}
	if src.QueueDropped != nil {
		ch <- prometheus.MustNewConstMetric(c.queueDropped, counter, float64(src.QueueDropped()))
	}
	bs := src.Broker()
	for _, m := range c.broker {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.get(bs))
	}
	for i, r := range brokerReasons {
		reasons(r.get(bs), func(reason string, n uint64) {
			ch <- prometheus.MustNewConstMetric(c.brokerReasons[i], counter, float64(n), reason)
		})
	}
	if src.HTTPRefused != nil {
		reasons(src.HTTPRefused(), func(reason string, n uint64) {
			ch <- prometheus.MustNewConstMetric(c.httpRefused, counter, float64(n), reason)
		})
	}
	if src.Uplink != nil {
		us := src.Uplink()
		for _, m := range c.uplinkRows {
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.get(us))
		}
		for reason, n := range us.Dropped {
			ch <- prometheus.MustNewConstMetric(c.uplinkDropped, counter, float64(n), reason)
		}
		if !us.LastPuback.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.lastPuback, gauge, unixSeconds(us.LastPuback))
		}
	}
	if src.Controllers != nil {
		t := src.Controllers.tab.Load()
		for _, id := range t.ids {
			st := t.states[id].Load()
			if st == nil {
				continue // nothing published yet
			}
			for _, m := range c.controlRows {
				ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.get(*st), id)
			}
			if st.Input != nil {
				ch <- prometheus.MustNewConstMetric(c.controlInput, gauge, *st.Input, id)
			}
		}
	}
	if src.Clock != nil {
		synced := 0.0
		if src.Clock.Synced() {
			synced = 1
		}
		ch <- prometheus.MustNewConstMetric(c.clockSynced, gauge, synced)
		ch <- prometheus.MustNewConstMetric(c.clockSteps, counter, float64(src.Clock.Jumps()))
	}
	if src.Reloads != nil {
		r := src.Reloads()
		for _, n := range []struct {
			result string
			n      uint64
		}{{"applied", r.Applied}, {"failed", r.Failed}, {"refused", r.Refused}} {
			ch <- prometheus.MustNewConstMetric(c.reloads, counter, float64(n.n), n.result)
		}
		ch <- prometheus.MustNewConstMetric(c.reloadOK, gauge, b2f(r.LastSuccessful))
		ch <- prometheus.MustNewConstMetric(c.reloadTime, gauge, unixSeconds(r.LastSuccess))
		ch <- prometheus.MustNewConstMetric(c.restartNeeded, gauge, b2f(r.RestartNeeded))
	}
	if src.Beats != nil {
		for _, b := range src.Beats() {
			ch <- prometheus.MustNewConstMetric(c.loopOverdue, gauge, b.Overdue().Seconds(), b.Name())
		}
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// Readings keeps the last published value of every sensor quantity for
// the edged_sensor_value gauges. It is a pipeline.Observer; its table is
// fixed when it is built (and replaced whole by Set on a reload), so
// taking a reading is a load and two atomic stores.
type Readings struct {
	tab atomic.Pointer[readingTable]
}

type readingTable struct {
	slots []reading
	index map[readingKey]int // read-only once made
}

type readingKey struct {
	sensor string
	q      sensors.Quantity
}

type reading struct {
	sensor, quantity, unit string
	bits                   atomic.Uint64 // float64 bits
	at                     atomic.Int64  // sample time, unix ns; 0: none yet
}

var _ pipeline.Observer = (*Readings)(nil)

// NewReadings returns a table for the quantities of each sensor id
// (quantities[id]), in order.
func NewReadings(ids []string, quantities [][]sensors.Quantity) *Readings {
	r := &Readings{}
	r.Set(ids, quantities)
	return r
}

// Set replaces the table with one for ids and quantities (a live
// reload); the last value of a quantity in both tables is kept.
func (r *Readings) Set(ids []string, quantities [][]sensors.Quantity) {
	t := &readingTable{index: map[readingKey]int{}}
	n := 0
	for _, qs := range quantities {
		n += len(qs)
	}
	t.slots = make([]reading, n)
	old := r.tab.Load()
	i := 0
	for k, id := range ids {
		for _, q := range quantities[k] {
			t.slots[i].sensor, t.slots[i].quantity, t.slots[i].unit = id, q.String(), unitName(q)
			t.index[readingKey{id, q}] = i
			if old != nil {
				if j, ok := old.index[readingKey{id, q}]; ok {
					t.slots[i].bits.Store(old.slots[j].bits.Load())
					t.slots[i].at.Store(old.slots[j].at.Load())
				}
			}
			i++
		}
	}
	r.tab.Store(t)
}

// Input records a published reading.
func (r *Readings) Input(rd sensors.Reading) {
	t := r.tab.Load()
	if i, ok := t.index[readingKey{rd.Sensor, rd.Quantity}]; ok {
		t.slots[i].bits.Store(math.Float64bits(rd.Value))
		t.slots[i].at.Store(max(rd.Time.UnixNano(), 1))
	}
}

// Availability is in edged_sensor_online already.
func (r *Readings) Availability(string, bool) {}

// unitName spells a quantity's unit as Prometheus names units: words,
// plural, base units.
func unitName(q sensors.Quantity) string {
	switch q.String() {
	case "temperature":
		return "celsius"
	case "humidity":
		return "percent"
	case "illuminance":
		return "lux"
	case "pressure":
		return "pascals"
	case "voltage":
		return "volts"
	case "level":
		return "ratio"
	}
	return q.Unit()
}
