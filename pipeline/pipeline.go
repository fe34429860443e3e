// Package pipeline turns readings into MQTT topics and payloads and hands
// them to a Publisher (the local broker), and tells the gateway's status
// and each sensor's availability. It also fans published readings out to
// observers.
//
// It owns the payload format of README "Topics and payloads", which LAN
// apps and the cloud rely on; the topic names come from sensors/topics. It does
// no I/O of its own.
package pipeline

import (
	"bytes"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/ratelog"
	"github.com/edged/edged/sensors/topics"
	"github.com/edged/edged/sensors/wallclock"
)

// Publisher takes a message for the local broker. The pipeline never
// reuses a payload after passing it: the broker may keep it (retained).
type Publisher interface {
	Publish(topic string, payload []byte, retain bool) error
}

// Observer sees every reading after it was published. Input must not
// block. Control loops do not observe the pipeline: they take every
// sample from the Poller (sensors.SampleObserver), which neither waits
// on the Publisher nor depends on the rate filters. An observer that also has a method
// Availability(sensor string, online bool) is told availability changes.
type Observer interface {
	Input(sensors.Reading)
}

type availabilityObserver interface {
	Availability(sensor string, online bool)
}

// Status payloads, retained on PREFIX/status and on the availability
// topics.
const (
	Online  = "online"
	Offline = "offline"
)

// Pipeline implements sensors.Sink.
type Pipeline struct {
	tree topics.Tree
	pub  Publisher
	log  *slog.Logger

	mu        sync.RWMutex
	topics    map[topicKey]string // cached PREFIX/sensor/<id>/<quantity>
	observers []Observer

	published atomic.Uint64
	failed    atomic.Uint64
	warn      *ratelog.Limiter

	trust Trust
	boot  string // trust's boot id, as text
}

// Trust tells whether a reading's time can be believed
// (sensors/wallclock.Clock): see README "Clock".
type Trust interface {
	// Unsynced reports whether a time taken at mono (Reading.Mono) was
	// taken before the wall clock was trusted, and its time since boot.
	Unsynced(mono time.Duration) (sinceBoot time.Duration, unsynced bool)
	Boot() wallclock.BootID
}

// SetTrust makes readings taken before the wall clock is trusted carry
// "clock":"unsynced" with their boot id and time since boot. Call it
// before readings flow.
func (p *Pipeline) SetTrust(t Trust) {
	p.trust, p.boot = t, t.Boot().String()
}

var _ sensors.Sink = (*Pipeline)(nil)

type topicKey struct {
	sensor string
	q      sensors.Quantity
}

// New returns a pipeline publishing under prefix (e.g. "edged/gh-01").
func New(prefix string, pub Publisher, log *slog.Logger) *Pipeline {
	log = sensors.LogOrDiscard(log)
	return &Pipeline{
		tree:   topics.New(prefix),
		pub:    pub,
		log:    log.With("component", "pipeline"),
		topics: map[topicKey]string{},
		warn:   ratelog.New(time.Minute, 1, nil),
	}
}

// Observe adds an observer; call it before readings flow.
func (p *Pipeline) Observe(o Observer) {
	p.mu.Lock()
	p.observers = append(p.observers, o)
	p.mu.Unlock()
}

// Reading publishes r, retained, as
// {"value":21.37,"unit":"°C","ts":"2026-11-22T10:00:00.123Z"}, then hands
// it to the observers.
func (p *Pipeline) Reading(r sensors.Reading) {
	if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) || !r.Quantity.Valid() {
		p.fail("dropped an invalid reading", r.Sensor, nil)
		return
	}
	topic := p.topic(r.Sensor, r.Quantity)
	var payload []byte
	if since, unsynced := p.unsynced(r); unsynced {
		payload = appendUnsynced(AppendPayload(make([]byte, 0, 192), r), p.boot, since)
	} else {
		payload = AppendPayload(make([]byte, 0, 64), r)
	}
	if err := p.pub.Publish(topic, payload, true); err != nil {
		p.fail("publish failed", topic, err)
	} else {
		p.published.Add(1)
	}
	p.mu.RLock()
	obs := p.observers
	p.mu.RUnlock()
	for _, o := range obs {
		o.Input(r)
	}
}

// unsynced reports whether r was taken before the wall clock was trusted.
func (p *Pipeline) unsynced(r sensors.Reading) (time.Duration, bool) {
	if p.trust == nil {
		return 0, false
	}
	return p.trust.Unsynced(r.Mono)
}

// Availability publishes "online" or "offline", retained.
func (p *Pipeline) Availability(sensor string, online bool) {
	topic := p.tree.Availability(sensor)
	if err := p.pub.Publish(topic, []byte(word(online)), true); err != nil {
		p.fail("publish failed", topic, err)
	}
	p.mu.RLock()
	obs := p.observers
	p.mu.RUnlock()
	for _, o := range obs {
		if a, ok := o.(availabilityObserver); ok {
			a.Availability(sensor, online)
		}
	}
}

