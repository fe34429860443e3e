package sensors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/edged/edged/sensors/liveness"
)

// Sink takes what the Poller produces; the pipeline implements it.
//
// Each sensor calls its Sink from its own goroutine, so methods run
// concurrently for different sensors but never for the same one. They
// should return quickly: a slow Sink delays that sensor's next sample, and
// slots that pass meanwhile are skipped.
type Sink interface {
	// Reading takes one value that passed its filter chain.
	Reading(Reading)
	// Availability reports a sensor going online or offline; it is called
	// on changes only.
	Availability(sensor string, online bool)
}

// SampleObserver takes every good sample of every sensor the moment the
// Poller has it, in memory: control loops implement it, so that their
// input never waits on the Sink (the broker, its disk buffer, the
// network) and never depends on what the rate filters publish.
//
// Sample gets a reading whose value is the sample value of the sensor's
// filter chain (after the value filters, before the rate filters: see
// Chain), once per good sample, before the Sink sees that sample's
// readings. Availability is called on changes, before the Sink's.
//
// Both are called from the sensor's goroutine and must not block: a slow
// observer delays the sensor's samples. Hand the value to another
// goroutine without waiting (the newest value winning), and ignore
// sensors you do not watch.
type SampleObserver interface {
	Sample(Reading)
	Availability(sensor string, online bool)
}

// Errors the Poller records as a sample's failure.
var (
	// ErrSenseTimeout: Sense did not return within PollOpts' timeout.
	ErrSenseTimeout = errors.New("sensors: sense timed out")
	// ErrSenseStuck: a timed-out Sense, one that ignores its context, was
	// still running for the whole timeout of the next sample.
	ErrSenseStuck = errors.New("sensors: previous sense still running (driver ignores its context)")
)

// ErrPollerStarted is returned by Run and Observe once Run has been
// called.
var ErrPollerStarted = errors.New("sensors: poller already started")

// ErrPollerStopped is returned by Add once Run has returned.
var ErrPollerStopped = errors.New("sensors: poller stopped")

// Status is a sensor's availability as the Poller sees it.
type Status uint8

// The availability states. A sensor is unknown until its first success or
// until it has failed OfflineAfter times in a row.
const (
	StatusUnknown Status = iota
	StatusOnline
	StatusOffline
)

// String returns "unknown", "online" or "offline".
func (s Status) String() string {
	switch s {
	case StatusOnline:
		return "online"
	case StatusOffline:
		return "offline"
	}
	return "unknown"
}

// SensorStats are one sensor's counters, for metrics and `edged` status
// output.
type SensorStats struct {
	ID         string
	Sensor     string // the driver's String()
	Status     Status
	Samples    uint64    // successful samples
	Failures   uint64    // failed samples, retries included
	Timeouts   uint64    // failures that were timeouts (also in Failures)
	Skipped    uint64    // grid slots passed without a sample starting
	Stuck      bool      // a timed-out Sense has not returned yet
	LastError  error     // the latest failure, nil if none yet
	LastSample time.Time // time of the latest successful sample
	// SenseTime is the time the successful samples took in all, from
	// their slot to their values (a timed-out Sense ahead included).
	SenseTime time.Duration
}

// Poller owns the sampling schedules of many sensors: when to Sense, with
// what timeout, when to retry, when a sensor counts as offline, and which
// values pass the filters.
//
// Each sensor has a scheduling goroutine and a goroutine that calls Sense.
// The split keeps the schedule, the timeouts and the availability going
// when a driver ignores its context: such a Sense blocks only its own
// goroutine, its timed-out result is thrown away when it finally returns,
// and a sample that falls due meanwhile waits for it at most its timeout,
// then fails with ErrSenseStuck (Sense is never called concurrently). Run,
// however, waits for it before returning.
//
// Samples sit on the grid start + n*Interval, start being when Run
// began; a late sample never shifts the ones after it, and slots that pass
// while a sample overruns are skipped and counted. After a failed sample
// the Poller retries after RetryBackoff, doubling per consecutive failure,
// but only while the retry falls before the next slot.
//
// The context Sense gets is done at the timeout or when Run's context is;
// its Deadline is on the Poller's Clock, so drivers wait through that
// Clock, not through the wall clock.
//
// Sample observers (Observe) get each good sample before the Sink does.
//
// After warm-up a successful sample allocates nothing.
type Poller struct {
	clock Clock
	sink  Sink
	log   *slog.Logger

	mu        sync.Mutex
	started   bool
	stopped   bool            // Run's context is done: Add starts nothing more
	ctx       context.Context // Run's, once started
	wg        sync.WaitGroup  // every worker's goroutines, for Run
	workers   []*worker       // replaced, never changed in place (Stats reads a copy)
	observers []SampleObserver
}

