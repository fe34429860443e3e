package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"

	"github.com/edged/edged/cmd/edged/dashboard"
	"github.com/edged/edged/cmd/edged/metrics"
	"github.com/edged/edged/cmd/edged/web"
	"github.com/edged/edged/configs"
	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/pipeline/control"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/topics"
	"github.com/edged/edged/uplink"
)

// newWeb builds the HTTP API over the daemon's rooms, feeds it the
// pipeline's readings and availability and the controllers' published
// states, and leaves serving it to start. Call it after the broker and
// the pipeline exist and before readings flow.
func (d *daemon) newWeb(cfg *configs.Config) error {
	deps := web.Deps{
		Auth:        brokerAuth{b: d.broker, tree: topics.New(cfg.Device.TopicPrefix)},
		Stats:       pollerStats{d},
		Controllers: controllers{d},
		Actuators:   actuators{d},
		Health:      brokerHealth{d.broker},
		Probes:      d.health,
	}
	if d.uplink != nil {
		deps.Uplink = uplinkStats{d.uplink}
	}
	var ctls *metrics.Controllers
	deps.Metrics, ctls = d.metricsHandler(cfg)
	deps.Sensors = d.sensorInfos(cfg)
	opts := web.DefaultOpts()
	opts.CORSOrigins = cfg.HTTP.CORSOrigins
	srv, err := web.New(deps, opts, d.log)
	if err != nil {
		return err
	}
	srv.Handle("/", dashboard.Handler()) // the page at /, its assets under /ui/
	d.web = srv
	d.pipe.Observe(webFeed{srv})
	// Controller states as MQTT subscribers see them (at most one per
	// second per controller); the handler only queues. Subscribed without
	// controllers too: a reload may add some.
	tree := topics.New(cfg.Device.TopicPrefix)
	if err := d.broker.Subscribe(tree.ControlStateFilter(), 2, func(m localbroker.Inbound) {
		// As for commands, an empty level gives id "".
		id, _ := tree.ParseControlState(m.Topic)
		srv.ControllerState(id, m.Payload)
		ctls.Publish(id, m.Payload)
	}); err != nil {
		return err
	}
	return nil
}

// brokerAuth gives the HTTP surface the broker's accounts: the same
// users, passwords, tokens, roles, publish rules and failed-login limits
// as MQTT.
type brokerAuth struct {
	b    *localbroker.Broker
	tree topics.Tree
}

var _ web.Authenticator = brokerAuth{}

func (a brokerAuth) Basic(ctx context.Context, user, pass string, remote net.Addr) (web.Identity, error) {
	return webIdentity(a.b.Authenticate(ctx, user, pass, remote))
}

func (a brokerAuth) Bearer(token string, remote net.Addr) (web.Identity, error) {
	return webIdentity(a.b.AuthenticateToken(token, remote))
}

func (a brokerAuth) Anonymous() (web.Identity, bool) {
	id, ok := a.b.Anonymous()
	return web.Identity{Name: "anonymous", Role: id.Role}, ok
}

// MayCommand asks the broker's publish decision for the command topic,
// so a user's publish rules bind over HTTP as over MQTT.
func (a brokerAuth) MayCommand(id web.Identity, anonymous bool, controller string) bool {
	lid := localbroker.Identity{Name: id.Name, Role: id.Role}
	if anonymous {
		lid.Name = "" // the broker's anonymous identity has no name
	}
	return a.b.MayPublish(lid, a.tree.ControlSet(controller))
}

func webIdentity(id localbroker.Identity, err error) (web.Identity, error) {
	switch {
	case errors.Is(err, localbroker.ErrTooManyFailures):
		return web.Identity{}, fmt.Errorf("%w (%w)", web.ErrTooManyFailures, err)
	case errors.Is(err, localbroker.ErrBusy):
		return web.Identity{}, fmt.Errorf("%w (%w)", web.ErrBusy, err)
	case errors.Is(err, localbroker.ErrBadCredentials):
		return web.Identity{}, fmt.Errorf("%w (%w)", web.ErrNoSuchUser, err)
	case err != nil:
		return web.Identity{}, err
	}
	return web.Identity{Name: id.Name, Role: id.Role}, nil
}

// webFeed hands the pipeline's readings to the API (pipeline.Observer).
type webFeed struct{ s *web.Server }

var _ pipeline.Observer = webFeed{}

func (f webFeed) Input(r sensors.Reading) {
	f.s.Reading(r.Sensor, r.Quantity.String(), r.Quantity.Unit(), r.Value, r.Time)
}

func (f webFeed) Availability(sensor string, online bool) { f.s.Availability(sensor, online) }

type pollerStats struct{ d *daemon }

func (p pollerStats) SensorStats() []web.SensorStat {
	st := p.d.poller.Stats()
	out := make([]web.SensorStat, len(st))
	for i, s := range st {
		out[i] = web.SensorStat{ID: s.ID, Status: s.Status.String(), Samples: s.Samples, Failures: s.Failures, LastSample: s.LastSample}
		if s.LastError != nil {
			out[i].LastError = s.LastError.Error()
		}
	}
	return out
}

// controllers serves the loops; commands go through the same inbox as
// MQTT's.
type controllers struct{ d *daemon }

func (c controllers) Controllers() []web.ControllerInfo {
	c.d.mu.RLock()
	defer c.d.mu.RUnlock()
	out := make([]web.ControllerInfo, len(c.d.ctlOpts))
	for i, o := range c.d.ctlOpts {
		out[i] = web.ControllerInfo{ID: o.ID, Input: o.Input, Output: o.Output}
	}
	return out
}

