package sensorstest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

const wait = 5 * time.Second // real-time cap of a wait that should succeed

func recv(t *testing.T, tm sensors.Timer) (time.Time, bool) {
	t.Helper()
	select {
	case v := <-tm.C():
		return v, true
	default:
		return time.Time{}, false
	}
}

func TestClockAdvanceFiresInOrder(t *testing.T) {
	c := NewClock(t0)
	// Armed out of order; two share a deadline and must fire in arm order.
	ds := []time.Duration{3 * time.Second, time.Second, 2 * time.Second, 2 * time.Second, 10 * time.Second}
	timers := make([]sensors.Timer, len(ds))
	for i, d := range ds {
		timers[i] = c.NewTimer(d)
	}
	if got := c.Pending(); got != 5 {
		t.Fatalf("Pending = %d, want 5", got)
	}
	if next, ok := c.Next(); !ok || !next.Equal(t0.Add(time.Second)) {
		t.Fatalf("Next = %v, %v", next, ok)
	}
	c.Advance(5 * time.Second)
	if !c.Now().Equal(t0.Add(5 * time.Second)) {
		t.Fatalf("Now = %v", c.Now())
	}
	for i, tm := range timers {
		v, ok := recv(t, tm)
		if ds[i] > 5*time.Second {
			if ok {
				t.Errorf("timer %d (%v) fired early", i, ds[i])
			}
			continue
		}
		if !ok {
			t.Errorf("timer %d (%v) did not fire", i, ds[i])
			continue
		}
		if want := t0.Add(ds[i]); !v.Equal(want) {
			t.Errorf("timer %d sent %v, want its deadline %v", i, v, want)
		}
	}
	if c.Pending() != 1 {
		t.Fatalf("Pending = %d, want 1", c.Pending())
	}
	c.Advance(5 * time.Second)
	if _, ok := recv(t, timers[4]); !ok {
		t.Fatal("10 s timer did not fire at 10 s")
	}
}

// TestClockTieOrder pins the order Advance fires in: by deadline, ties in
// arm order, so runs with several goroutines stay deterministic.
func TestClockTieOrder(t *testing.T) {
	c := NewClock(t0)
	a := c.NewTimer(2 * time.Second).(*Timer)
	b := c.NewTimer(time.Second).(*Timer)
	d := c.NewTimer(2 * time.Second).(*Timer)
	c.mu.Lock()
	var fired []*Timer
	for {
		e := c.earliestLocked()
		if e == nil {
			break
		}
		c.disarmLocked(e)
		fired = append(fired, e)
	}
	c.mu.Unlock()
	if len(fired) != 3 || fired[0] != b || fired[1] != a || fired[2] != d {
		t.Fatalf("firing order wrong: %v", fired)
	}
}

func TestTimerStopReset(t *testing.T) {
	c := NewClock(t0)
	tm := c.NewTimer(time.Second)
	if !tm.Stop() {
		t.Fatal("Stop of an armed timer returned false")
	}
	if tm.Stop() {
		t.Fatal("second Stop returned true")
	}
	c.Advance(2 * time.Second)
	if _, ok := recv(t, tm); ok {
		t.Fatal("stopped timer fired")
	}

	// Fired but not received: Reset drains the stale value (Go 1.23).
	if tm.Reset(time.Second) {
		t.Fatal("Reset of a stopped timer returned true")
	}
	c.Advance(time.Second)
	if !tm.Reset(time.Second) {
		t.Fatal("Reset of a fired, unreceived timer returned false")
	}
	if _, ok := recv(t, tm); ok {
		t.Fatal("stale value left in C after Reset")
	}
	c.Advance(time.Second)
	if v, ok := recv(t, tm); !ok || !v.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("reset timer: got %v, %v", v, ok)
	}

	// d <= 0 fires at once with the current time.
	tm.Reset(0)
	if v, ok := recv(t, tm); !ok || !v.Equal(c.Now()) {
		t.Fatalf("Reset(0): got %v, %v", v, ok)
	}
	if c.Pending() != 0 {
		t.Fatalf("Pending = %d, want 0", c.Pending())
	}
}

func TestClockAdvanceToAndNegative(t *testing.T) {
	c := NewClock(t0)
	tm := c.NewTimer(time.Minute)
	c.Advance(-time.Hour)
	if !c.Now().Equal(t0) {
		t.Fatalf("negative Advance moved the clock to %v", c.Now())
	}
	c.AdvanceTo(t0.Add(time.Minute))
	if _, ok := recv(t, tm); !ok {
		t.Fatal("AdvanceTo the deadline did not fire the timer")
	}
}

