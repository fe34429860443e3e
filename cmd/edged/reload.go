package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edged/edged/cmd/edged/metrics"
	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/pipeline/control"
	"github.com/edged/edged/sensors"
)

// A live reload (SIGHUP, `systemctl reload`) reads the file again and
// validates it as `edged validate` does. A file with problems is refused
// and the running config kept. Otherwise what changed is applied room by
// room, each through a method of its own (Poller.Add/Remove,
// Broker.SetAccounts, Uplink.SetForward, a new Home Assistant
// announcer), without touching what did not change: the broker, its
// sessions and retained messages, the HTTP server and its SSE streams,
// the uplink buffer and its cloud session, and every sensor whose whole
// sub-config is equal, with its schedule and filter state. What only a
// restart can change is reported, and the rest is still applied.

// Results of a reload.
const (
	reloadApplied = "applied" // every change applied
	reloadFailed  = "failed"  // applied in part: a device did not open
	reloadRefused = "refused" // the file did not validate: nothing changed
)

// reloadOutcome is what one reload did: the log line, /readyz and the
// metrics report it.
type reloadOutcome struct {
	Result string    `json:"result"`
	At     time.Time `json:"at"`
	// Changes name what was applied ("sensor air added", "users").
	Changes []string `json:"changes,omitempty"`
	// RestartNeeded are the config keys that changed in the file but
	// take a restart; the running config keeps their old values.
	RestartNeeded []string `json:"restart_needed,omitempty"`
	// Errors are the file's problems (FILE:LINE:COL: message) of a
	// refused reload, or what failed to apply.
	Errors []string `json:"errors,omitempty"`
}

// reloads counts the reloads and keeps the last outcome; metrics and
// /readyz read it from their goroutines.
type reloads struct {
	mu                       sync.Mutex
	last                     *reloadOutcome
	applied, failed, refused uint64
	lastSuccess              time.Time
}

// started records the config applied at start.
func (r *reloads) started(t time.Time) {
	r.mu.Lock()
	r.lastSuccess = t
	r.mu.Unlock()
}

func (r *reloads) record(o reloadOutcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = &o
	switch o.Result {
	case reloadApplied:
		r.applied++
		r.lastSuccess = o.At
	case reloadFailed:
		r.failed++
	default:
		r.refused++
	}
}

// metrics is the edged_config_* metrics' source.
func (r *reloads) metrics() metrics.Reloads {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := metrics.Reloads{Applied: r.applied, Failed: r.failed, Refused: r.refused, LastSuccess: r.lastSuccess, LastSuccessful: true}
	if r.last != nil {
		m.LastSuccessful = r.last.Result == reloadApplied
		m.RestartNeeded = len(r.last.RestartNeeded) > 0
	}
	return m
}

// lastOutcome is the last reload's outcome, nil before the first.
func (r *reloads) lastOutcome() *reloadOutcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// reload handles one SIGHUP: it tells systemd it is reloading
// (notifyReloading), reads the file, applies it, logs the outcome in one
// line and tells systemd it is done, whatever the result, with the
// outcome in STATUS=. A stop that comes while the file is read (a slow
// disk) drops the reload: nothing changes and systemd hears nothing
// more; once the reload applies, the stop waits for it (d.gate).
func (d *daemon) reload(path string) {
	d.gate.notify(notifyReloading)
	file, err := loadConfig(path)
	if !d.gate.enter() {
		d.log.Info("config reload dropped: edged is stopping")
		return
	}
	defer d.gate.leave()
	o := d.applyReload(file, err)
	d.reloads.record(o)
	d.logReload(o)
	status := d.health.Status()
	if o.Result != reloadApplied {
		why := o.Result
		if len(o.Errors) > 0 {
			why += ": " + o.Errors[0]
		}
		status = "reload " + why + "; " + status
	}
	d.gate.notify(func() { notifyReloaded(status) })
}

func (d *daemon) logReload(o reloadOutcome) {
	changes := o.Changes
	if len(changes) == 0 {
		changes = []string{"none"}
	}
	switch o.Result {
	case reloadRefused:
		d.log.Error("config reload refused, the running config is kept", "result", o.Result, "error", strings.Join(o.Errors, "\n"))
	case reloadFailed:
		d.log.Error("config reload applied in part", "result", o.Result, "changes", changes, "restart_needed", o.RestartNeeded, "error", strings.Join(o.Errors, "\n"))
	default:
		level := slog.LevelInfo
		if len(o.RestartNeeded) > 0 {
			level = slog.LevelWarn
		}
		d.log.Log(context.Background(), level, "config reloaded", "result", o.Result, "changes", changes, "restart_needed", o.RestartNeeded)
	}
}

