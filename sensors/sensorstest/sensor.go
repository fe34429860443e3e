package sensorstest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged/edged/sensors"
)

// ErrExhausted is returned by Sense when the script is used up and no Func
// is set.
var ErrExhausted = errors.New("sensorstest: script exhausted")

// ErrHalted is returned by Sense after Halt.
var ErrHalted = errors.New("sensorstest: sensor halted")

// Result is one scripted outcome of Sense.
type Result struct {
	// Values are copied into dst; their number must match Quantities.
	Values []float64
	// Err is returned instead of values.
	Err error
	// Take advances Clock by this much before returning, as if the
	// measurement took that long (needs Sensor.Clock).
	Take time.Duration
	// Wait, if not nil, makes Sense block until it is closed or ctx is
	// done; in the latter case Sense returns ctx.Err().
	Wait <-chan struct{}
	// IgnoreCtx makes Sense wait for Wait even when ctx is done, like a
	// driver stuck in a blocking syscall.
	IgnoreCtx bool
}

// Sensor is a scripted fake sensors.Sensor. Sense pops the next Result off
// the script; once the script is empty it calls Func, and without a Func
// it returns ErrExhausted. Sense does not allocate, so benchmarks can use
// it.
//
// Script and Func may be set up before use; Then is safe while Sense runs.
type Sensor struct {
	Name string
	Qs   []sensors.Quantity
	// Clock is advanced by Result.Take.
	Clock *Clock
	// Func computes results after the script; call counts from 1.
	Func func(ctx context.Context, call int, dst []float64) error

	mu     sync.Mutex
	script []Result
	calls  int
	halted bool

	active   atomic.Int32
	overlaps atomic.Int32
	lastErr  atomic.Pointer[ctxErr]
}

type ctxErr struct{ err error }

var _ sensors.Sensor = (*Sensor)(nil)

// NewSensor returns a fake sensor of the given quantities.
func NewSensor(name string, qs ...sensors.Quantity) *Sensor {
	return &Sensor{Name: name, Qs: qs}
}

// Then appends results to the script and returns s.
func (s *Sensor) Then(rs ...Result) *Sensor {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, rs...)
	return s
}

// String implements sensors.Sensor.
func (s *Sensor) String() string { return "fake(" + s.Name + ")" }

// Quantities implements sensors.Sensor.
func (s *Sensor) Quantities() []sensors.Quantity { return s.Qs }

// Sense implements sensors.Sensor by playing the script.
func (s *Sensor) Sense(ctx context.Context, dst []float64) error {
	if s.active.Add(1) > 1 {
		s.overlaps.Add(1)
	}
	defer s.active.Add(-1)

	s.mu.Lock()
	s.calls++
	call := s.calls
	if s.halted {
		s.mu.Unlock()
		return ErrHalted
	}
	if len(s.script) == 0 {
		f := s.Func
		s.mu.Unlock()
		if f == nil {
			return ErrExhausted
		}
		return f(ctx, call, dst)
	}
	r := s.script[0]
	s.script[0] = Result{}
	s.script = s.script[1:]
	s.mu.Unlock()

	if r.Wait != nil {
		if r.IgnoreCtx {
			<-r.Wait
		} else {
			select {
			case <-r.Wait:
			case <-ctx.Done():
				err := ctx.Err()
				s.lastErr.Store(&ctxErr{err})
				return err
			}
		}
	}
	if r.Take > 0 && s.Clock != nil {
		s.Clock.Advance(r.Take)
	}
	if r.Err != nil {
		return r.Err
	}
	if len(r.Values) != len(dst) {
		return fmt.Errorf("sensorstest: %s: script has %d values, dst has %d", s.Name, len(r.Values), len(dst))
	}
	copy(dst, r.Values)
	return nil
}

// Halt implements sensors.Sensor; Sense fails after it.
func (s *Sensor) Halt() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.halted = true
	return nil
}

// Calls returns how often Sense has been called.
func (s *Sensor) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Overlaps returns how many Sense calls started while another was still
// running, which the sensors.Sensor contract forbids.
func (s *Sensor) Overlaps() int { return int(s.overlaps.Load()) }

// CtxErr returns the ctx error of the last Sense that a done context ended,
// or nil.
func (s *Sensor) CtxErr() error {
	if e := s.lastErr.Load(); e != nil {
		return e.err
	}
	return nil
}

// Halted reports whether Halt was called.
func (s *Sensor) Halted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.halted
}
