package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/liveness"
	"github.com/edged/edged/sensors/ratelog"
	"github.com/edged/edged/sensors/statefile"
	"github.com/edged/edged/sensors/topics"
)

// Publisher takes the loop's retained state messages; the local broker
// implements it.
type Publisher interface {
	Publish(topic string, payload []byte, retain bool) error
}

// Mode is what drives the output.
type Mode string

// The modes. Commands switch between them.
const (
	ModeAuto   Mode = "auto"   // the PID drives the output from the input
	ModeManual Mode = "manual" // an operator's fixed output; input faults do not stop it
	ModeOff    Mode = "off"    // the output is in its safe state
)

// ErrStarted is returned by a second call of Run.
var ErrStarted = errors.New("control: loop already started")

// minPublishInterval rate-limits state messages: at most one per interval,
// always the latest state.
const minPublishInterval = time.Second

// Fault texts that tests and dashboards can rely on as prefixes.
const (
	faultNoInput = "input: no reading yet"
	faultStale   = "input stale"
	faultOffline = "input offline"
	faultOutput  = "output"
	faultSafe    = "safe state"
)

// event is what Input and Availability hand to the loop goroutine.
type event struct {
	reading sensors.Reading
	avail   bool // an availability change, not a reading
	online  bool
}

// Loop runs one controller: it feeds fresh readings of its input to a PID
// controller and drives its actuator with the result, puts the actuator
// in its safe state when the input goes stale or the actuator fails, takes
// commands, and publishes its state.
//
// Only the loop's own goroutine (Run) and Command, under the loop's lock,
// touch the actuator.
type Loop struct {
	beat       *liveness.Beat
	opts       Opts
	sensor     string
	quantity   sensors.Quantity
	out        sensors.Actuator
	clock      sensors.Clock
	pub        Publisher
	stateTopic string
	cmdTopic   string
	statePath  string // "" when there is no state dir
	log        *slog.Logger

	events chan event    // newest wins
	kick   chan struct{} // a command changed the state
	pubq   chan []byte   // states for publishLoop; newest wins
	saveq  chan struct{} // wakes saveLoop: the state file is due

	started atomic.Bool
	changes *ratelog.Limiter // "setpoint changed" and the like, during a burst of commands

	// saveMu serialises writes of the state file, each with a snapshot
	// taken under it, so the file always ends at the latest state.
	saveMu      sync.Mutex
	saveFailing bool          // under saveMu: the last write failed
	saves       atomic.Uint64 // state file writes that succeeded
	// writeFile writes the state file: statefile.Write, or in tests a
	// write that stalls as a stalled SD card does.
	writeFile func(path string, data []byte) error

	mu sync.Mutex
	// What commands set; spSet and modeSet say which were set by command
	// (and are persisted) rather than taken from the config.
	setpoint float64
	mode     Mode
	manual   float64 // output in manual mode
	spSet    bool
	modeSet  bool
	dirty    bool // a command changed them since the state file was written

	pid        regulator // the PID controller, or hysteresis for on/off control
	running    bool      // Run is driving the actuator
	input      float64   // latest fresh reading
	hasInput   bool      // input holds a reading
	lastTime   time.Time // time of the latest fresh reading
	restart    bool      // the next PID update starts from dt = 0
	inputFault string    // why the input is not usable; "" when fresh
	setErr     string    // the last actuator Set failed
	safeErr    string    // the last actuator Safe failed
	isSafe     bool      // the actuator was put in its safe state and not set since
	applied    float64   // level last set successfully
	output     float64   // the duty cycle the loop applies (0 when safe)

	tune tuning // runtime gains and the saved integral

	cycleTimer sensors.Timer // the next decision of sw
	sw         *switcher     // protects a switched output; nil passes the level through

	guard guard // runaway guards and the failure action (guard.go)

	// Owned by the Run goroutine.
	lastPub  time.Time
	lastBody []byte
	pubArmed bool
}

