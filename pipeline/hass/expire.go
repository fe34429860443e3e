package hass

import (
	"time"

	"github.com/edged/edged/sensors"
)

// ExpireAfter returns how long Home Assistant may go without a reading of
// quantity q before it shows the sensor as unavailable (expire_after),
// and false when there is no such bound: a delta filter with no heartbeat
// after it holds a steady value back for ever.
//
// It is twice the longest gap the filters allow between two published
// values of a working sensor, plus the time the Poller takes to call the
// sensor offline (offline_after samples, the last one timing out), so
// that Home Assistant never expires a sensor edged still calls online.
func ExpireAfter(p sensors.PollOpts, q sensors.Quantity) (time.Duration, bool) {
	gap, ok := PublishGap(p, q)
	if !ok {
		return 0, false
	}
	d := 2*gap + time.Duration(p.OfflineAfter)*p.Interval + p.EffectiveTimeout()
	return (d + time.Second - 1).Truncate(time.Second), true // whole seconds, rounded up
}

// PublishGap returns the longest time between two published values of
// quantity q of a sensor that samples without failures, as its filter
// chain allows (see sensors.Chain): every sample publishes unless a
// window's send_every paces it, a throttle holds values for its period,
// or a delta holds a steady value; a heartbeat later in the chain
// re-emits the latest value once its period is up, at the next sample.
// It is false when nothing bounds the gap.
func PublishGap(p sensors.PollOpts, q sensors.Quantity) (time.Duration, bool) {
	gap, bounded := p.Interval, true
	for i := range p.Filters {
		f := &p.Filters[i]
		if f.Quantity != 0 && f.Quantity != q {
			continue
		}
		switch {
		case f.SlidingWindowAverage != nil && f.SlidingWindowAverage.SendEvery > 1:
			gap *= time.Duration(f.SlidingWindowAverage.SendEvery)
		case f.Median != nil && f.Median.SendEvery > 1:
			gap *= time.Duration(f.Median.SendEvery)
		case f.Delta != nil:
			bounded = false
		case f.Throttle != nil:
			// The first value at least a period after the last one
			// passes: at most one gap later than the period.
			gap += *f.Throttle
		case f.Heartbeat != nil:
			// Every sample reaches the heartbeat, held back or not; it
			// emits at the first sample a period after its last emission.
			hb := *f.Heartbeat + p.Interval
			if !bounded || hb < gap {
				gap = hb
			}
			bounded = true
		}
	}
	return gap, bounded
}
