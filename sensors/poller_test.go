package sensors_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

// capWait caps every real-time wait of these tests, so a bug fails the
// test instead of hanging it. It is never reached when the code works.
const capWait = 10 * time.Second

// event is one call into the sink.
type event struct {
	avail  bool // Availability, else Reading
	online bool
	r      sensors.Reading
}

func reading(id string, q sensors.Quantity, v float64, t time.Time) event {
	return event{r: sensors.Reading{Sensor: id, Quantity: q, Value: v, Time: t}}
}

func avail(id string, online bool) event {
	return event{avail: true, online: online, r: sensors.Reading{Sensor: id}}
}

type chanSink struct{ ch chan event }

func (s *chanSink) Reading(r sensors.Reading) { s.ch <- event{r: r} }
func (s *chanSink) Availability(id string, online bool) {
	s.ch <- avail(id, online)
}

// syncBuffer is a bytes.Buffer safe for the poller's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type harness struct {
	t      *testing.T
	clk    *sensorstest.Clock
	sink   *chanSink
	p      *sensors.Poller
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
	began  time.Time // real time, for capWait in polling loops
}

// newHarness makes a poller on a fake clock at t0. A sink buffer of 0
// makes every sink call wait for the test to take it.
func newHarness(t *testing.T, buffer int) *harness {
	h := &harness{
		t:     t,
		clk:   sensorstest.NewClock(t0),
		sink:  &chanSink{ch: make(chan event, buffer)},
		logs:  &syncBuffer{},
		began: time.Now(),
	}
	h.p = sensors.NewPoller(h.clk, h.sink, slog.New(slog.NewTextHandler(h.logs, nil)))
	return h
}

func (h *harness) add(id string, s sensors.Sensor, o sensors.PollOpts) {
	h.t.Helper()
	if err := h.p.Add(id, s, o); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.p.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

// stop cancels Run and waits for it; Run returns only after all the
// poller's goroutines have ended.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	for {
		select {
		case err := <-h.done:
			if err != nil {
				h.t.Errorf("Run: %v", err)
			}
			return
		case <-h.sink.ch: // unblock a sink call in flight
		case <-time.After(capWait):
			h.t.Error("Run did not return after cancel")
			return
		}
	}
}

// next waits until the poller has armed a timer for at, which checks the
// schedule it chose, and until no timed-out Sense is still returning, and
// advances the clock to at. A Sense that returns once its context is done
// still returns asynchronously: without the second wait, the clock could
// run out the next sample's timeout before the poller has seen the return.
func (h *harness) next(at time.Time) {
	h.t.Helper()
	h.nextStuck(at, func() {
		for i := 0; ; i++ {
			if !slices.ContainsFunc(h.p.Stats(), func(s sensors.SensorStats) bool { return s.Stuck }) {
				return
			}
			if i%1024 == 1023 && time.Since(h.began) > capWait {
				h.t.Fatal("a timed-out Sense did not return")
			}
			runtime.Gosched()
		}
	})
}

// nextStuck is next for a test that keeps a Sense stuck on purpose.
func (h *harness) nextStuck(at time.Time, idle ...func()) {
	h.t.Helper()
	if err := h.clk.WaitTimerAt(at, capWait); err != nil {
		h.t.Fatal(err)
	}
	for _, f := range idle {
		f()
	}
	h.clk.AdvanceTo(at)
}

// settle waits until the poller has armed a timer for at, so everything
// before it is done, without advancing the clock.
func (h *harness) settle(at time.Time) {
	h.t.Helper()
	if err := h.clk.WaitTimerAt(at, capWait); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) event() event {
	h.t.Helper()
	select {
	case e := <-h.sink.ch:
		return e
	case <-time.After(capWait):
		h.t.Fatal("no sink call")
	}
	return event{}
}