// New returns the loop for one controller. out is the actuator it drives,
// pub takes its state messages on PREFIX/control/<id>/state of the topic
// tree under prefix (nil publishes nothing), and stateDir holds the
// setpoint, mode and gains set by commands and the PID's integral across
// restarts ("" keeps them in memory only). A corrupt or unreadable state
// file is logged and ignored.
func New(opts Opts, out sensors.Actuator, clock sensors.Clock, pub Publisher, prefix string, stateDir string, log *slog.Logger) (*Loop, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("control: controller %q: %w", opts.ID, err)
	}
	if opts.ID == "" || opts.ID == "." || opts.ID == ".." || strings.ContainsAny(opts.ID, "/\\+#\x00") {
		return nil, fmt.Errorf("control: controller id %q is not usable as a topic level and file name", opts.ID)
	}
	if out == nil {
		return nil, fmt.Errorf("control: controller %q: no actuator", opts.ID)
	}
	if clock == nil {
		clock = sensors.SystemClock
	}
	log = sensors.LogOrDiscard(log)
	sensor, q, _ := opts.InputRef() // checked by Validate
	c, sw, err := newRegulator(opts, out)
	if err != nil {
		return nil, fmt.Errorf("control: controller %q: %w", opts.ID, err)
	}
	tree := topics.New(prefix)
	l := &Loop{
		beat:       liveness.New("control/" + opts.ID),
		opts:       opts,
		sensor:     sensor,
		quantity:   q,
		out:        out,
		clock:      clock,
		pub:        pub,
		stateTopic: tree.ControlState(opts.ID),
		cmdTopic:   tree.ControlSet(opts.ID),
		log:        log.With("component", "control", "controller", opts.ID),
		changes:    ratelog.New(time.Second, 3, clock),
		events:     make(chan event, 1),
		kick:       make(chan struct{}, 1),
		pubq:       make(chan []byte, 1),
		saveq:      make(chan struct{}, 1),
		writeFile:  statefile.Write,
		setpoint:   opts.Setpoint,
		mode:       ModeAuto,
		pid:        c,
		sw:         sw,
		inputFault: faultNoInput,
		restart:    true,
	}
	if stateDir != "" {
		l.statePath = filepath.Join(stateDir, "control", opts.ID+".json")
		l.restore()
	}
	return l, nil
}

// StateTopic is where the loop publishes its retained state.
func (l *Loop) StateTopic() string { return l.stateTopic }

// CommandTopic is where commands for the loop arrive; the caller
// subscribes to it and hands payloads to Command.
func (l *Loop) CommandTopic() string { return l.cmdTopic }

var _ sensors.SampleObserver = (*Loop)(nil)

// Sample takes a sample of the input from the Poller (see
// sensors.SampleObserver): edged feeds loops this way, so that the input
// is every good sample, before the rate filters, and never waits on the
// broker or its disk buffer. It is Input under the observer's name.
func (l *Loop) Sample(r sensors.Reading) { l.Input(r) }

// Input takes a reading. Readings of other sensors or quantities are
// ignored. It never blocks: when the loop is busy, a newer reading
// replaces one it has not taken yet.
func (l *Loop) Input(r sensors.Reading) {
	if r.Sensor != l.sensor || r.Quantity != l.quantity {
		return
	}
	l.send(event{reading: r})
}

// Availability takes a sensor's availability change from the Poller
// (see sensors.SampleObserver). An offline input puts an automatic
// loop's output in its safe state until a fresh reading arrives.
func (l *Loop) Availability(sensor string, online bool) {
	if sensor != l.sensor {
		return
	}
	l.send(event{avail: true, online: online})
}

// send hands ev to the loop, replacing an event it has not taken yet. The
// newest event carries all that matters: a reading after an offline
// report means the sensor works again, an offline report after a reading
// means it does not.
func (l *Loop) send(ev event) {
	for {
		select {
		case l.events <- ev:
			return
		default:
		}
		select {
		case <-l.events:
		default:
		}
	}
}

// Heartbeat is the loop's beat, "control/<id>": busy while it handles an
// event or a timer, idle while it waits for one.
func (l *Loop) Heartbeat() *liveness.Beat { return l.beat }