// NewPoller returns a Poller that reads time from clock and hands results
// to sink. A nil log discards.
func NewPoller(clock Clock, sink Sink, log *slog.Logger) *Poller {
	log = LogOrDiscard(log)
	return &Poller{clock: clock, sink: sink, log: log.With("component", "poller")}
}

// Add registers sensor s under id, with one filter chain per quantity.
// It validates opts, and rejects filters restricted to a quantity s does
// not measure. The caller keeps ownership of s and halts it after Run has
// returned (or after Remove's channel is closed).
//
// Added while Run runs (a live reload), the sensor starts sampling at
// once, on a grid that starts now; the other sensors are not touched.
// After Run has returned, Add fails with ErrPollerStopped.
func (p *Poller) Add(id string, s Sensor, opts PollOpts) error {
	if id == "" {
		return errors.New("sensors: sensor id is empty")
	}
	if err := opts.Validate(); err != nil {
		return fmt.Errorf("sensors: sensor %q: %w", id, err)
	}
	qs := append([]Quantity(nil), s.Quantities()...)
	if len(qs) == 0 {
		return fmt.Errorf("sensors: sensor %q: %s measures nothing", id, s)
	}
	for i, q := range qs {
		if !q.Valid() {
			return fmt.Errorf("sensors: sensor %q: %s reports invalid %v", id, s, q)
		}
		for _, r := range qs[:i] {
			if r == q {
				return fmt.Errorf("sensors: sensor %q: %s reports %v twice", id, s, q)
			}
		}
	}
	for i, f := range opts.Filters {
		if f.Quantity != 0 && !contains(qs, f.Quantity) {
			return fmt.Errorf("sensors: sensor %q: filters[%d]: %w", id, i,
				FieldErrorf("quantity", "%s does not measure %v", s, f.Quantity))
		}
	}
	chains := make([]*Chain, len(qs))
	for i, q := range qs {
		c, err := NewChain(opts.Filters, q)
		if err != nil {
			return fmt.Errorf("sensors: sensor %q: %w", id, err)
		}
		chains[i] = c
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return ErrPollerStopped
	}
	for _, w := range p.workers {
		if w.id == id {
			return fmt.Errorf("sensors: sensor %q added twice", id)
		}
	}
	w := &worker{
		id:      id,
		sensor:  s,
		qs:      qs,
		chains:  chains,
		buf:     make([]float64, len(qs)),
		out:     make([]float64, len(qs)),
		pub:     make([]bool, len(qs)),
		iv:      opts.Interval,
		timeout: opts.EffectiveTimeout(),
		backoff: opts.RetryBackoff,
		offline: opts.OfflineAfter,
		clock:   p.clock,
		sink:    p.sink,
		log:     p.log.With("sensor", id),
		req:     make(chan struct{}, 1),
		res:     make(chan error, 1),
		beat:    liveness.New("sensor/" + id),
	}
	w.sctx.done = make(chan struct{})
	w.done = make(chan struct{})
	w.stats.ID, w.stats.Sensor = id, s.String()
	p.workers = append(slices.Clip(p.workers), w)
	if p.started {
		p.launchLocked(w, p.clock.Now())
	}
	return nil
}

