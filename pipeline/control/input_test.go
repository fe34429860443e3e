package control_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

// stallCapturer is the uplink's disk buffer on an SD card that stalls:
// the first n Captures made at or after from each take 10 s of the
// injected clock, one after the other, as fsyncs on one card do. It
// counts writes rather than watching a time window: captures run on the
// broker's side, which may fall behind the rig's clock (that is the
// point), so a window could pass before any capture looked at the time.
type stallCapturer struct {
	clk  *sensorstest.Clock
	from time.Time
	n    int
	// done ends a stall whose timer the rig will no longer fire (it
	// started after the rig's last step), so closing the broker, which
	// waits for Publish, does not hang.
	done chan struct{}
	// one lets one write at a time through, as one card does. It is a
	// channel, not a mutex, so that a capture waiting for another's
	// stall counts as settled (synctest.Wait).
	one     chan struct{}
	stalled atomic.Int32
}

// begin readies c for the rig on clk. It is called in the rig's bubble:
// channels made there are the ones synctest.Wait sees settle.
func (c *stallCapturer) begin(clk *sensorstest.Clock) {
	c.clk, c.done, c.one = clk, make(chan struct{}), make(chan struct{}, 1)
}

func (c *stallCapturer) Capture(localbroker.Message) error {
	c.one <- struct{}{}
	defer func() { <-c.one }()
	if int(c.stalled.Load()) >= c.n || c.clk.Now().Before(c.from) {
		return nil
	}
	c.stalled.Add(1)
	select {
	case <-c.clk.NewTimer(10 * time.Second).C():
	case <-c.done:
	}
	return nil
}

// switchLog records what the loop does to its actuator, and when.
type switchLog struct {
	sensors.Actuator
	clk *sensorstest.Clock

	mu  sync.Mutex
	log []string
}

func (s *switchLog) Set(level float64) error {
	s.add(fmt.Sprintf("set(%v)", level))
	return s.Actuator.Set(level)
}

func (s *switchLog) Safe() error {
	s.add("safe")
	return s.Actuator.Safe()
}

func (s *switchLog) add(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, fmt.Sprintf("%s@%v", what, s.clk.Now().Sub(t0)))
}

func (s *switchLog) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// TestStalledDiskDoesNotDelayControlIssue9 runs the Pi example's loop
// over the sim plant with edged's real broker between the Poller, the
// pipeline and the loop's state, twice: once with a disk buffer that
// always answers at once, once with one whose every write takes 10 s for
// 3 minutes (readings and the loop's state are both captured, as the
// example's uplink forwards both). The heater must switch at exactly the
// same times in both runs, and the loop must see no input fault.
//
// Before issue 9 the loop took its input from the pipeline after the
// broker's capture, and published its state from its own goroutine: each
// stalled write held the next sample and the next relay switch.
func TestStalledDiskDoesNotDelayControlIssue9(t *testing.T) {
	ex := loadExample(t, "../../configs/examples/pi-greenhouse.yaml", 0.3)
	stallFrom := t0.Add(time.Hour)
	// The broker runs outside the rig's bubble: its listener waits on a
	// socket, which synctest.Wait cannot see the end of. The rig, its
	// clock and the capturer's stalls are inside, so they settle.
	run := func(stall bool) (calls []string, stalled int) {
		o := localbroker.DefaultOpts()
		o.MQTT, o.WebSocket = "127.0.0.1:0", "" // a port the kernel picks; nobody connects
		b, err := localbroker.New(o, "edged/test", nil)
		if err != nil {
			t.Fatal(err)
		}
		cap := &stallCapturer{from: stallFrom}
		if stall {
			cap.n = 18 // 3 minutes of stalled writes
		}
		b.SetCapturer(cap)
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		defer b.Close() // after the rig has stopped
		synctest.Test(t, func(t *testing.T) {
			var rec *switchLog
			r := newRigOn(t, ex, samples, b, func(a sensors.Actuator) sensors.Actuator {
				rec = &switchLog{Actuator: a}
				return rec
			})
			rec.clk = r.clk
			cap.begin(r.clk)
			r.start()
			t.Cleanup(func() { close(cap.done) }) // first of all: the rig's stop waits for the queue, which may be in a stall
			r.runUntil(stallFrom.Add(-time.Minute))
			r.resetCounts()
			r.runUntil(stallFrom.Add(10 * time.Minute))
			if r.stale != 0 || r.faulted != 0 {
				t.Errorf("stall %v: %d stale faults, %v with an input fault", stall, r.stale, r.faulted)
			}
			calls = rec.take()
		})
		return calls, int(cap.stalled.Load())
	}
	want, _ := run(false)
	got, stalled := run(true)
	t.Logf("%d captures stalled for 10 s each; %d actuator calls", stalled, len(got))
	if stalled < 10 {
		t.Fatalf("only %d captures stalled: the test does not stall the disk", stalled)
	}
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("with the disk stalled the actuator calls differ from call %d on: got %v, want %v", i, got[i:min(i+5, len(got))], want[i:min(i+5, len(want))])
			}
		}
		t.Fatalf("with the disk stalled %d actuator calls, without %d", len(got), len(want))
	}
}
