package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/edged/edged/cmd/edged/metrics"
	"github.com/edged/edged/cmd/edged/web"
	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/pipeline/control"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/wallclock"
	"github.com/edged/edged/uplink"
)

// stopBudget is how long a clean stop may take before edged gives up on
// the stragglers; systemd's TimeoutStopSec (and the contract) is 10 s.
const stopBudget = 8 * time.Second

func cmdRun(args []string, stderr io.Writer) error {
	// --cpuprofile is a development aid, written on a clean stop; it
	// works only in a binary built with -tags cpuprofile.
	var profile string
	path, rest, err := configFlag("run", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&profile, "cpuprofile", "", "write a CPU profile to `file` on a clean stop (binary built with -tags cpuprofile)")
	})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return &exitError{code: 2, err: fmt.Errorf("edged run: unexpected arguments %q", rest)}
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("edged: %s: not starting, the config has problems:\n%w", path, err)}
	}
	log := newLogger(cfg.Log, stderr)
	log.Info("starting", "version", buildVersion(), "config", path, "device", cfg.Device.ID, "prefix", cfg.Device.TopicPrefix)

	// Signals are caught from here on, so a stop request during start-up
	// is served by the clean stop below once start returns.
	// SIGHUPs wait in a channel of their own that holds one: several sent
	// during a slow reload make one more reload, and can never crowd out
	// a stop signal (os/signal drops what a full channel cannot take).
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if profile != "" {
		stopProfile, err := startCPUProfile(profile)
		if err != nil {
			return &exitError{code: 1, err: fmt.Errorf("edged run: --cpuprofile: %w", err)}
		}
		defer stopProfile(log)
	}
	d, err := start(cfg, log)
	if err != nil {
		log.Error("not started", "error", err)
		return &exitError{code: 1}
	}
	sdNotify("READY=1")
	armCrash() // a failpoint build's EDGED_CRASH_AFTER; nothing in a release build
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		d.health.watch(watchCtx, log)
	}()

	s, _ := serveSignals(sig, hup, func() { d.reload(path) })
	log.Info("stopping", "signal", s.String())
	stopWatch()
	<-watched                  // no WATCHDOG=1 or STATUS= after STOPPING=1
	applying := d.gate.close() // nor a reload's RELOADING=1 or READY=1
	sdNotify("STOPPING=1\nSTATUS=stopping: actuators to their safe state, status offline, flushing the uplink")
	go func() {
		// A second SIGTERM/SIGINT means "now": outputs safe, then exit.
		for s := range sig {
			log.Error("second stop signal: exiting at once", "signal", s.String())
			_ = d.haltActuatorsNow()
			os.Exit(1)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), stopBudget)
	defer cancel()
	if applying != nil {
		// The stop must not run on a half-applied config: it waits for
		// the reload, within the one stop budget.
		log.Info("stopping once the reload in progress has ended")
		select {
		case <-applying:
		case <-ctx.Done():
			log.Error("the reload in progress did not end within the stop budget: outputs to their safe state, exiting", "error", ctx.Err())
			_ = d.haltActuatorsNow()
			return &exitError{code: 1}
		}
	}
	if err := d.stop(ctx); err != nil {
		log.Error("unclean stop", "error", err)
		return &exitError{code: 1}
	}
	log.Info("stopped")
	return nil
}