// Remove stops sampling sensor id and forgets it; its other sensors go
// on undisturbed. The returned channel is closed once the sensor's
// goroutines have ended: from then on the Poller makes no more Sink or
// observer calls for it and no Sense is running, so the caller may halt
// it. A Sense that ignores its context keeps the channel open until it
// returns. Remove tells the Sink nothing: saying the sensor is gone is
// the caller's business.
func (p *Poller) Remove(id string) (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.IndexFunc(p.workers, func(w *worker) bool { return w.id == id })
	if i < 0 {
		return nil, fmt.Errorf("sensors: sensor %q: not in the poller", id)
	}
	w := p.workers[i]
	p.workers = slices.Delete(slices.Clone(p.workers), i, i+1)
	if w.cancel == nil { // never started
		close(w.done)
		return w.done, nil
	}
	w.cancel()
	return w.done, nil
}

// launchLocked starts w's goroutines on a grid from start; p.mu is held.
func (p *Poller) launchLocked(w *worker, start time.Time) {
	ctx, cancel := context.WithCancel(p.ctx)
	w.start, w.sctx.parent, w.observers, w.cancel = start, ctx, p.observers, cancel
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		// senseLoop ends when loop has closed req, so both are over.
		defer close(w.done)
		w.senseLoop()
	}()
	go func() {
		defer p.wg.Done()
		w.loop(ctx)
	}()
}

// Observe adds o to the sample observers. It must be called before Run.
func (p *Poller) Observe(o SampleObserver) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return ErrPollerStarted
	}
	p.observers = append(p.observers, o)
	return nil
}

func contains(qs []Quantity, q Quantity) bool {
	for _, x := range qs {
		if x == q {
			return true
		}
	}
	return false
}

// Run samples every added sensor until ctx is done, then waits for all the
// Poller's goroutines, including any Sense still running, and returns nil.
// It does not halt the sensors. Run may be called once.
func (p *Poller) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.started {
		p.mu.Unlock()
		return ErrPollerStarted
	}
	p.started, p.ctx = true, ctx
	start := p.clock.Now()
	for _, w := range p.workers {
		p.launchLocked(w, start)
	}
	p.mu.Unlock()

	<-ctx.Done()
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// BeatSlack is what every loop's heartbeat bound adds to the time its
// work may take: a loaded Pi may run a goroutine seconds late.
const BeatSlack = 10 * time.Second

// Heartbeats returns the beat of every sensor's scheduling loop, named
// "sensor/<id>", in the order they were added. The loop comes round at
// every sample and retry; a driver that ignores its context does not
// stop it (see Poller), a bug or a blocked Sink would.
func (p *Poller) Heartbeats() []*liveness.Beat {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*liveness.Beat, len(p.workers))
	for i, w := range p.workers {
		out[i] = w.beat
	}
	return out
}

// Stats returns every sensor's counters, in the order they were added.
func (p *Poller) Stats() []SensorStats {
	p.mu.Lock()
	ws := p.workers
	p.mu.Unlock()
	out := make([]SensorStats, len(ws))
	for i, w := range ws {
		w.mu.Lock()
		out[i] = w.stats
		w.mu.Unlock()
	}
	return out
}

// worker samples one sensor. Everything but stats and sctx belongs to the
// scheduling goroutine (loop); senseLoop touches only sensor, buf and
// sctx, and buf only between a request and its result.
type worker struct {
	id      string
	sensor  Sensor
	qs      []Quantity
	chains  []*Chain
	buf     []float64
	out     []float64 // per quantity: the value to publish,
	pub     []bool    // if there is one
	iv      time.Duration
	timeout time.Duration
	backoff time.Duration
	offline int
	clock   Clock
	sink    Sink
	log     *slog.Logger

	observers []SampleObserver
	cancel    context.CancelFunc // ends this worker alone (Remove); nil before Run
	done      chan struct{}      // closed when both goroutines have ended

	req  chan struct{} // one Sense, please
	res  chan error    // its result
	sctx senseCtx
	busy bool // a Sense is running whose result has not been received

	start    time.Time
	slot     int64 // index of the latest grid slot reached
	fails    int   // consecutive failed samples
	status   Status
	panicked bool

	beat *liveness.Beat // the scheduling loop's

	mu    sync.Mutex
	stats SensorStats
}