func TestWaitTimers(t *testing.T) {
	c := NewClock(t0)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Arms a timer, waits for it, arms the next one: a test must
		// synchronise with it before advancing.
		tm := c.NewTimer(time.Second)
		<-tm.C()
		tm.Reset(time.Second)
		<-tm.C()
	}()
	for i := 1; i <= 2; i++ {
		if err := c.WaitTimerAt(t0.Add(time.Duration(i)*time.Second), wait); err != nil {
			t.Fatal(err)
		}
		c.Advance(time.Second)
	}
	wg.Wait()
	if err := c.WaitTimers(0, wait); err != nil {
		t.Fatal(err)
	}
}

func TestWaitTimersTimesOut(t *testing.T) {
	c := NewClock(t0)
	c.NewTimer(time.Second)
	err := c.WaitTimers(2, time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "1 timers armed, want at least 2") {
		t.Fatalf("got %v", err)
	}
	err = c.WaitTimerAt(t0.Add(time.Hour), time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "2026-11-22T10:00:01Z") {
		t.Fatalf("error should list the armed deadline: %v", err)
	}
}

func TestClockConcurrentUse(t *testing.T) {
	c := NewClock(t0)
	const n = 8
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tm := c.NewTimer(time.Second)
			for range 20 {
				<-tm.C()
				tm.Reset(time.Second)
			}
			tm.Stop()
		}()
	}
	for range 20 {
		if err := c.WaitTimers(n, wait); err != nil {
			t.Fatal(err)
		}
		c.Advance(time.Second)
	}
	wg.Wait()
	if got, want := c.Now(), t0.Add(20*time.Second); !got.Equal(want) {
		t.Fatalf("Now = %v, want %v", got, want)
	}
}

func TestSensorScript(t *testing.T) {
	c := NewClock(t0)
	boom := errors.New("boom")
	s := NewSensor("x", sensors.Temperature, sensors.Humidity)
	s.Clock = c
	s.Then(
		Result{Values: []float64{1, 2}, Take: time.Second},
		Result{Err: boom},
		Result{Values: []float64{1}},
	)
	dst := make([]float64, 2)
	ctx := context.Background()
	if err := s.Sense(ctx, dst); err != nil || dst[0] != 1 || dst[1] != 2 {
		t.Fatalf("first: %v %v", err, dst)
	}
	if !c.Now().Equal(t0.Add(time.Second)) {
		t.Fatal("Take did not advance the clock")
	}
	if err := s.Sense(ctx, dst); !errors.Is(err, boom) {
		t.Fatalf("second: %v", err)
	}
	if err := s.Sense(ctx, dst); err == nil {
		t.Fatal("wrong number of values accepted")
	}
	if err := s.Sense(ctx, dst); !errors.Is(err, ErrExhausted) {
		t.Fatalf("exhausted: %v", err)
	}
	s.Func = func(_ context.Context, call int, dst []float64) error {
		dst[0], dst[1] = float64(call), 0
		return nil
	}
	if err := s.Sense(ctx, dst); err != nil || dst[0] != 5 {
		t.Fatalf("func: %v %v", err, dst)
	}
	if s.Calls() != 5 {
		t.Fatalf("Calls = %d", s.Calls())
	}
	s.Halt()
	if err := s.Sense(ctx, dst); !errors.Is(err, ErrHalted) || !s.Halted() {
		t.Fatalf("after Halt: %v", err)
	}
}