func newLogger(c configs.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by configs
	o := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// daemon is everything `edged run` opened, in the order it must close.
type daemon struct {
	log       *slog.Logger
	env       *drivers.Env
	sensors   map[string]sensors.Sensor // by id
	actuators map[string]sensors.Actuator
	broker    *localbroker.Broker
	uplink    *uplink.Uplink
	pipe      *pipeline.Pipeline
	queue     *pipeline.Queue
	poller    *sensors.Poller
	http      *http.Server
	// httpRefused counts the connections the HTTP listeners' gates
	// refused (set before they serve, read by /metrics).
	httpRefused func() localbroker.AcceptRefusals
	web         *web.Server
	readings    *metrics.Readings // nil without HTTP
	// ctlMetrics is the controllers' table of /metrics; nil without HTTP.
	ctlMetrics *metrics.Controllers
	control    *controlRoom
	health     *probes
	clock      sensors.Clock    // what sampling and the uplink read time from
	wall       *wallclock.Clock // whether its wall time is trusted
	hass       *hassRoom

	// mu guards actuators and control.loops, which a reload changes,
	// for the HTTP API's goroutines.
	mu      sync.RWMutex
	halted  bool               // haltActuatorsNow ran: nothing opens or starts any more
	ctlOpts []control.Opts     // the running controllers, for the API
	actOpts []configs.Actuator // the opened actuators' entries, for the API

	// cfg is the running config: the file as last applied, with the
	// sections a reload cannot change kept as they were at start. Start,
	// then each reload in turn, then stop use it; gate orders a reload
	// with the stop.
	cfg     *configs.Config
	reloads reloads
	gate    reloadGate
	ctx     context.Context // ends at stop; what a reload starts runs under it

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// start opens and starts everything. On error, whatever was opened is
// closed again (actuators back in their safe state): a bad config or a
// missing device never half-starts the daemon.
func start(cfg *configs.Config, log *slog.Logger) (_ *daemon, err error) {
	d := &daemon{log: log, env: drivers.NewEnv(log.With("component", "drivers")), actuators: map[string]sensors.Actuator{},
		sensors: map[string]sensors.Sensor{}, cfg: cfg}
	d.health = &probes{d: d}
	if cfg.Uplink != nil {
		d.health.maxOldest = cfg.Uplink.MaxOldestUnsent
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.ctx, d.cancel = ctx, cancel
	defer func() {
		if err != nil {
			d.abort()
		}
	}()
	// Outputs first, so they are in their safe state as early as possible.
	// Every device is tried, so a user wiring a Pi sees all that is
	// missing in one go, as `edged validate` shows all config problems.
	var openErrs []error
	d.actOpts, d.ctlOpts = cfg.Actuators, cfg.Controllers
	for _, ac := range cfg.Actuators {
		a, err := drivers.Default.OpenActuator(d.env, ac.Driver, ac.ID, ac.Opts)
		if err != nil {
			openErrs = append(openErrs, err)
			continue
		}
		d.actuators[ac.ID] = a
	}
	for _, sc := range cfg.Sensors {
		s, err := drivers.Default.OpenSensor(d.env, sc.Driver, sc.ID, sc.Opts)
		if err != nil {
			openErrs = append(openErrs, err)
			continue
		}
		d.sensors[sc.ID] = s
	}
	if len(openErrs) > 0 {
		return nil, fmt.Errorf("%d of %d devices did not open:\n%w", len(openErrs), len(cfg.Actuators)+len(cfg.Sensors), errors.Join(openErrs...))
	}

	if d.clock, d.wall, err = openClock(cfg.Clock.Trust, log); err != nil {
		return nil, err
	}
	d.runClock(ctx)
	prefix := cfg.Device.TopicPrefix
	if d.broker, err = localbroker.New(cfg.Broker, prefix, log.With("component", "broker")); err != nil {
		return nil, err
	}
	if d.uplink, err = openUplink(cfg, d.broker, d.clock, d.wall, log); err != nil {
		return nil, err
	}
	if err := d.broker.Start(); err != nil {
		return nil, err
	}
	d.pipe = pipeline.New(prefix, d.broker, log)
	d.pipe.SetTrust(d.wall)
	if err := d.pipe.Status(true); err != nil {
		return nil, fmt.Errorf("publish status: %w", err)
	}
	if cfg.HTTP.Listen != "" || cfg.HTTP.ListenTLS != "" {
		// Before readings flow, so the API's history and events miss none.
		if err := d.newWeb(cfg); err != nil {
			return nil, err
		}
	}
	// The Poller hands readings to the pipeline through a queue: a
	// publish waits for the uplink's disk buffer, and sampling (and the
	// control loops' input) must not.
	d.queue = pipeline.NewQueue(d.pipe, sinkQueueSize, log)
	d.poller = sensors.NewPoller(d.clock, d.queue, log)
	for _, sc := range cfg.Sensors {
		if err := d.poller.Add(sc.ID, d.sensors[sc.ID], sc.PollOpts); err != nil {
			return nil, err
		}
	}
	if err := d.startControllers(ctx, cfg); err != nil {
		return nil, err
	}
	var httpLns []net.Listener
	if cfg.HTTP.Listen != "" || cfg.HTTP.ListenTLS != "" {
		lns, hosts, refused, err := listenHTTP(cfg.HTTP, len(cfg.Users), log)
		if err != nil {
			return nil, err
		}
		d.httpRefused = refused
		d.http = d.web.HTTPServer(hosts)
		// A client's failed TLS handshake is its mistake: debug, not a
		// line on stderr per attempt.
		d.http.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
		for _, ln := range lns {
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				if err := d.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					log.Error("http server stopped", "error", err)
				}
			}()
			log.Info("http listening", "addr", ln.Addr().String())
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.web.Run(ctx)
		}()
		httpLns = lns
	}
	// After the HTTP listeners, whose bound address is the dashboard's
	// link in Home Assistant.
	if err := d.startHomeAssistant(cfg, httpLns); err != nil {
		return nil, err
	}
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		d.queue.Run()
	}()
	go func() {
		defer d.wg.Done()
		if err := d.poller.Run(ctx); err != nil {
			log.Error("poller stopped", "error", err)
		}
		d.queue.Close() // the queue delivers what it holds, then ends
	}()
	d.health.arm()
	d.health.started.Store(true)
	d.reloads.started(time.Now())
	log.Info("running", "sensors", len(d.sensors), "actuators", len(d.actuators), "controllers", len(cfg.Controllers))
	return d, nil
}