func (w *worker) senseLoop() {
	for range w.req {
		w.res <- w.senseOnce()
	}
}

// senseOnce turns a driver panic into a failed sample: one broken driver
// must not take down every other sensor and the broker.
func (w *worker) senseOnce() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sensors: %s: sense panicked: %v", w.sensor, r)
			if !w.panicked {
				w.panicked = true
				w.log.Error("driver panicked; treating it as a failed sample", "error", err, "stack", string(debug.Stack()))
			}
		}
	}()
	return w.sensor.Sense(&w.sctx, w.buf)
}

func (w *worker) loop(ctx context.Context) {
	wait := w.clock.NewTimer(time.Hour)
	wait.Stop()
	tmo := w.clock.NewTimer(time.Hour)
	tmo.Stop()
	defer func() {
		wait.Stop()
		tmo.Stop()
		if w.busy {
			<-w.res // a Sense outlived its context; it still owns the sensor
			w.setBusy(false)
		}
		close(w.req)
		w.beat.Idle()
	}()

	next := w.start
	for {
		// Back after the wait, a sample (which may first wait out a
		// timed-out Sense) and some slack for a loaded machine.
		w.beat.Expect(max(next.Sub(w.clock.Now()), 0) + 2*w.timeout + BeatSlack)
		at, ok := w.waitUntil(ctx, wait, next)
		if !ok {
			return
		}
		err := w.sample(ctx, tmo, at)
		if ctx.Err() != nil {
			return
		}
		next = w.schedule(err)
	}
}

// waitUntil waits for next and returns the time it woke at, which becomes
// the sample's time; ok is false when ctx is done first.
func (w *worker) waitUntil(ctx context.Context, t Timer, next time.Time) (at time.Time, ok bool) {
	if d := next.Sub(w.clock.Now()); d > 0 {
		t.Reset(d)
		for {
			var late <-chan error
			if w.busy {
				late = w.res
			}
			select {
			case at = <-t.C():
				return at, true
			case <-ctx.Done():
				t.Stop()
				return time.Time{}, false
			case <-late:
				w.setBusy(false) // the result of a timed-out Sense: discarded
			}
		}
	}
	if ctx.Err() != nil {
		return time.Time{}, false
	}
	return w.clock.Now(), true
}

// sample takes one sample at time at and delivers its filtered values.
func (w *worker) sample(ctx context.Context, tmo Timer, at time.Time) error {
	// The timeout covers waiting for a timed-out Sense that has not
	// returned yet: a driver that honours its context returns at once,
	// and one that does not costs this sample too.
	mono := MonoOf(w.clock)
	tmo.Reset(w.timeout)
	if w.busy {
		select {
		case <-w.res:
			w.setBusy(false)
		case <-tmo.C():
			return ErrSenseStuck
		case <-ctx.Done():
			tmo.Stop()
			return ctx.Err()
		}
	}
	w.sctx.arm(at.Add(w.timeout))
	w.req <- struct{}{}
	select {
	case err := <-w.res:
		tmo.Stop()
		if err != nil {
			return err
		}
	case <-tmo.C():
		w.setBusy(true)
		w.sctx.cancel(context.DeadlineExceeded)
		return ErrSenseTimeout
	case <-ctx.Done():
		tmo.Stop()
		w.setBusy(true)
		w.sctx.cancel(ctx.Err())
		return ctx.Err()
	}

	took := w.clock.Now().Sub(at)
	w.mu.Lock()
	w.stats.Samples++
	w.stats.SenseTime += max(took, 0)
	w.stats.LastSample = at
	w.mu.Unlock()
	online := w.status != StatusOnline
	if online {
		w.setStatus(StatusOnline, nil)
	}
	// Every observer has the sample before the Sink, which may be slow,
	// sees any of it.
	for i, q := range w.qs {
		s, good, v, ok := w.chains[i].Run(at, w.buf[i])
		w.out[i], w.pub[i] = v, ok
		if good {
			for _, o := range w.observers {
				o.Sample(Reading{Sensor: w.id, Quantity: q, Value: s, Time: at, Mono: mono})
			}
		}
	}
	if online {
		w.sink.Availability(w.id, true)
	}
	for i, q := range w.qs {
		if w.pub[i] {
			w.sink.Reading(Reading{Sensor: w.id, Quantity: q, Value: w.out[i], Time: at, Mono: mono})
		}
	}
	return nil
}

