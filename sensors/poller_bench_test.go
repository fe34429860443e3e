package sensors_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

type countSink struct{ readings atomic.Int64 }

func (s *countSink) Reading(sensors.Reading)   { s.readings.Add(1) }
func (s *countSink) Availability(string, bool) {}

type countObserver struct{ samples atomic.Int64 }

func (o *countObserver) Sample(sensors.Reading)    { o.samples.Add(1) }
func (o *countObserver) Availability(string, bool) {}

// BenchmarkPoller20Sensors measures the Poller's cost per reading with 20
// sensors on a fake clock: scheduling, the Sense hand-off, the timeout
// timer, a two-step filter chain, a sample observer (a control loop's
// input) and the sink call. One op is one reading; allocs/op should be 0.
func BenchmarkPoller20Sensors(b *testing.B) {
	const n = 20
	clk := sensorstest.NewClock(t0)
	sink := &countSink{}
	p := sensors.NewPoller(clk, sink, nil)
	if err := p.Observe(&countObserver{}); err != nil {
		b.Fatal(err)
	}
	o := sensors.PollOpts{
		Interval: time.Second, Timeout: 300 * time.Millisecond, OfflineAfter: 3,
		Filters: []sensors.FilterSpec{{Offset: fp(-0.4)}, {Clamp: &sensors.ClampOpts{Min: fp(-40)}}},
	}
	for i := range n {
		s := sensorstest.NewSensor(fmt.Sprintf("s%02d", i), sensors.Temperature)
		s.Func = func(_ context.Context, call int, dst []float64) error {
			dst[0] = 20 + float64(call%10)/10
			return nil
		}
		if err := p.Add(s.Name, s, o); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	began := time.Now()
	rounds := int64(0)
	// round waits until every sensor has delivered this round's reading
	// and armed its next slot, then moves the clock to that slot. It spins
	// rather than blocks so that the driver itself allocates nothing.
	round := func() {
		rounds++
		for i := 0; sink.readings.Load() < rounds*n || clk.Pending() < n; i++ {
			if i%4096 == 4095 && time.Since(began) > time.Minute {
				b.Fatalf("stuck: %d readings after %d rounds, %d timers", sink.readings.Load(), rounds, clk.Pending())
			}
			runtime.Gosched()
		}
		clk.Advance(time.Second)
	}
	for range 10 { // warm-up: chains, timers, the clock's timer list
		round()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range (b.N + n - 1) / n {
		round()
	}
}
