package uplink

import "time"

// pacer keeps one connection's publishes within a cloud's documented
// rate limit (Preset.MaxPublishRate, e.g. AWS IoT Core's 100 publish
// requests per second per connection, above which AWS throttles and
// disconnects): a token bucket of a tenth of the limit that refills at
// the rest, so that no second, however it is cut, sees more than the
// limit. It is used under the feed's lock and never waits: the
// session's goroutine waits on the clock for it, and a capture is never
// held up (its record waits in the buffer as any backlog does).
//
// Credit is kept in time, in whole nanoseconds, so the deadlines a fake
// clock sees are exact.
type pacer struct {
	per    time.Duration // the credit one publish costs
	max    time.Duration // the bucket: burst × per
	batch  int           // how many publishes the feed waits for at once
	credit time.Duration
	last   time.Time
}

// newPacer returns a pacer for limit (at least 2) publishes a second,
// starting at now with a full bucket less the one publish the session's
// "online" status takes.
func newPacer(limit int, now time.Time) *pacer {
	burst := max(limit/10, 1)
	rate := max(limit-burst, 1)
	per := (time.Second + time.Duration(rate) - 1) / time.Duration(rate) // rounded up: never above rate
	p := &pacer{per: per, max: time.Duration(burst) * per, batch: max(burst/2, 1), last: now}
	p.credit = p.max - per
	return p
}

// available returns how many publishes may go at now.
func (p *pacer) available(now time.Time) int {
	if d := now.Sub(p.last); d > 0 {
		p.credit = min(p.max, p.credit+d)
	}
	p.last = now // a clock stepped back refills from now on, never stalls
	return int(p.credit / p.per)
}

// take spends the credit of n publishes that available allowed.
func (p *pacer) take(n int) { p.credit -= time.Duration(n) * p.per }

// wait returns how long after the last available call a batch of
// publishes may go: the feed waits that long, not one publish's worth,
// so a drain writes a few PUBLISHes per wake-up.
func (p *pacer) wait() time.Duration {
	return max(time.Duration(p.batch)*p.per-p.credit, 0)
}
