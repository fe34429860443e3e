package uplink

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
	"github.com/edged/edged/uplink/wal"
)

type stateRec struct{ ch chan []byte }

func (r stateRec) PublishState(b []byte) error { r.ch <- b; return nil }

// TestStatePublishedOnChangeAtMostEvery5s drives the state publisher on a
// fake clock: one publication per period at most, none while nothing
// changes, the age of the oldest unsent message in it.
func TestStatePublishedOnChangeAtMostEvery5s(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	clk := sensorstest.NewClock(t0)
	o := testOpts("127.0.0.1:1")
	o.Buffer.Sync = wal.SyncNone // records visible at once, no sync timers
	u, err := New(o, t.TempDir(), "gh-01", nil, clk)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close(context.Background())
	rec := stateRec{ch: make(chan []byte, 10)}
	u.SetStatePublisher(rec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.publishStates(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	step := func(at time.Duration) {
		t.Helper()
		if err := clk.WaitTimerAt(t0.Add(at), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		clk.AdvanceTo(t0.Add(at))
		// The next period's timer is armed after the decision.
		if err := clk.WaitTimerAt(t0.Add(at+stateEvery), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	got := func() (Stats, bool) {
		select {
		case b := <-rec.ch:
			var s Stats
			if err := json.Unmarshal(b, &s); err != nil {
				t.Fatalf("state %s: %v", b, err)
			}
			return s, true
		default:
			return Stats{}, false
		}
	}

	step(5 * time.Second)
	s, ok := got()
	if !ok || s.Backlog != 0 || s.Connected || s.Epoch == "" || s.Dropped == nil {
		t.Fatalf("first state: %+v (published %v)", s, ok)
	}
	step(10 * time.Second)
	if s, ok := got(); ok {
		t.Fatalf("state published again with nothing changed: %+v", s)
	}
	if _, err := u.Capture("t/a", []byte("x"), 1, false); err != nil {
		t.Fatal(err)
	}
	step(15 * time.Second)
	s, ok = got()
	if !ok || s.Backlog != 1 || s.OldestAgeSec != 5 {
		t.Fatalf("after a capture at +10s, state at +15s: %+v (published %v); want backlog 1, oldest 5 s", s, ok)
	}
	if _, ok := got(); ok {
		t.Fatal("more than one state in one period")
	}
}