func TestSensorWait(t *testing.T) {
	gate := make(chan struct{})
	s := NewSensor("x", sensors.Temperature).Then(
		Result{Wait: gate, Values: []float64{1}},
		Result{Wait: gate, IgnoreCtx: true, Values: []float64{2}},
	)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dst := make([]float64, 1)
	if err := s.Sense(ctx, dst); !errors.Is(err, context.Canceled) || !errors.Is(s.CtxErr(), context.Canceled) {
		t.Fatalf("ctx-respecting wait: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Sense(ctx, dst) }()
	// The second result ignores the done ctx; it returns only when the
	// gate opens.
	close(gate)
	if err := <-done; err != nil || dst[0] != 2 {
		t.Fatalf("ignoring wait: %v %v", err, dst)
	}
	if s.Overlaps() != 0 {
		t.Fatal("overlap reported for sequential calls")
	}
}

func TestSensorOverlaps(t *testing.T) {
	entered, gate := make(chan struct{}), make(chan struct{})
	s := NewSensor("x", sensors.Temperature)
	s.Func = func(_ context.Context, call int, dst []float64) error {
		if call == 1 {
			close(entered)
			<-gate
		}
		dst[0] = float64(call)
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- s.Sense(context.Background(), make([]float64, 1)) }()
	<-entered
	if err := s.Sense(context.Background(), make([]float64, 1)); err != nil {
		t.Fatal(err)
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.Overlaps() != 1 {
		t.Fatalf("Overlaps = %d, want 1", s.Overlaps())
	}
}

// TestInstantClock: an instant clock fires each timer as it is armed and
// moves to its deadline; every clock counts and, once asked, records the
// durations armed, by NewTimer and by Reset alike.
func TestInstantClock(t *testing.T) {
	c := NewInstantClock()
	start := c.Now()
	tm := c.NewTimer(2 * time.Second)
	if v, ok := recv(t, tm); !ok || !v.Equal(start.Add(2*time.Second)) || !c.Now().Equal(v) {
		t.Fatalf("NewTimer(2s): fired %v at %v, now %v", ok, v, c.Now())
	}
	c.RecordWaits()
	tm.Reset(3 * time.Millisecond)
	if v, ok := recv(t, tm); !ok || !v.Equal(start.Add(2*time.Second+3*time.Millisecond)) {
		t.Fatalf("Reset(3ms): fired %v at %v", ok, v)
	}
	tm.Reset(time.Millisecond)
	if tm.Stop() != true {
		t.Error("Stop of a fired, unreceived timer = false, want true (as time.Timer)")
	}
	if _, ok := recv(t, tm); ok {
		t.Error("a value was left in C after Stop")
	}
	if n, last, total := c.Waits(); n != 3 || last != time.Millisecond || total != 2*time.Second+4*time.Millisecond {
		t.Errorf("Waits = %d, %v, %v; want 3, 1ms, 2.004s", n, last, total)
	}
	if got := c.TakeWaits(); len(got) != 2 || got[0] != 3*time.Millisecond || got[1] != time.Millisecond {
		t.Errorf("TakeWaits = %v, want [3ms 1ms]", got)
	}
	if got := c.TakeWaits(); got != nil {
		t.Errorf("second TakeWaits = %v, want nothing new", got)
	}

	m := NewClock(t0)
	m.NewTimer(time.Second)
	if n, last, _ := m.Waits(); n != 1 || last != time.Second || m.Pending() != 1 {
		t.Errorf("manual clock: Waits %d, %v; pending %d", n, last, m.Pending())
	}
}

// TestClockStepMovesWallOnly pins what the clock-trust tests rely on: a
// step moves Now, not Mono, and fires no timer; the timer still fires
// after the Advance it was armed for.
func TestClockStepMovesWallOnly(t *testing.T) {
	c := NewClock(time.Unix(0, 0).UTC())
	tm := c.NewTimer(10 * time.Second)
	c.Advance(4 * time.Second)
	if got := c.Mono(); got != 4*time.Second {
		t.Fatalf("Mono after Advance(4s) = %v", got)
	}
	c.Step(56 * 365 * 24 * time.Hour) // NTP: 1970 to 2026
	if got := c.Mono(); got != 4*time.Second {
		t.Errorf("Mono after a step = %v, want 4s", got)
	}
	if want := time.Unix(4, 0).Add(56 * 365 * 24 * time.Hour); !c.Now().Equal(want) {
		t.Errorf("Now after a step = %v, want %v", c.Now(), want)
	}
	if _, ok := recv(t, tm); ok {
		t.Fatal("a forward step fired a timer")
	}
	c.Step(-time.Hour)
	c.Advance(5 * time.Second)
	if _, ok := recv(t, tm); ok {
		t.Fatal("timer fired after 9s of its 10s")
	}
	c.Advance(time.Second)
	if _, ok := recv(t, tm); !ok {
		t.Fatal("timer did not fire after 10s of monotonic time")
	}
	if got := c.Mono(); got != 10*time.Second {
		t.Errorf("Mono = %v, want 10s", got)
	}
	ic := NewInstantClock()
	ic.NewTimer(3 * time.Second)
	if got := ic.Mono(); got != 3*time.Second {
		t.Errorf("instant clock Mono = %v, want 3s", got)
	}
}