// abort undoes a start that failed half-way.
func (d *daemon) abort() {
	d.cancel()
	if d.http != nil {
		_ = d.http.Close()
	}
	d.wg.Wait()
	if d.broker != nil {
		_ = d.broker.Close()
	}
	_ = closeUplink(context.Background(), d.uplink)
	_ = d.closeDevices()
}

// stop stops sampling and the loops, puts the outputs in their safe
// state, tells the LAN the gateway is offline, closes the broker and
// flushes the uplink, within ctx. The outputs go safe before anything
// network-related, so a slow broker or cloud never delays them.
func (d *daemon) stop(ctx context.Context) error {
	var errs []error
	// Sampling, the loops and HTTP get most of the budget; the rest is
	// kept for the steps below, which must happen even if a driver hangs.
	waitCtx, cancel := context.WithTimeout(ctx, stopWaitBudget)
	defer cancel()
	done := make(chan struct{})
	go func() {
		d.cancel()
		if d.http != nil {
			_ = d.http.Shutdown(waitCtx)
		}
		d.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-waitCtx.Done():
		errs = append(errs, fmt.Errorf("sampling did not stop in time (a driver is stuck): %w", waitCtx.Err()))
	}
	// Halted actuators refuse any late Set from a loop that is still
	// winding down, so the safe state sticks.
	errs = append(errs, d.haltActuators())
	if err := d.pipe.Status(false); err != nil {
		errs = append(errs, fmt.Errorf("publish status offline: %w", err))
	}
	// Give subscribers a moment to receive "offline" before they are
	// disconnected: mochi writes to clients from their own goroutines.
	time.Sleep(100 * time.Millisecond)
	errs = append(errs, d.broker.Close())
	errs = append(errs, closeUplink(ctx, d.uplink))
	errs = append(errs, d.haltSensors())
	return errors.Join(errs...)
}

// sinkQueueSize bounds the readings waiting for the broker: minutes of
// a stalled disk at the rates of a greenhouse (the Pi example queues 4
// readings a minute; 20 sensors at 1 Hz fill it in 25 s).
const sinkQueueSize = 1024

// stopWaitBudget is how long stop waits for sampling and the loops to end
// before it halts the outputs regardless; the rest of stopBudget is for
// the broker and the uplink.
const stopWaitBudget = 5 * time.Second

// closeDevices puts every actuator in its safe state and halts every
// device.
func (d *daemon) closeDevices() error {
	return errors.Join(d.haltActuators(), d.haltSensors())
}

// haltActuatorsNow is haltActuators while a reload may still change the
// actuators (an exit that does not wait for it): after it, an actuator
// the reload opens is halted at once, and no control loop starts.
func (d *daemon) haltActuatorsNow() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.halted = true
	return d.haltActuators()
}

// haltActuators puts every actuator in its safe state and releases it.
// It is safe to call more than once.
func (d *daemon) haltActuators() error {
	var errs []error
	for id, a := range d.actuators {
		if err := a.Halt(); err != nil {
			errs = append(errs, fmt.Errorf("actuator %q: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// haltSensors halts the sensors and releases shared resources (buses).
func (d *daemon) haltSensors() error {
	var errs []error
	for _, s := range d.sensors {
		if err := s.Halt(); err != nil {
			errs = append(errs, fmt.Errorf("sensor %s: %w", s, err))
		}
	}
	errs = append(errs, d.env.Close())
	return errors.Join(errs...)
}
