package sensors_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

func TestWaiter(t *testing.T) {
	clk := sensorstest.NewInstantClock()
	w := sensors.NewWaiter(clk)
	ctx := context.Background()
	for _, d := range []time.Duration{15500 * time.Microsecond, 180 * time.Millisecond} {
		if err := w.Wait(ctx, d); err != nil {
			t.Fatal(err)
		}
		if _, last, _ := clk.Waits(); last != d {
			t.Fatalf("waited %v, want %v", last, d)
		}
	}
	if n, _, _ := clk.Waits(); n != 2 {
		t.Fatalf("%d waits, want 2", n)
	}
	allocs := testing.AllocsPerRun(100, func() { _ = w.Wait(ctx, time.Millisecond) })
	if allocs != 0 {
		t.Errorf("Wait allocates %v times per call, want 0", allocs)
	}
}

func TestWaiterHonoursContext(t *testing.T) {
	clk := sensorstest.NewClock(time.Time{}) // never advanced: its timers never fire
	w := sensors.NewWaiter(clk)

	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Wait(done, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on an ended context = %v", err)
	}
	if n, _, _ := clk.Waits(); n != 0 {
		t.Fatalf("a timer was started for an ended context")
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); cancel() }()
	err := w.Wait(ctx, time.Hour) // the blocked clock never fires
	wg.Wait()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
	w.Stop()
}
