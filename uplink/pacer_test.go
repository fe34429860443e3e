package uplink

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
	"github.com/edged/edged/uplink/wal"
)

// TestPacerNeverOverLimit: a feed that takes every publish the pacer
// allows, at random moments over 20 s, never has more than the limit
// (with the session's "online" status at the start) in any one-second
// window, and still sends close to the limit on average.
func TestPacerNeverOverLimit(t *testing.T) {
	for _, limit := range []int{100, 20} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			t0 := time.Unix(1000, 0)
			p := newPacer(limit, t0)
			sent := []time.Time{t0} // the status
			rng := rand.New(rand.NewPCG(1, uint64(limit)))
			for now := t0; now.Sub(t0) < 20*time.Second; now = now.Add(time.Duration(rng.Int64N(int64(30 * time.Millisecond)))) {
				n := p.available(now)
				p.take(n)
				for range n {
					sent = append(sent, now)
				}
			}
			for i := range sent {
				j := i
				for j < len(sent) && sent[j].Sub(sent[i]) < time.Second {
					j++
				}
				if j-i > limit {
					t.Fatalf("%d publishes in the second from %v, limit %d", j-i, sent[i].Sub(t0), limit)
				}
			}
			if rate := float64(len(sent)) / 20; rate < 0.8*float64(limit) {
				t.Errorf("%.1f publishes/s over 20 s, want close to the limit %d", rate, limit)
			}
		})
	}
}

// TestPacerWait: the feed waits for a batch of publishes, not one, to
// the nanosecond.
func TestPacerWait(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := newPacer(100, t0)
	per := (time.Second + 89) / 90
	if n := p.available(t0); n != 9 {
		t.Fatalf("%d at the start, want 9 (a burst of 10 less the status)", n)
	}
	p.take(9)
	if n, w := p.available(t0), p.wait(); n != 0 || w != 5*per {
		t.Fatalf("after the burst: %d available, wait %v; want 0 and %v", n, w, 5*per)
	}
	if n := p.available(t0.Add(5*per - 1)); n != 4 {
		t.Errorf("a nanosecond early: %d, want 4", n)
	}
	if n := p.available(t0.Add(time.Hour)); n != 10 {
		t.Errorf("after an hour idle: %d, want the burst of 10", n)
	}
	// A clock stepped back an hour (no monotonic reading) refills from
	// the new time instead of waiting for the old one.
	p.take(10)
	if n := p.available(t0.Add(time.Hour)); n != 0 {
		t.Fatalf("after the burst: %d", n)
	}
	p.available(t0)
	if n := p.available(t0.Add(5 * per)); n != 5 {
		t.Errorf("after a step back: %d available %v later, want 5", n, 5*per)
	}
}

// TestPresetRateLimitPacesDrain: with a preset's rate limit (AWS IoT
// Core's 100 publishes per second per connection), a backlog leaves in
// paced batches on the injected clock, captures made meanwhile return at
// once and leave in turn, and every message arrives once.
// TestPacedGoodbye: the "offline" status at a stop counts against the
// preset's rate like any publish (review: a stop during a full-rate
// drain sent a 101st in one second): with the bucket spent, it waits on
// the clock for one publish's credit.
func TestPacedGoodbye(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	clk := sensorstest.NewClock(t0)
	f := newFakeCloud(t, "")
	o := testOpts(f.addr())
	o.Buffer.Sync = wal.SyncNone
	o.MaxInflight = 64
	u, err := New(o, t.TempDir(), "gh-01", nil, clk)
	if err != nil {
		t.Fatal(err)
	}
	u.preset = &Preset{Name: "paced", MaxPublishRate: 100}
	for range 9 { // the bucket of 10, less the "online" status
		if _, err := u.Capture("t/a", []byte("x"), 1, false); err != nil {
			t.Fatal(err)
		}
	}
	u.Start()
	deadline := time.Now().Add(10 * time.Second) // a hang guard
	for len(f.received()) < 9 {
		if time.Now().After(deadline) {
			t.Fatalf("the cloud got %d messages, want 9", len(f.received()))
		}
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- u.Close(context.Background()) }()
	per := (time.Second + 89) / 90
	if err := clk.WaitTimerAt(t0.Add(per), 10*time.Second); err != nil {
		t.Fatalf("the goodbye did not wait for the pacer: %v", err)
	}
	f.mu.Lock()
	statuses := slices.Clone(f.statuses)
	f.mu.Unlock()
	if slices.Contains(statuses, "offline") {
		t.Fatalf("offline sent before the pacer allowed it (statuses %q)", statuses)
	}
	clk.AdvanceTo(t0.Add(per))
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	statuses = slices.Clone(f.statuses)
	f.mu.Unlock()
	if !slices.Equal(statuses, []string{"online", "offline"}) {
		t.Errorf("statuses %q, want online then offline", statuses)
	}
}

func TestPresetRateLimitPacesDrain(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	clk := sensorstest.NewClock(t0)
	f := newFakeCloud(t, "")
	o := testOpts(f.addr())
	o.Buffer.Sync = wal.SyncNone // records readable at once, no sync timers
	o.MaxInflight = 64
	u, err := New(o, t.TempDir(), "gh-01", nil, clk)
	if err != nil {
		t.Fatal(err)
	}
	aws := Presets["aws-iot-core"]
	if aws.MaxPublishRate != 100 {
		t.Fatalf("aws-iot-core MaxPublishRate %d, want AWS's documented 100", aws.MaxPublishRate)
	}
	u.preset = &Preset{Name: "paced", MaxPublishRate: aws.MaxPublishRate} // AWS's rate without its TLS
	capture := func(n int) {
		t.Helper()
		for range n {
			if _, err := u.Capture("t/a", []byte("x"), 1, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	capture(40)
	u.Start()
	defer u.Close(context.Background())
	waitGot := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second) // a hang guard
		for len(f.received()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("the cloud got %d messages, want %d", len(f.received()), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	per := (time.Second + 89) / 90
	waitGot(9) // the burst, less the status
	for k, want := 1, 9; want < 50; k++ {
		at := t0.Add(time.Duration(k) * 5 * per)
		if err := clk.WaitTimerAt(at, 10*time.Second); err != nil {
			t.Fatalf("batch %d: %v", k, err)
		}
		if got := len(f.received()); got != want {
			t.Fatalf("batch %d: the cloud got %d before the paced wait ended, want %d", k, got, want)
		}
		if k == 2 {
			capture(10) // returns at once: the pacer never holds a capture
		}
		clk.AdvanceTo(at)
		want = min(want+5, 50)
		waitGot(want)
	}
	seen := map[uint64]bool{}
	for _, g := range f.received() {
		if seen[g.seq] {
			t.Errorf("seq %d sent twice", g.seq)
		}
		seen[g.seq] = true
	}
	if len(seen) != 50 {
		t.Errorf("%d distinct messages, want 50", len(seen))
	}
}