// expect checks the sink calls made so far, in order, and that there are
// no more. Call it when the poller is idle (after next has seen its timer).
func (h *harness) expect(want ...event) {
	h.t.Helper()
	var got []event
	for done := false; !done; {
		select {
		case e := <-h.sink.ch:
			got = append(got, e)
		default:
			done = true
		}
	}
	if len(got) != len(want) {
		h.t.Fatalf("sink calls:\n got %v\nwant %v", got, want)
	}
	for i := range got {
		if !sameEvent(got[i], want[i]) {
			h.t.Fatalf("sink call %d:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
}

func sameEvent(a, b event) bool {
	return a.avail == b.avail && a.online == b.online && a.r.Sensor == b.r.Sensor &&
		a.r.Quantity == b.r.Quantity && a.r.Value == b.r.Value && a.r.Time.Equal(b.r.Time)
}

func (h *harness) stats(i int) sensors.SensorStats {
	h.t.Helper()
	return h.p.Stats()[i]
}

func sec(s float64) time.Time { return at(s) }

func pollOpts(iv, timeout, backoff time.Duration, offline int) sensors.PollOpts {
	return sensors.PollOpts{Interval: iv, Timeout: timeout, RetryBackoff: backoff, OfflineAfter: offline}
}

var errBoom = errors.New("boom")

func ok(v ...float64) sensorstest.Result { return sensorstest.Result{Values: v} }
func fail() sensorstest.Result           { return sensorstest.Result{Err: errBoom} }

func TestPollerNoDrift(t *testing.T) {
	const ticks = 10000
	const iv = 10 * time.Second
	h := newHarness(t, 4)
	s := sensorstest.NewSensor("t", sensors.Temperature)
	s.Func = func(_ context.Context, call int, dst []float64) error {
		h.clk.Advance(1234 * time.Millisecond) // the measurement takes time
		dst[0] = float64(call)
		return nil
	}
	h.add("t", s, pollOpts(iv, 0, time.Second, 3))
	h.start()
	if e := h.event(); !sameEvent(e, avail("t", true)) {
		t.Fatalf("first call %v, want online", e)
	}
	for n := 0; n <= ticks; n++ {
		if n > 0 {
			h.next(t0.Add(time.Duration(n) * iv))
		}
		e := h.event()
		want := reading("t", sensors.Temperature, float64(n+1), t0.Add(time.Duration(n)*iv))
		if !sameEvent(e, want) {
			t.Fatalf("tick %d: got %v, want %v", n, e, want)
		}
	}
	h.settle(t0.Add((ticks + 1) * iv))
	st := h.stats(0)
	if st.Samples != ticks+1 || st.Skipped != 0 || st.Failures != 0 || st.Status != sensors.StatusOnline {
		t.Fatalf("stats %+v", st)
	}
	if !st.LastSample.Equal(t0.Add(ticks * iv)) {
		t.Fatalf("LastSample %v", st.LastSample)
	}
}

func TestPollerSkipsMissedSlots(t *testing.T) {
	t.Run("slow sink", func(t *testing.T) {
		h := newHarness(t, 0) // every sink call waits for the test
		s := sensorstest.NewSensor("t", sensors.Temperature).Then(ok(1), ok(2))
		h.add("t", s, pollOpts(10*time.Second, 0, time.Second, 3))
		h.start()
		h.event() // online
		// The poller now waits in Reading; 35 s pass meanwhile.
		h.clk.Advance(35 * time.Second)
		if e := h.event(); !sameEvent(e, reading("t", sensors.Temperature, 1, sec(0))) {
			t.Fatalf("got %v", e)
		}
		h.next(sec(40)) // slots 10, 20 and 30 are gone
		if e := h.event(); !sameEvent(e, reading("t", sensors.Temperature, 2, sec(40))) {
			t.Fatalf("got %v", e)
		}
		h.settle(sec(50))
		if st := h.stats(0); st.Skipped != 3 || st.Samples != 2 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("retry overruns a slot", func(t *testing.T) {
		h := newHarness(t, 16)
		s := sensorstest.NewSensor("t", sensors.Temperature).Then(
			sensorstest.Result{Err: errBoom, Take: 3 * time.Second},
			sensorstest.Result{Values: []float64{7}, Take: 4 * time.Second},
			ok(8),
		)
		s.Clock = h.clk
		h.add("t", s, pollOpts(10*time.Second, 5*time.Second, 4*time.Second, 3))
		h.start()
		h.next(sec(7))  // failed at 3 s, retry after 4 s
		h.next(sec(20)) // the retry ended at 11 s: slot 10 is gone
		h.settle(sec(30))
		h.expect(
			avail("t", true),
			reading("t", sensors.Temperature, 7, sec(7)),
			reading("t", sensors.Temperature, 8, sec(20)),
		)
		if st := h.stats(0); st.Skipped != 1 || st.Samples != 2 || st.Failures != 1 {
			t.Fatalf("stats %+v", st)
		}
		// The good samples took 4 s and 0 s; the failed one is not in it.
		if st := h.stats(0); st.SenseTime != 4*time.Second {
			t.Errorf("SenseTime %v, want 4s", st.SenseTime)
		}
	})
}

func TestPollerTimeout(t *testing.T) {
	h := newHarness(t, 16)
	never := make(chan struct{})
	hang := sensorstest.Result{Wait: never}
	s := sensorstest.NewSensor("t", sensors.Temperature).Then(hang, hang, hang, ok(5))
	h.add("t", s, pollOpts(10*time.Second, 2*time.Second, time.Second, 3))
	h.start()
	h.next(sec(2)) // timeout of the sample at 0
	h.next(sec(3)) // retry after 1 s
	h.next(sec(5)) // its timeout
	h.next(sec(7)) // retry after 2 s
	h.next(sec(9)) // its timeout: third failure, offline
	if e := h.event(); !sameEvent(e, avail("t", false)) {
		t.Fatalf("got %v, want offline", e)
	}
	if err := s.CtxErr(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sense saw ctx error %v, want DeadlineExceeded", err)
	}
	h.next(sec(10)) // a retry after 4 s would pass the slot
	h.settle(sec(20))
	h.expect(avail("t", true), reading("t", sensors.Temperature, 5, sec(10)))
	st := h.stats(0)
	if st.Timeouts != 3 || st.Failures != 3 || !errors.Is(st.LastError, sensors.ErrSenseTimeout) || s.Overlaps() != 0 {
		t.Fatalf("stats %+v, overlaps %d", st, s.Overlaps())
	}
}

func TestPollerStuckDriver(t *testing.T) {
	h := newHarness(t, 16)
	gate := make(chan struct{})
	s := sensorstest.NewSensor("t", sensors.Temperature).Then(
		sensorstest.Result{Wait: gate, IgnoreCtx: true, Values: []float64{1}},
	)
	s.Func = func(_ context.Context, _ int, dst []float64) error {
		dst[0] = 5
		return nil
	}
	h.add("t", s, pollOpts(10*time.Second, 2*time.Second, 0, 2))
	h.start()
	h.next(sec(2))       // timeout; the driver keeps blocking
	h.nextStuck(sec(10)) // no retries: next slot
	h.nextStuck(sec(12)) // the slot waited its timeout for the stuck Sense
	if e := h.event(); !sameEvent(e, avail("t", false)) {
		t.Fatalf("got %v, want offline", e)
	}
	if !h.stats(0).Stuck {
		t.Fatal("stats do not show the stuck Sense")
	}
	close(gate) // the stuck Sense returns; its value is stale
	h.next(sec(20))
	h.settle(sec(30))
	h.expect(avail("t", true), reading("t", sensors.Temperature, 5, sec(20)))
	st := h.stats(0)
	if s.Overlaps() != 0 || s.Calls() != 2 || st.Failures != 2 || st.Timeouts != 1 {
		t.Fatalf("overlaps %d, calls %d, stats %+v", s.Overlaps(), s.Calls(), st)
	}
	if !strings.Contains(h.logs.String(), "previous sense still running") {
		t.Fatalf("offline log lacks the error:\n%s", h.logs)
	}
}

func TestPollerRetryBackoff(t *testing.T) {
	t.Run("doubling, capped by the slot, reset by success", func(t *testing.T) {
		h := newHarness(t, 16)
		s := sensorstest.NewSensor("t", sensors.Temperature).Then(fail(), fail(), fail(), fail(), ok(1), fail(), ok(2), ok(3))
		h.add("t", s, pollOpts(10*time.Second, 500*time.Millisecond, time.Second, 10))
		h.start()
		for _, at := range []float64{1, 3, 7, 10, 20, 21, 30} {
			h.next(sec(at))
		}
		h.settle(sec(40))
		h.expect(
			avail("t", true),
			reading("t", sensors.Temperature, 1, sec(10)),
			reading("t", sensors.Temperature, 2, sec(21)),
			reading("t", sensors.Temperature, 3, sec(30)),
		)
		if st := h.stats(0); st.Failures != 5 || st.Samples != 3 || st.Timeouts != 0 || !errors.Is(st.LastError, errBoom) {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("a retry due at the slot is the slot", func(t *testing.T) {
		h := newHarness(t, 16)
		s := sensorstest.NewSensor("t", sensors.Temperature).Then(fail(), fail(), ok(1), ok(2))
		h.add("t", s, pollOpts(6*time.Second, 500*time.Millisecond, 2*time.Second, 10))
		h.start()
		h.next(sec(2)) // retry
		h.next(sec(6)) // retry after 4 s would be at the slot: one sample only
		h.next(sec(12))
		h.settle(sec(18))
		// A second sample at 6 s would have taken ok(2) there.
		h.expect(
			avail("t", true),
			reading("t", sensors.Temperature, 1, sec(6)),
			reading("t", sensors.Temperature, 2, sec(12)),
		)
	})
}

func TestPollerAvailability(t *testing.T) {
	h := newHarness(t, 16)
	s := sensorstest.NewSensor("t", sensors.Temperature).Then(ok(1), fail(), fail(), fail(), fail(), fail(), ok(2), ok(3), ok(4))
	h.add("t", s, pollOpts(time.Second, 300*time.Millisecond, 0, 3))
	h.start()
	h.next(sec(1))
	h.next(sec(2))
	h.expect(avail("t", true), reading("t", sensors.Temperature, 1, sec(0)))
	h.next(sec(3)) // third failure
	h.next(sec(4))
	h.expect(avail("t", false))
	h.next(sec(5))
	h.next(sec(6)) // success
	h.next(sec(7))
	h.next(sec(8))
	h.settle(sec(9))
	h.expect(
		avail("t", true),
		reading("t", sensors.Temperature, 2, sec(6)),
		reading("t", sensors.Temperature, 3, sec(7)),
		reading("t", sensors.Temperature, 4, sec(8)),
	)
	if st := h.stats(0); st.Status != sensors.StatusOnline || st.Failures != 5 {
		t.Fatalf("stats %+v", st)
	}
	logs := h.logs.String()
	for msg, n := range map[string]int{
		`msg="sensor online"`:      1,
		`msg="sensor offline"`:     1,
		`msg="sensor back online"`: 1,
		`error=boom`:               1,
		`component=poller`:         3,
		`sensor=t`:                 3,
	} {
		if got := strings.Count(logs, msg); got != n {
			t.Errorf("%d log lines with %s, want %d:\n%s", got, msg, n, logs)
		}
	}
}

func TestPollerFilters(t *testing.T) {
	h := newHarness(t, 16)
	s := sensorstest.NewSensor("air", sensors.Temperature, sensors.Humidity).Then(
		ok(20, 50), ok(20.2, 50.6), ok(21, 50.7), ok(21, 50.7),
	)
	o := pollOpts(time.Second, 300*time.Millisecond, 0, 3)
	o.Filters = []sensors.FilterSpec{
		{Quantity: sensors.Temperature, Offset: fp(-1)},
		{Delta: fp(0.5)},
	}
	h.add("air", s, o)
	h.start()
	for i := 1; i <= 3; i++ {
		h.next(sec(float64(i)))
	}
	h.settle(sec(4))
	h.expect(
		avail("air", true),
		reading("air", sensors.Temperature, 19, sec(0)),
		reading("air", sensors.Humidity, 50, sec(0)),
		reading("air", sensors.Humidity, 50.6, sec(1)),
		reading("air", sensors.Temperature, 20, sec(2)),
	)
}

// chanObserver is a SampleObserver that records into a channel.
type chanObserver struct{ ch chan event }

func (o *chanObserver) Sample(r sensors.Reading) { o.ch <- event{r: r} }
func (o *chanObserver) Availability(id string, online bool) {
	o.ch <- avail(id, online)
}

// TestPollerSampleObserverIssue9 pins the control input of issue 9: an
// observer gets every good sample's value before the rate filters, and
// gets it before the Sink is called, so a Sink stuck on a disk does not
// hold it back.
func TestPollerSampleObserverIssue9(t *testing.T) {
	h := newHarness(t, 0) // every sink call waits for the test
	obs := &chanObserver{ch: make(chan event, 16)}
	if err := h.p.Observe(obs); err != nil {
		t.Fatal(err)
	}
	s := sensorstest.NewSensor("air", sensors.Temperature, sensors.Humidity).Then(
		ok(20, 50), ok(20.05, 50), fail(), ok(nan, 50.01),
	)
	o := pollOpts(time.Second, 300*time.Millisecond, 0, 3)
	o.Filters = []sensors.FilterSpec{
		{Quantity: sensors.Temperature, Offset: fp(-1)},
		{Delta: fp(0.5)},
		{Heartbeat: dp(time.Hour)},
	}
	h.add("air", s, o)
	h.start()
	// The first sample: the observer has everything while the Sink still
	// waits for its first call to be taken.
	wantObs := func(want ...event) {
		t.Helper()
		for i, w := range want {
			select {
			case e := <-obs.ch:
				if !sameEvent(e, w) {
					t.Fatalf("observer call %d: got %v, want %v", i, e, w)
				}
			case <-time.After(capWait):
				t.Fatalf("observer call %d missing, want %v", i, w)
			}
		}
	}
	wantObs(avail("air", true), reading("air", sensors.Temperature, 19, sec(0)), reading("air", sensors.Humidity, 50, sec(0)))
	for _, w := range []event{avail("air", true), reading("air", sensors.Temperature, 19, sec(0)), reading("air", sensors.Humidity, 50, sec(0))} {
		if e := h.event(); !sameEvent(e, w) {
			t.Fatalf("sink got %v, want %v", e, w)
		}
	}
	// Held back by delta: nothing published, both values observed.
	h.next(sec(1))
	wantObs(reading("air", sensors.Temperature, 19.05, sec(1)), reading("air", sensors.Humidity, 50, sec(1)))
	// A failed sample gives nothing; a NaN gives only the good quantity.
	h.next(sec(2))
	h.next(sec(3))
	wantObs(reading("air", sensors.Humidity, 50.01, sec(3)))
	h.settle(sec(4))
	h.expect()
	select {
	case e := <-obs.ch:
		t.Fatalf("extra observer call %v", e)
	default:
	}
	if err := h.p.Observe(obs); !errors.Is(err, sensors.ErrPollerStarted) {
		t.Errorf("Observe after Run: %v, want ErrPollerStarted", err)
	}
}

func TestPollerDriverPanic(t *testing.T) {
	h := newHarness(t, 16)
	s := sensorstest.NewSensor("t", sensors.Temperature)
	s.Func = func(_ context.Context, call int, dst []float64) error {
		if call == 1 {
			panic("driver bug")
		}
		dst[0] = 1
		return nil
	}
	h.add("t", s, pollOpts(time.Second, 300*time.Millisecond, 0, 1))
	h.start()
	h.next(sec(1))
	h.settle(sec(2))
	h.expect(avail("t", false), avail("t", true), reading("t", sensors.Temperature, 1, sec(1)))
	if !strings.Contains(h.logs.String(), "driver panicked") {
		t.Fatalf("panic not logged:\n%s", h.logs)
	}
}

func TestPollerRunCancel(t *testing.T) {
	h := newHarness(t, 16)
	idle := sensorstest.NewSensor("idle", sensors.Temperature).Then(ok(1))
	polite := sensorstest.NewSensor("polite", sensors.Temperature).Then(sensorstest.Result{Wait: make(chan struct{})})
	gate := make(chan struct{})
	stuck := sensorstest.NewSensor("stuck", sensors.Temperature).Then(sensorstest.Result{Wait: gate, IgnoreCtx: true, Values: []float64{1}})
	o := pollOpts(10*time.Second, 5*time.Second, time.Second, 3)
	h.add("idle", idle, o)
	h.add("polite", polite, o)
	h.add("stuck", stuck, o)
	h.start()
	// idle waits for its next slot; the others sit in Sense with their
	// timeouts armed.
	for _, at := range []float64{5, 10} {
		if err := h.clk.WaitTimerAt(sec(at), capWait); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.clk.WaitTimers(3, capWait); err != nil {
		t.Fatal(err)
	}
	// The timeouts are armed before Sense is called: wait until both
	// Sense calls have begun, or the cancel may come before polite's.
	for began := time.Now(); polite.Calls() == 0 || stuck.Calls() == 0; runtime.Gosched() {
		if time.Since(began) > capWait {
			t.Fatal("Sense was not called")
		}
	}
	h.cancel()
	select {
	case <-h.done:
		t.Fatal("Run returned while a Sense was still running")
	default:
	}
	close(gate)
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(capWait):
		t.Fatal("Run did not return")
	}
	h.cancel = nil
	if err := polite.CtxErr(); !errors.Is(err, context.Canceled) {
		t.Fatalf("polite Sense saw %v, want Canceled", err)
	}
	// Every timer is stopped and nothing samples any more.
	if n := h.clk.Pending(); n != 0 {
		t.Fatalf("%d timers still armed", n)
	}
	h.clk.Advance(time.Hour)
	if idle.Calls() != 1 || polite.Calls() != 1 || stuck.Calls() != 1 {
		t.Fatalf("calls after Run: %d %d %d", idle.Calls(), polite.Calls(), stuck.Calls())
	}
	if err := h.p.Run(context.Background()); !errors.Is(err, sensors.ErrPollerStarted) {
		t.Fatalf("second Run: %v", err)
	}
	if err := h.p.Add("late", idle, o); !errors.Is(err, sensors.ErrPollerStopped) {
		t.Fatalf("Add after Run returned: %v, want ErrPollerStopped", err)
	}
}

func TestPollerRunWithoutSensors(t *testing.T) {
	p := sensors.NewPoller(sensorstest.NewClock(t0), &chanSink{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPollerAddErrors(t *testing.T) {
	good := pollOpts(time.Second, 0, 0, 3)
	withFilter := func(f sensors.FilterSpec) sensors.PollOpts {
		o := good
		o.Filters = []sensors.FilterSpec{f}
		return o
	}
	temp := sensorstest.NewSensor("t", sensors.Temperature)
	tests := []struct {
		name string
		id   string
		s    sensors.Sensor
		o    sensors.PollOpts
		want string
	}{
		{"empty id", "", temp, good, "sensor id is empty"},
		{"duplicate id", "dup", temp, good, `sensor "dup" added twice`},
		{"bad interval", "x", temp, pollOpts(time.Millisecond, 0, 0, 3), "interval"},
		{"no quantities", "x", sensorstest.NewSensor("n"), good, "measures nothing"},
		{"invalid quantity", "x", sensorstest.NewSensor("n", 0), good, "invalid"},
		{"duplicate quantity", "x", sensorstest.NewSensor("n", sensors.Humidity, sensors.Humidity), good, "humidity twice"},
		{"filter for a quantity not measured", "x", temp, withFilter(sensors.FilterSpec{Quantity: sensors.Humidity, Offset: fp(1)}), "filters[0]: quantity: fake(t) does not measure humidity"},
		{"bad filter", "x", temp, withFilter(sensors.FilterSpec{Delta: fp(-1)}), "filters[0]: delta: must be positive"},
	}
	p := sensors.NewPoller(sensorstest.NewClock(t0), &chanSink{}, nil)
	if err := p.Add("dup", temp, good); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Add(tt.id, tt.s, tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "sensors: ") {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
	if n := len(p.Stats()); n != 1 {
		t.Fatalf("%d sensors registered, want 1", n)
	}
}

// TestPollerReadingsCarryMono: every reading carries the sample's time on
// the clock's monotonic scale, which is what a stamp taken before the wall
// clock was trusted is corrected from (README "Clock").
func TestPollerReadingsCarryMono(t *testing.T) {
	const iv = 10 * time.Second
	h := newHarness(t, 4)
	h.clk.Advance(3 * time.Second) // the clock's origin is not the Poller's start
	start := h.clk.Now()
	s := sensorstest.NewSensor("t", sensors.Temperature).Then(ok(1), ok(2), ok(3))
	h.add("t", s, pollOpts(iv, 0, time.Second, 3))
	h.start()
	if e := h.event(); !sameEvent(e, avail("t", true)) {
		t.Fatalf("first call %v, want online", e)
	}
	for n := range 3 {
		if n > 0 {
			h.next(start.Add(time.Duration(n) * iv))
		}
		e := h.event()
		if want := 3*time.Second + time.Duration(n)*iv; e.r.Mono != want {
			t.Fatalf("reading %d: Mono = %v, want %v", n, e.r.Mono, want)
		}
	}
}

// drain takes the sink calls made so far, grouped by sensor in the order
// each sensor made them (sensors run concurrently, so only that order is
// fixed). Call it when the poller is idle.
func (h *harness) drain() map[string][]event {
	out := map[string][]event{}
	for {
		select {
		case e := <-h.sink.ch:
			out[e.r.Sensor] = append(out[e.r.Sensor], e)
		default:
			return out
		}
	}
}

func sameEvents(got, want []event) bool {
	return slices.EqualFunc(got, want, sameEvent)
}

// waitIdle waits until exactly n timers are armed, all due at at: with
// every sensor on a one-second grid and instant samples, every sensor is
// then waiting for its slot at at, its sink calls made. (It looked at
// the count and the earliest deadline apart: a sensor starting up, whose
// loop arms a timer for an hour and stops it, passed for idle, and 12
// runs of 300 under -race advanced the clock before a sensor's first
// sample.)
func (h *harness) waitIdle(n int, at time.Time) {
	h.t.Helper()
	for i := 0; ; i++ {
		if armed, all := h.clk.ArmedFor(at); armed == n && all {
			return
		}
		if i%1024 == 1023 && time.Since(h.began) > capWait {
			h.t.Fatalf("poller not idle with %d timers at %s (pending %d)", n, at, h.clk.Pending())
		}
		runtime.Gosched()
	}
}

// TestPollerReconcileWhileRunning is the Poller's part of a live reload
// (issue 13): a sensor added while Run runs starts at once on its own
// grid, a removed one stops (no Sink call after its channel closes, and
// the Poller does not halt it), and a sensor left alone keeps its
// schedule and its filter state (a delta filter still holds back a value
// close to the one it published before the change).
func TestPollerReconcileWhileRunning(t *testing.T) {
	h := newHarness(t, 32)
	o := pollOpts(time.Second, 300*time.Millisecond, 0, 3)
	keepOpts := o
	keepOpts.Filters = []sensors.FilterSpec{{Delta: fp(0.5)}}
	keep := sensorstest.NewSensor("keep", sensors.Temperature).Then(ok(20), ok(20.2), ok(20.3), ok(21))
	gone := sensorstest.NewSensor("gone", sensors.Humidity).Then(ok(50), ok(51), ok(52), ok(53))
	h.add("keep", keep, keepOpts)
	h.add("gone", gone, o)
	h.start()
	h.waitIdle(2, sec(1))
	h.clk.AdvanceTo(sec(1))
	h.waitIdle(2, sec(2))
	first := h.drain()
	if !sameEvents(first["keep"], []event{avail("keep", true), reading("keep", sensors.Temperature, 20, sec(0))}) {
		t.Fatalf("keep before the change: %v", first["keep"])
	}
	if len(first["gone"]) != 3 { // online and two readings
		t.Fatalf("gone before the change: %v (all %v)", first["gone"], first)
	}

	done, err := h.p.Remove("gone")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(capWait):
		t.Fatal("removed sensor's goroutines did not end")
	}
	fresh := sensorstest.NewSensor("fresh", sensors.Pressure).Then(ok(1000), ok(1001))
	if err := h.p.Add("fresh", fresh, o); err != nil {
		t.Fatal(err)
	}
	// fresh samples at once (now is sec(1)), then on its own grid; keep
	// goes on on the grid it had.
	h.waitIdle(2, sec(2))
	h.clk.AdvanceTo(sec(2))
	h.waitIdle(2, sec(3))
	got := h.drain()
	if len(got["gone"]) != 0 {
		t.Errorf("removed sensor still reported: %v", got["gone"])
	}
	if calls := gone.Calls(); calls != 2 {
		t.Errorf("removed sensor sensed %d times, want 2 (none after Remove)", calls)
	}
	if gone.Halted() {
		t.Error("Remove halted the sensor; halting is the caller's")
	}
	// 20.3 is within 0.5 of the 20 published before: held back, as it
	// would be without the change (a fresh chain would publish it).
	if len(got["keep"]) != 0 {
		t.Errorf("unchanged sensor after the change: %v, want nothing (delta holds 20.3 back)", got["keep"])
	}
	want := []event{avail("fresh", true), reading("fresh", sensors.Pressure, 1000, sec(1)), reading("fresh", sensors.Pressure, 1001, sec(2))}
	if !sameEvents(got["fresh"], want) {
		t.Errorf("added sensor:\n got %v\nwant %v", got["fresh"], want)
	}
	ids := []string{}
	for _, st := range h.p.Stats() {
		ids = append(ids, st.ID)
	}
	if !slices.Equal(ids, []string{"keep", "fresh"}) {
		t.Errorf("Stats ids %v, want [keep fresh]", ids)
	}
	if _, err := h.p.Remove("gone"); err == nil {
		t.Error("removing a sensor twice: no error")
	}
	if err := h.p.Add("keep", keep, o); err == nil {
		t.Error("adding a running id again: no error")
	}
}