// Status publishes the gateway's own status, retained.
func (p *Pipeline) Status(online bool) error {
	return p.pub.Publish(p.tree.Status(), []byte(word(online)), true)
}

// Stats returns how many readings were published and how many publishes
// failed.
func (p *Pipeline) Stats() (published, failed uint64) {
	return p.published.Load(), p.failed.Load()
}

func word(online bool) string {
	if online {
		return Online
	}
	return Offline
}

func (p *Pipeline) topic(sensor string, q sensors.Quantity) string {
	k := topicKey{sensor, q}
	p.mu.RLock()
	t, ok := p.topics[k]
	p.mu.RUnlock()
	if ok {
		return t
	}
	t = p.tree.Sensor(sensor, q)
	p.mu.Lock()
	p.topics[k] = t
	p.mu.Unlock()
	return t
}

func (p *Pipeline) fail(msg, where string, err error) {
	p.failed.Add(1)
	p.warn.Log(p.log, slog.LevelWarn, "publish", msg, "topic", where, "error", err)
}

// AppendPayload appends the JSON payload of r to b. Values are rounded to
// 4 decimals (far below any sensor's resolution) so that 21.37 does not
// travel as 21.369999999999997; the time is UTC with milliseconds.
func AppendPayload(b []byte, r sensors.Reading) []byte {
	b = append(b, `{"value":`...)
	b = strconv.AppendFloat(b, math.Round(r.Value*1e4)/1e4, 'f', -1, 64)
	b = append(b, `,"unit":"`...)
	b = append(b, r.Quantity.Unit()...) // units are plain text, no JSON escaping needed
	b = append(b, `","ts":"`...)
	b = r.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	return append(b, `"}`...)
}

// The fields a reading taken before the wall clock was trusted carries
// after "ts", and the mark of one corrected on its way to the cloud.
const (
	unsyncedMark  = `,"clock":"unsynced","boot":"`
	sinceBootMark = `","since_boot":`
	correctedTail = `,"clock":"corrected"}`
	tsLen         = len("2006-01-02T15:04:05.000Z")
)

// appendUnsynced turns a payload of AppendPayload into one of a reading
// taken before the wall clock was trusted:
// {...,"ts":"1970-01-01T00:00:12.000Z","clock":"unsynced","boot":"d75dffaf-...","since_boot":19.25}
// (since_boot in seconds, to the millisecond).
func appendUnsynced(b []byte, boot string, sinceBoot time.Duration) []byte {
	b = append(b[:len(b)-1], unsyncedMark...)
	b = append(b, boot...)
	b = append(b, sinceBootMark...)
	b = strconv.AppendFloat(b, float64(sinceBoot.Milliseconds())/1e3, 'f', 3, 64)
	return append(b, '}')
}

// Corrector maps a stamp of this boot to wall time once the clock is
// trusted (sensors/wallclock.Clock).
type Corrector interface {
	Boot() wallclock.BootID
	Correct(boot wallclock.BootID, sinceBoot time.Duration) (time.Time, bool)
}

// Restamper returns the uplink's payload restamper (uplink.Restamper) for
// readings: a payload marked "clock":"unsynced" of this boot gets the
// wall time its since_boot maps to as "ts", and "clock":"corrected" in
// place of the stamp. Anything else (another payload, another boot, a
// clock not trusted yet) is left as it is (ok false).
func Restamper(c Corrector) func(dst, payload []byte) ([]byte, bool) {
	return func(dst, payload []byte) ([]byte, bool) {
		i := bytes.LastIndex(payload, []byte(unsyncedMark))
		if i < len(`"ts":"`)+tsLen+1 || !bytes.HasSuffix(payload, []byte("}")) {
			return nil, false
		}
		tsAt := i - tsLen - 2 // the opening quote of the time
		if string(payload[tsAt-len(`"ts":`):tsAt+1]) != `"ts":"` {
			return nil, false
		}
		rest := payload[i+len(unsyncedMark) : len(payload)-1]
		j := bytes.Index(rest, []byte(sinceBootMark))
		if j < 0 {
			return nil, false
		}
		boot, err := wallclock.ParseBootID(string(rest[:j]))
		if err != nil {
			return nil, false
		}
		secs, err := strconv.ParseFloat(string(rest[j+len(sinceBootMark):]), 64)
		if err != nil || !(secs >= 0 && secs < 1e9) { // 31 years of uptime; no overflow, no NaN
			return nil, false
		}
		t, ok := c.Correct(boot, time.Duration(math.Round(secs*1e3))*time.Millisecond)
		if !ok {
			return nil, false
		}
		dst = append(dst, payload[:tsAt+1]...)
		dst = t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
		dst = append(dst, '"')
		return append(dst, correctedTail...), true
	}
}