func (c controllers) State(id string) (json.RawMessage, bool) {
	l := c.d.control.loop(id)
	if l == nil {
		return nil, false
	}
	b, err := json.Marshal(l.State())
	return b, err == nil
}

func (c controllers) Command(ctx context.Context, id string, body []byte, client string) (json.RawMessage, error) {
	if c.d.control.loop(id) == nil {
		return nil, web.ErrUnknown
	}
	reply, err := c.d.control.inbox.Do(ctx, control.Request{Controller: id, Payload: body, Client: client})
	switch {
	case err == nil:
		return reply, nil
	case errors.Is(err, control.ErrCommand):
		return nil, kindError{web.ErrRefused, err}
	case errors.Is(err, control.ErrSuperseded):
		return nil, kindError{web.ErrSuperseded, err}
	case errors.Is(err, control.ErrStopped), errors.Is(err, control.ErrReplaced):
		return nil, kindError{web.ErrUnavailable, err}
	}
	return nil, err
}

// kindError keeps the control package's message (the one an MQTT
// sender gets in its reply) and adds the API's sentinel for the status.
type kindError struct{ kind, err error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.kind, e.err} }

type actuators struct{ d *daemon }

func (a actuators) Actuators() []web.Actuator {
	a.d.mu.RLock()
	defer a.d.mu.RUnlock()
	out := make([]web.Actuator, 0, len(a.d.actOpts))
	for _, o := range a.d.actOpts {
		act := a.d.actuators[o.ID]
		if act == nil {
			continue
		}
		out = append(out, web.Actuator{ID: o.ID, Driver: o.Driver, Level: act.Level(), SafeState: safeState(o.Opts)})
	}
	return out
}

// safeState reads a driver's safe_state option ("off" or "on"). The
// drivers that have one (relay, sysfspwm, ...) keep it in a SafeState
// string field; those without one are off when safe.
func safeState(opts any) string {
	v := reflect.ValueOf(opts)
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() == reflect.Struct {
		if f := v.FieldByName("SafeState"); f.IsValid() && f.Kind() == reflect.String && f.String() == "on" {
			return "on"
		}
	}
	return "off"
}

type uplinkStats struct{ u *uplink.Uplink }

func (u uplinkStats) UplinkStats() web.UplinkStats {
	s := u.u.Stats()
	var dropped uint64
	for _, n := range s.Dropped {
		dropped += n
	}
	return web.UplinkStats{Connected: s.Connected, Backlog: s.Backlog, BacklogBytes: s.BacklogBytes,
		OldestAgeSec: s.OldestAgeSec, LastPuback: s.LastPuback, Dropped: dropped, DeadLetters: s.DeadLetters}
}

// metricsHandler builds /metrics over the rooms' Stats, records the
// pipeline's readings for the value gauges, and returns the table of
// the controllers' published states for newWeb to feed. Call it from newWeb, before
// readings flow; its sources read the Poller and the loops only when
// scraped, once start has made them.
func (d *daemon) metricsHandler(cfg *configs.Config) (http.Handler, *metrics.Controllers) {
	readings := metrics.NewReadings(d.readingTable(cfg))
	d.readings = readings
	d.pipe.Observe(readings)
	src := metrics.Sources{
		Version:      buildVersion(),
		Sensors:      func() []sensors.SensorStats { return d.poller.Stats() },
		Readings:     readings,
		Broker:       d.broker.Stats,
		QueueDropped: func() uint64 { return d.queue.Dropped() },
		Beats:        d.health.Beats,
		Clock:        d.wall,
		Reloads:      d.reloads.metrics,
		HTTPRefused: func() localbroker.AcceptRefusals {
			if d.httpRefused == nil {
				return localbroker.AcceptRefusals{}
			}
			return d.httpRefused()
		},
	}
	if d.uplink != nil {
		src.Uplink = d.uplink.Stats
	}
	// Made without controllers too: a reload may add some.
	src.Controllers = metrics.NewControllers(controllerIDs(cfg))
	d.ctlMetrics = src.Controllers
	return metrics.Handler(src), src.Controllers
}

func controllerIDs(cfg *configs.Config) []string {
	ids := make([]string, len(cfg.Controllers))
	for i, c := range cfg.Controllers {
		ids[i] = c.ID
	}
	return ids
}

// sensorInfos lists cfg's sensors for the API, with the quantities of
// the opened devices.
func (d *daemon) sensorInfos(cfg *configs.Config) []web.SensorInfo {
	var out []web.SensorInfo
	for _, sc := range cfg.Sensors {
		si := web.SensorInfo{ID: sc.ID, Name: sc.Name, Driver: sc.Driver}
		for _, q := range d.sensors[sc.ID].Quantities() {
			si.Quantities = append(si.Quantities, web.Quantity{Name: q.String(), Unit: q.Unit()})
		}
		out = append(out, si)
	}
	return out
}

// readingTable is the ids and quantities of cfg's sensors for the value
// gauges.
func (d *daemon) readingTable(cfg *configs.Config) ([]string, [][]sensors.Quantity) {
	ids := make([]string, len(cfg.Sensors))
	qs := make([][]sensors.Quantity, len(cfg.Sensors))
	for i, sc := range cfg.Sensors {
		ids[i], qs[i] = sc.ID, d.sensors[sc.ID].Quantities()
	}
	return ids, qs
}

type brokerHealth struct{ b *localbroker.Broker }

func (h brokerHealth) Health() any { return h.b.Stats() }
