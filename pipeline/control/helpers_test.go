package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// capWait bounds how long a test waits for a goroutine of the loop. The
// tests that run a loop run in a synctest bubble, whose time passes only
// when every goroutine in it is blocked: a wait that a bug would make
// endless ends at once, and fails the test.
const capWait = 10 * time.Second

// call is one call the fake actuator took.
type call struct {
	op    string // "set" or "safe"
	level float64
	at    time.Duration // since t0
}

func (c call) String() string { return fmt.Sprintf("%s(%v)@%v", c.op, c.level, c.at) }

// fakeActuator records its calls with the fake clock's time and fails Set
// while failSet is set.
type fakeActuator struct {
	clk *sensorstest.Clock

	mu      sync.Mutex
	calls   []call
	level   float64
	failSet error
}

var _ sensors.Actuator = (*fakeActuator)(nil)

func (a *fakeActuator) String() string { return "fake-heater" }

func (a *fakeActuator) Set(level float64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if level < 0 || level > 1 {
		return fmt.Errorf("fake: level %v out of range", level)
	}
	a.calls = append(a.calls, call{"set", level, a.clk.Now().Sub(t0)})
	if a.failSet != nil {
		return a.failSet
	}
	a.level = level
	return nil
}

func (a *fakeActuator) Level() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.level
}

func (a *fakeActuator) Safe() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, call{"safe", 0, a.clk.Now().Sub(t0)})
	a.level = 0
	return nil
}

func (a *fakeActuator) Halt() error { return a.Safe() }

func (a *fakeActuator) setFail(err error) {
	a.mu.Lock()
	a.failSet = err
	a.mu.Unlock()
}

// take returns the calls since the last take.
func (a *fakeActuator) take() []call {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.calls
	a.calls = nil
	return c
}

type message struct {
	topic   string
	payload string
	retain  bool
	at      time.Duration
}

// fakePublisher records messages and fails while fail is set.
type fakePublisher struct {
	clk  *sensorstest.Clock
	mu   sync.Mutex
	msgs []message
	fail error
}

func (p *fakePublisher) Publish(topic string, payload []byte, retain bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return p.fail
	}
	p.msgs = append(p.msgs, message{topic, string(payload), retain, p.clk.Now().Sub(t0)})
	return nil
}

func (p *fakePublisher) take() []message {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.msgs
	p.msgs = nil
	return m
}

func (p *fakePublisher) setFail(err error) {
	p.mu.Lock()
	p.fail = err
	p.mu.Unlock()
}

// logBuf collects log lines from the loop goroutine.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count returns how many log lines contain s.
func (l *logBuf) count(s string) int { return strings.Count(l.String(), s) }

func (l *logBuf) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func f64(v float64) *float64 { return &v }

// testOpts is a heater loop on air/temperature, bounds 5..30.
func testOpts() Opts {
	o := DefaultOpts()
	o.ID, o.Input, o.Output = "heat", "air/temperature", "heater"
	o.Setpoint = 20
	o.PID = Gains{Kp: 0.1}
	o.StaleAfter = 30 * time.Second
	o.SetpointMin, o.SetpointMax = f64(5), f64(30)
	return o
}

// harness is a loop on a fake clock, actuator and publisher.
type harness struct {
	t    *testing.T
	clk  *sensorstest.Clock
	act  *fakeActuator
	pub  *fakePublisher
	logs *logBuf
	l    *Loop
	stop func() error // cancels Run and returns its error
}

func newHarness(t *testing.T, o Opts, dir string) *harness {
	t.Helper()
	clk := sensorstest.NewClock(t0)
	h := &harness{t: t, clk: clk, act: &fakeActuator{clk: clk}, pub: &fakePublisher{clk: clk}, logs: &logBuf{}}
	l, err := New(o, h.act, clk, h.pub, "edged/gh-01", dir, h.logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	h.l = l
	return h
}

// startHarness is newHarness and start.
func startHarness(t *testing.T, o Opts, dir string) *harness {
	t.Helper()
	h := newHarness(t, o, dir)
	h.start()
	return h
}

// start runs the loop until the test ends (or stop is called).
func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.l.Run(ctx) }()
	var once sync.Once
	var runErr error
	h.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(capWait):
				runErr = errors.New("Run did not return")
			}
		})
		return runErr
	}
	h.t.Cleanup(func() {
		if err := h.stop(); err != nil {
			h.t.Error(err)
		}
	})
	h.settle()
}

// settle waits until the loop has handled everything already due: until
// every goroutine of the test's bubble (Run, publishLoop, saveLoop and
// whatever the test started) waits on a channel. A test that runs a loop
// runs in a bubble (synctest.Test) for this.
func (h *harness) settle() {
	h.t.Helper()
	synctest.Wait()
}

// advanceTo moves the clock to at, stopping at every timer on the way so
// the loop acts at the exact time it asked for.
func (h *harness) advanceTo(at time.Time) {
	h.t.Helper()
	for {
		next, ok := h.clk.Next()
		if !ok || next.After(at) {
			h.clk.AdvanceTo(at)
			h.settle()
			return
		}
		h.clk.AdvanceTo(next)
		h.settle()
	}
}

// read hands the loop a reading taken now and waits for it to act.
func (h *harness) read(v float64) {
	h.t.Helper()
	h.l.Input(sensors.Reading{Sensor: "air", Quantity: sensors.Temperature, Value: v, Time: h.clk.Now()})
	h.settle()
}

// command sends a command that must succeed.
func (h *harness) command(payload string) State {
	h.t.Helper()
	if _, err := h.l.Command([]byte(payload)); err != nil {
		h.t.Fatalf("Command(%s): %v", payload, err)
	}
	h.settle()
	return h.l.State()
}

func (h *harness) at(d time.Duration) time.Time { return t0.Add(d) }

func callsEqual(a, b []call) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].op != b[i].op || a[i].at != b[i].at || !near(a[i].level, b[i].level) {
			return false
		}
	}
	return true
}

func near(a, b float64) bool { d := a - b; return d < 1e-9 && d > -1e-9 }