// Run drives the loop until ctx is done, then puts the actuator in its
// safe state and returns nil. It may be called once.
func (l *Loop) Run(ctx context.Context) error {
	if !l.started.CompareAndSwap(false, true) {
		return ErrStarted
	}
	stale := l.clock.NewTimer(l.opts.StaleAfter)
	pubTimer := l.clock.NewTimer(time.Hour)
	pubTimer.Stop()
	l.mu.Lock()
	l.cycleTimer = l.clock.NewTimer(time.Hour)
	l.cycleTimer.Stop()
	l.guard.timer = l.clock.NewTimer(time.Hour)
	l.guard.timer.Stop()
	l.running = true
	l.stepLocked(l.clock.Now())
	l.mu.Unlock()
	pubDone := make(chan struct{})
	pubCtx, stopPub := context.WithCancel(ctx)
	go func() {
		defer close(pubDone)
		if l.pub != nil {
			l.publishLoop(pubCtx)
		}
	}()
	defer func() {
		// After the actuator is safe: a Publish stuck on the disk must
		// not delay that.
		stopPub()
		<-pubDone
	}()
	saveDone := make(chan struct{})
	saveCtx, stopSave := context.WithCancel(ctx)
	go func() {
		defer close(saveDone)
		l.saveLoop(saveCtx)
	}()
	defer func() {
		stale.Stop()
		pubTimer.Stop()
		l.mu.Lock()
		l.running = false
		l.abortAutotuneLocked("edged stopped")
		l.cycleTimer.Stop()
		l.guard.timer.Stop()
		if err := l.out.Safe(); err != nil {
			l.log.Error("actuator did not take its safe state on stop", "actuator", l.out.String(), "error", err)
		}
		l.isSafe = true
		l.integralDueLocked(l.clock.Now(), true)
		l.mu.Unlock()
		// What the last commands set, unless it is saved already, once
		// a write in progress has ended: the actuator is safe already,
		// and edged's stop budget bounds the wait. Commands from now on
		// save themselves (running is false).
		stopSave()
		<-saveDone
		l.flush()
	}()
	l.publish(pubTimer)
	l.persist()

	handle := func(which int, ev event) {
		// A step sets the actuator and queues the state: milliseconds,
		// unless the output hangs (a wedged bus or GPIO write).
		l.beat.Expect(sensors.BeatSlack)
		defer l.beat.Idle()
		switch which {
		case 0:
			l.handleEvent(ev, stale)
		case 1:
			l.handleStale()
		case 2, 6:
			l.mu.Lock()
			l.stepLocked(l.clock.Now())
			l.mu.Unlock()
		case 3:
			l.pubArmed = false
		}
		l.publish(pubTimer)
		l.persist()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-l.events:
			handle(0, ev)
		case <-stale.C():
			handle(1, event{})
		case <-l.cycleTimer.C():
			handle(2, event{})
		case <-pubTimer.C():
			handle(3, event{})
		case <-l.kick:
			handle(4, event{})
		case <-l.guard.timer.C():
			handle(6, event{})
		}
	}
}

// handleEvent takes a reading or an availability change.
func (l *Loop) handleEvent(ev event, stale sensors.Timer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	if ev.avail {
		if ev.online {
			// Wait for a fresh reading before trusting the input again.
			return
		}
		l.setInputFaultLocked(fmt.Sprintf("%s: sensor %q reports offline", faultOffline, l.sensor))
		l.stepLocked(now)
		return
	}
	r := ev.reading
	if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) || now.Sub(r.Time) >= l.opts.StaleAfter {
		return // unusable, or already stale when it arrived
	}
	if !l.guardReadingLocked(now, r, stale) {
		return // implausible or stuck: the input fault says so
	}
	// dt comes from the readings' own timestamps, so it is the sampling
	// interval however late the reading reached the loop. A dt <= 0 (the
	// clock was set back) or longer than StaleAfter (set forward) makes
	// this reading a new starting point for the PID.
	dt := r.Time.Sub(l.lastTime)
	if l.restart || !l.hasInput || dt > l.opts.StaleAfter {
		dt = 0
	}
	l.input, l.hasInput, l.lastTime = r.Value, true, r.Time
	if l.inputFault != "" {
		if l.inputFault != faultNoInput {
			l.log.Info("input fresh again", "input", l.opts.Input)
		}
		l.inputFault = ""
	}
	l.restart = false
	l.cutoffReadingLocked(r.Value, true)
	stale.Reset(min(r.Time.Add(l.opts.StaleAfter).Sub(now), l.opts.StaleAfter))
	if l.tune.at != nil {
		l.autotuneLocked(now, r.Value) // may end the test
	}
	if l.mode == ModeAuto && l.tune.at == nil {
		l.pid.Update(l.setpoint, r.Value, dt)
	}
	l.stepLocked(now)
}