// applyReload applies what changed from the running config to file,
// the config file as loaded (err: its problems, which refuse it).
func (d *daemon) applyReload(file *configs.Config, err error) reloadOutcome {
	o := reloadOutcome{At: time.Now()}
	if err != nil {
		o.Result = reloadRefused
		o.Errors = strings.Split(err.Error(), "\n")
		return o
	}
	old := d.cfg
	diff := diffConfigs(old, file)
	run := runningConfig(old, file)
	if keys := keepStartedOpts(d.env, old, run); len(keys) > 0 {
		diff.restart = append(diff.restart, keys...)
		diff.actuatorsAdded, diff.actuatorsRemoved, diff.actuatorsChanged = diffByID(old.Actuators, run.Actuators, actuatorID)
	}
	o.RestartNeeded = diff.restart
	var errs []error

	// What can fail without side effects first, so a failure refuses the
	// reload with nothing changed: opening the added sensors, and the
	// accounts (a password_hash_file is read now).
	opened := map[string]sensors.Sensor{}
	refuse := func(err error) reloadOutcome {
		for _, s := range opened {
			_ = s.Halt()
		}
		o.Result, o.Changes, o.Errors = reloadRefused, nil, strings.Split(err.Error(), "\n")
		return o
	}
	for _, id := range diff.sensorsAdded {
		sc := sensorConfig(run, id)
		s, err := drivers.Default.OpenSensor(d.env, sc.Driver, sc.ID, sc.Opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		opened[id] = s
	}
	if len(errs) > 0 {
		return refuse(fmt.Errorf("%d added sensors did not open, nothing changed:\n%w", len(errs), errors.Join(errs...)))
	}
	// A password_hash_file is read again at every reload: its content may
	// have changed under the same name.
	if diff.users || slices.ContainsFunc(run.Users, func(u localbroker.User) bool { return u.PasswordHashFile != "" }) {
		if err := d.broker.SetAccounts(run.Broker); err != nil {
			return refuse(err)
		}
		if diff.users {
			o.Changes = append(o.Changes, "users")
			if d.web != nil {
				d.web.EndSessions() // a session keeps its login's identity
			}
		}
	}
	if diff.forward {
		if err := d.uplink.SetForward(run.Uplink.Forward); err != nil {
			return refuse(err) // validated by the loader: not expected
		}
		o.Changes = append(o.Changes, "uplink.forward")
	}

	hassBefore := d.hass.gateway(old)
	// Sensors: the removed and changed ones stop (and say offline), then
	// the changed ones open again and the added ones start. The others
	// are not touched.
	for _, id := range slices.Concat(diff.sensorsRemoved, diff.sensorsChanged) {
		d.stopSensor(sensorConfig(old, id))
	}
	for _, id := range diff.sensorsChanged {
		sc := sensorConfig(run, id)
		s, err := drivers.Default.OpenSensor(d.env, sc.Driver, sc.ID, sc.Opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		opened[id] = s
	}
	for _, id := range slices.Concat(diff.sensorsChanged, diff.sensorsAdded) {
		s := opened[id]
		if s == nil {
			continue // did not open: reported
		}
		sc := sensorConfig(run, id)
		if err := d.poller.Add(id, s, sc.PollOpts); err != nil {
			errs = append(errs, err)
			_ = s.Halt()
			continue
		}
		d.sensors[id] = s
	}
	// A sensor that did not open is left out of the running config, so
	// the next reload tries it again.
	run.Sensors = slices.DeleteFunc(slices.Clone(run.Sensors), func(sc configs.Sensor) bool { return d.sensors[sc.ID] == nil })
	for _, c := range []struct {
		what string
		ids  []string
	}{{"added", diff.sensorsAdded}, {"removed", diff.sensorsRemoved}, {"changed (restarted)", diff.sensorsChanged}} {
		for _, id := range c.ids {
			if c.what == "removed" || d.sensors[id] != nil {
				o.Changes = append(o.Changes, "sensor "+id+" "+c.what)
			}
		}
	}
	o.Changes = append(o.Changes, d.applyControl(old, run, diff, &errs)...)
	if d.web != nil {
		d.web.SetSensors(d.sensorInfos(run))
	}
	if d.readings != nil {
		d.readings.Set(d.readingTable(run))
		d.ctlMetrics.Set(controllerIDs(run))
	}
	if !reflect.DeepEqual(hassBefore, d.hass.gateway(run)) || !reflect.DeepEqual(old.HomeAssistant, run.HomeAssistant) {
		if err := d.hass.apply(run); err != nil {
			errs = append(errs, fmt.Errorf("home assistant: %w", err))
		} else {
			o.Changes = append(o.Changes, "homeassistant")
		}
	}
	d.cfg = run
	d.health.arm()
	o.Result = reloadApplied
	if len(errs) > 0 {
		o.Result = reloadFailed
		o.Errors = strings.Split(errors.Join(errs...).Error(), "\n")
	}
	return o
}

// applyControl applies the actuator and controller changes: the loops
// that change, go, or drive an actuator that changes or goes stop first
// (each puts its actuator in the safe state and saves its state file),
// then those actuators are halted (safe, released) and the new ones
// opened, then the loops start again (restoring the saved state). The
// other loops run on. An actuator that does not open is left out of run,
// with the loops that drive it, so the next reload tries them again.
func (d *daemon) applyControl(old, run *configs.Config, diff configDiff, errs *[]error) (changes []string) {
	goneActs := slices.Concat(diff.actuatorsRemoved, diff.actuatorsChanged)
	stop := slices.Concat(diff.controllersRemoved, diff.controllersChanged)
	for _, c := range old.Controllers {
		if slices.Contains(goneActs, c.Output) && !slices.Contains(stop, c.ID) {
			stop = append(stop, c.ID)
		}
	}
	if len(stop) == 0 && len(goneActs) == 0 && len(diff.actuatorsAdded) == 0 && len(diff.controllersAdded) == 0 {
		return nil
	}
	d.control.stop(stop)
	for _, id := range goneActs {
		d.mu.Lock()
		a := d.actuators[id]
		delete(d.actuators, id)
		d.mu.Unlock()
		if err := a.Halt(); err != nil {
			*errs = append(*errs, fmt.Errorf("actuator %q: %w", id, err))
		}
	}
	for _, id := range slices.Concat(diff.actuatorsChanged, diff.actuatorsAdded) {
		i := slices.IndexFunc(run.Actuators, func(a configs.Actuator) bool { return a.ID == id })
		ac := run.Actuators[i]
		a, err := drivers.Default.OpenActuator(d.env, ac.Driver, ac.ID, ac.Opts)
		if err != nil {
			*errs = append(*errs, err)
			continue
		}
		d.mu.Lock()
		if d.halted { // edged is exiting past its stop budget
			d.mu.Unlock()
			_ = a.Halt() // to its safe state, as haltActuatorsNow left the others
			*errs = append(*errs, fmt.Errorf("actuator %q: not opened: edged is exiting", id))
			continue
		}
		d.actuators[id] = a
		d.mu.Unlock()
	}
	start := slices.Concat(diff.controllersAdded, stop)
	for _, c := range run.Controllers {
		if !slices.Contains(start, c.ID) {
			continue
		}
		a := d.actuators[c.Output]
		if a == nil {
			*errs = append(*errs, fmt.Errorf("controller %q: actuator %q did not open", c.ID, c.Output))
			continue
		}
		l, err := control.New(c, a, d.clock, d.broker, run.Device.TopicPrefix, run.StateDir, d.log)
		if err != nil {
			*errs = append(*errs, err)
			continue
		}
		d.control.start(d.ctx, c.ID, l)
	}
	d.control.publish()
	d.control.inbox.SetLoops(d.control.loopMap())
	run.Actuators = slices.DeleteFunc(slices.Clone(run.Actuators), func(a configs.Actuator) bool { return d.actuators[a.ID] == nil })
	run.Controllers = slices.DeleteFunc(slices.Clone(run.Controllers), func(c control.Opts) bool { return d.control.loop(c.ID) == nil })
	d.mu.Lock()
	d.ctlOpts, d.actOpts = run.Controllers, run.Actuators
	d.mu.Unlock()
	for _, c := range []struct {
		kind, what string
		ids        []string
		up         func(string) bool
	}{
		{"actuator", "added", diff.actuatorsAdded, func(id string) bool { return d.actuators[id] != nil }},
		{"actuator", "removed", diff.actuatorsRemoved, nil},
		{"actuator", "changed (reopened)", diff.actuatorsChanged, func(id string) bool { return d.actuators[id] != nil }},
		{"controller", "added", diff.controllersAdded, func(id string) bool { return d.control.loop(id) != nil }},
		{"controller", "removed", diff.controllersRemoved, nil},
		{"controller", "restarted", slices.DeleteFunc(slices.Clone(stop), func(id string) bool { return slices.Contains(diff.controllersRemoved, id) }), func(id string) bool { return d.control.loop(id) != nil }},
	} {
		for _, id := range c.ids {
			if c.up == nil || c.up(id) {
				changes = append(changes, c.kind+" "+id+" "+c.what)
			}
		}
	}
	return changes
}

// stopSensor stops sampling sc, says it is offline (through the reading
// queue, after its last reading) and halts it. A driver that ignores its
// context gets the time a sample may take; after that the reload goes on
// and the sensor is halted when its read returns.
func (d *daemon) stopSensor(sc configs.Sensor) {
	s := d.sensors[sc.ID]
	delete(d.sensors, sc.ID)
	done, err := d.poller.Remove(sc.ID)
	if err != nil {
		d.log.Error("cannot stop a sensor the reload removes", "sensor", sc.ID, "error", err)
		return
	}
	finish := func() {
		d.queue.Availability(sc.ID, false)
		if err := s.Halt(); err != nil {
			d.log.Warn("a sensor the reload removed did not halt", "sensor", sc.ID, "error", err)
		}
	}
	t := time.NewTimer(sc.EffectiveTimeout() + time.Second)
	defer t.Stop()
	select {
	case <-done:
		finish()
	case <-t.C:
		d.log.Warn("a sensor the reload removed ignores its read timeout; halting it when the read returns", "sensor", sc.ID)
		// Offline now, not when the read returns: by then a reload may
		// have started a sensor under the same id, which must not be
		// said offline. The stopped worker makes no Sink call that says
		// online (its context is done).
		d.queue.Availability(sc.ID, false)
		d.wg.Add(1) // stop waits for it: the Poller's Run does, too
		go func() {
			defer d.wg.Done()
			<-done
			if err := s.Halt(); err != nil {
				d.log.Warn("a sensor the reload removed did not halt", "sensor", sc.ID, "error", err)
			}
		}()
	}
}

func sensorConfig(cfg *configs.Config, id string) configs.Sensor {
	i := slices.IndexFunc(cfg.Sensors, func(sc configs.Sensor) bool { return sc.ID == id })
	return cfg.Sensors[i]
}

// configDiff is what a reload changes.
type configDiff struct {
	// Sensors by id; a changed sensor (any key of its entry differs) is
	// stopped and started again, an unchanged one is left alone.
	sensorsAdded, sensorsRemoved, sensorsChanged []string
	// Actuators and controllers likewise.
	actuatorsAdded, actuatorsRemoved, actuatorsChanged       []string
	controllersAdded, controllersRemoved, controllersChanged []string
	users                                                    bool // users, broker.allow_anonymous, broker.anonymous_role
	forward                                                  bool // uplink.forward
	// restart are the config keys that changed and take a restart.
	restart []string
}

// diffConfigs compares the running config with the file's.
func diffConfigs(old, cur *configs.Config) configDiff {
	var d configDiff
	d.sensorsAdded, d.sensorsRemoved, d.sensorsChanged = diffByID(old.Sensors, cur.Sensors, func(s configs.Sensor) string { return s.ID })
	d.actuatorsAdded, d.actuatorsRemoved, d.actuatorsChanged = diffByID(old.Actuators, cur.Actuators, actuatorID)
	d.controllersAdded, d.controllersRemoved, d.controllersChanged = diffByID(old.Controllers, cur.Controllers, func(c control.Opts) string { return c.ID })
	d.users = !reflect.DeepEqual(old.Users, cur.Users) ||
		old.Broker.AllowAnonymous != cur.Broker.AllowAnonymous || old.Broker.AnonymousRole != cur.Broker.AnonymousRole

	if old.Device.ID != cur.Device.ID {
		d.restart = append(d.restart, "device.id")
	}
	if old.Device.TopicPrefix != cur.Device.TopicPrefix {
		d.restart = append(d.restart, "device.topic_prefix")
	}
	if old.StateDir != cur.StateDir {
		d.restart = append(d.restart, "state_dir")
	}
	d.restart = append(d.restart, changedKeys("log", old.Log, cur.Log)...)
	d.restart = append(d.restart, changedKeys("clock", old.Clock, cur.Clock)...)
	d.restart = append(d.restart, changedKeys("broker", old.Broker, cur.Broker, "allow_anonymous", "anonymous_role")...)
	d.restart = append(d.restart, changedKeys("http", old.HTTP, cur.HTTP)...)
	switch {
	case (old.Uplink == nil) != (cur.Uplink == nil):
		d.restart = append(d.restart, "uplink")
	case old.Uplink != nil:
		d.forward = !reflect.DeepEqual(old.Uplink.Forward, cur.Uplink.Forward)
		d.restart = append(d.restart, changedKeys("uplink", *old.Uplink, *cur.Uplink, "forward")...)
	}
	return d
}

func actuatorID(a configs.Actuator) string { return a.ID }

// keepStartedOpts gives run's actuators the options that a device
// started before fixed (drivers.RunningOpts: a PCA9685's chip-wide
// frequency), and returns those keys, as actuators[ID].KEY, to report
// as needing a restart. Without it such a channel would not open again,
// and every later reload would fail on it until a restart.
func keepStartedOpts(env *drivers.Env, old, run *configs.Config) []string {
	var keys []string
	acts := slices.Clone(run.Actuators)
	for i, a := range acts {
		var was any
		if j := slices.IndexFunc(old.Actuators, func(o configs.Actuator) bool { return o.ID == a.ID }); j >= 0 && old.Actuators[j].Driver == a.Driver {
			was = old.Actuators[j].Opts
		}
		opts, kept := drivers.RunningOpts(env, a.Driver, a.Opts, was)
		for _, k := range kept {
			keys = append(keys, "actuators["+a.ID+"]."+k)
		}
		acts[i].Opts = opts
	}
	if len(keys) > 0 {
		run.Actuators = acts
	}
	return keys
}

// diffByID compares two lists of entries by id: an entry whose id is in
// both but whose content differs in any key is changed.
func diffByID[T any](old, cur []T, id func(T) string) (added, removed, changed []string) {
	was := map[string]T{}
	for _, e := range old {
		was[id(e)] = e
	}
	for _, e := range cur {
		o, ok := was[id(e)]
		switch {
		case !ok:
			added = append(added, id(e))
		case !reflect.DeepEqual(o, e):
			changed = append(changed, id(e))
		}
		delete(was, id(e))
	}
	for _, e := range old {
		if _, gone := was[id(e)]; gone {
			removed = append(removed, id(e))
		}
	}
	return added, removed, changed
}

// changedKeys names the fields of two structs of one type that differ,
// as section.key by their yaml names; fields named in live, and those
// without a yaml name, are left out.
func changedKeys(section string, a, b any, live ...string) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range va.NumField() {
		name, _, _ := strings.Cut(va.Type().Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" || slices.Contains(live, name) {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, section+"."+name)
		}
	}
	return out
}

// runningConfig is what runs after a reload from old to cur: cur, with
// the keys that take a restart as they were in old.
func runningConfig(old, cur *configs.Config) *configs.Config {
	r := *cur
	r.Device.ID, r.Device.TopicPrefix = old.Device.ID, old.Device.TopicPrefix
	r.StateDir, r.Log, r.HTTP, r.Clock = old.StateDir, old.Log, old.HTTP, old.Clock
	b := old.Broker
	b.Users, b.AllowAnonymous, b.AnonymousRole = cur.Broker.Users, cur.Broker.AllowAnonymous, cur.Broker.AnonymousRole
	r.Broker = b
	r.Uplink = old.Uplink
	if old.Uplink != nil && cur.Uplink != nil {
		u := *old.Uplink
		u.Forward = cur.Uplink.Forward
		r.Uplink = &u
	}
	return &r
}