// schedule books the outcome of a sample and returns when to take the
// next one: a retry before the next slot, or the next slot not yet passed.
func (w *worker) schedule(err error) time.Time {
	now := w.clock.Now()
	m := w.slot + 1
	if el := now.Sub(w.start); el > 0 {
		k := int64(el / w.iv)
		if el%w.iv != 0 {
			k++
		}
		m = max(m, k)
	}
	skipped := m - w.slot - 1
	w.slot = m - 1
	slotAt := w.start.Add(time.Duration(m) * w.iv)

	if err == nil {
		w.fails = 0
		if skipped > 0 {
			w.mu.Lock()
			w.stats.Skipped += uint64(skipped)
			w.mu.Unlock()
		}
		w.slot = m
		return slotAt
	}

	w.fails++
	w.mu.Lock()
	w.stats.Skipped += uint64(skipped)
	w.stats.Failures++
	if errors.Is(err, ErrSenseTimeout) {
		w.stats.Timeouts++
	}
	w.stats.LastError = err
	w.mu.Unlock()
	if w.fails >= w.offline && w.status != StatusOffline {
		w.setStatus(StatusOffline, err)
		w.sink.Availability(w.id, false)
	}
	if d := w.retryDelay(); d > 0 {
		if r := now.Add(d); r.Before(slotAt) {
			return r
		}
	}
	w.slot = m
	return slotAt
}

// retryDelay is RetryBackoff doubled per consecutive failure after the
// first; it stops growing once it reaches the interval, past which it
// would never be used, so it cannot overflow.
func (w *worker) retryDelay() time.Duration {
	d := w.backoff
	for i := 1; i < w.fails && d > 0 && d < w.iv; i++ {
		d *= 2
	}
	return d
}

func (w *worker) setBusy(b bool) {
	w.busy = b
	w.mu.Lock()
	w.stats.Stuck = b
	w.mu.Unlock()
}

// setStatus records and logs a change of availability and tells the
// observers; the caller tells the Sink, after anything it has for the
// observers.
func (w *worker) setStatus(s Status, err error) {
	was := w.status
	w.status = s
	w.mu.Lock()
	w.stats.Status = s
	w.mu.Unlock()
	switch {
	case s == StatusOffline:
		w.log.Warn("sensor offline", "driver", w.sensor.String(), "failures", w.fails, "error", err)
	case was == StatusOffline:
		w.log.Info("sensor back online", "driver", w.sensor.String())
	default:
		w.log.Info("sensor online", "driver", w.sensor.String())
	}
	for _, o := range w.observers {
		o.Availability(w.id, s == StatusOnline)
	}
}

// senseCtx is the context of one Sense. It is reused from sample to sample
// so that a sample allocates nothing; only a cancelled one gets a fresh
// done channel. The scheduling goroutine cancels it on timeout and when
// the parent is done. Its deadline is on the Poller's Clock.
type senseCtx struct {
	parent context.Context

	mu       sync.Mutex
	done     chan struct{}
	err      error
	deadline time.Time
}

var _ context.Context = (*senseCtx)(nil)

// arm readies the context for the next Sense; no Sense may be running.
func (c *senseCtx) arm(deadline time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		c.done, c.err = make(chan struct{}), nil
	}
	c.deadline = deadline
}

func (c *senseCtx) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		close(c.done)
	}
}

func (c *senseCtx) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, true
}

func (c *senseCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

func (c *senseCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *senseCtx) Value(key any) any { return c.parent.Value(key) }