// handleStale runs when the stale timer fires: no fresh reading for
// StaleAfter. Every fresh reading re-arms the timer, and a re-armed timer
// never delivers an old firing, so a firing always means stale.
func (l *Loop) handleStale() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	if strings.HasPrefix(l.inputFault, faultOffline) {
		return // the offline report says more
	}
	l.setInputFaultLocked(fmt.Sprintf("%s: no reading of %s for %v", faultStale, l.opts.Input, l.opts.StaleAfter))
	l.stepLocked(now)
}

// setInputFaultLocked records why the input is unusable, logging the
// change once.
func (l *Loop) setInputFaultLocked(why string) {
	if l.inputFault == why {
		return
	}
	l.guardFailLocked(l.clock.Now())
	l.inputFault = why
	l.restart = true
	if l.mode == ModeAuto {
		l.log.Warn("output to "+l.failureActionLocked(), "reason", why, "actuator", l.out.String())
	} else {
		l.log.Warn("input unusable", "reason", why)
	}
}

// stepLocked drives the actuator from the current mode, input and output.
// It is idempotent: calling it again at the same time changes nothing, so
// any event may call it.
func (l *Loop) stepLocked(now time.Time) {
	if !l.running {
		return
	}
	defer l.autotuneFaultLocked()
	var duty float64
	act, fixedDuty := l.guardLocked(now)
	switch {
	case act == guardOff:
		l.forceOffLocked(now)
		return
	case act == guardDuty:
		duty = fixedDuty
	case l.mode == ModeOff, l.mode == ModeAuto && l.inputFault != "":
		l.safeLocked()
		return
	case l.mode == ModeAuto:
		duty = l.autotuneDutyLocked()
	default:
		duty = l.manual
	}
	l.output = duty
	level := duty
	if l.sw != nil {
		level = l.switchLevelLocked(now, duty)
	}
	l.setLocked(now, level, false)
}

// setLocked drives the actuator to level unless it is there; override
// says a safety override (a cutoff) bypassed relay protection, which
// counts from now. A failed Set puts the actuator in its safe state.
func (l *Loop) setLocked(now time.Time, level float64, override bool) {
	if !l.isSafe && l.setErr == "" && level == l.applied {
		return
	}
	if err := l.out.Set(level); err != nil {
		if l.setErr == "" {
			l.log.Warn("actuator failed, output to safe state; retrying on the next input", "actuator", l.out.String(), "error", err)
		}
		l.setErr = fmt.Sprintf("%s: %v", faultOutput, err)
		l.isSafe = false // a failed Set may have left the output anywhere
		l.safeLocked()
		return
	}
	if l.setErr != "" {
		l.log.Info("actuator works again", "actuator", l.out.String())
		l.setErr = ""
	}
	l.applied, l.isSafe = level, false
	l.tookLocked(now, override)
}

// safeLocked puts the actuator in its safe state unless it is there. It
// is a safety override: it acts at once, whatever min_on or min_off say.
func (l *Loop) safeLocked() {
	// The output is what the actuator does: on for safe_state: on.
	defer func() { l.output = l.out.Level() }()
	l.cycleTimer.Stop()
	if l.isSafe && l.safeErr == "" {
		return
	}
	err := l.out.Safe()
	l.tookLocked(l.clock.Now(), true)
	if err != nil {
		if l.safeErr == "" {
			l.log.Error("actuator did not take its safe state", "actuator", l.out.String(), "error", err)
		}
		l.safeErr = fmt.Sprintf("%s: %v", faultSafe, err)
		l.isSafe = true // do not Set it again until something changes
		return
	}
	l.safeErr = ""
	l.isSafe = true
}

// faultLocked says why the output is not what the mode asks for.
func (l *Loop) faultLocked() string {
	if !l.running {
		return "not running"
	}
	var parts []string
	inputBlocks := l.mode == ModeAuto && l.inputFault != ""
	if inputBlocks {
		parts = append(parts, l.inputFault)
	}
	if l.guard.cutoff != "" && l.mode != ModeOff {
		parts = append(parts, l.guard.cutoff)
	}
	// The failure action drives the output: its faults count too.
	inputBlocks = inputBlocks && l.guard.applied == ""
	if l.setErr != "" && l.mode != ModeOff && !inputBlocks {
		parts = append(parts, l.setErr)
	}
	if l.safeErr != "" {
		parts = append(parts, l.safeErr)
	}
	if l.sw != nil && l.sw.fault != "" && l.mode != ModeOff && !inputBlocks {
		parts = append(parts, l.sw.fault)
	}
	return strings.Join(parts, "; ")
}
