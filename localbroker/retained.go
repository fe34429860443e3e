package localbroker

import (
	"fmt"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// retainedStore keeps count of what mochi retains (every message, the
// gateway's own included) so LAN clients can be refused before the store
// outgrows its bounds. It is a mochi hook for the accounting; the
// refusal is the access hook's.
type retainedStore struct {
	mqtt.HookBase
	maxCount  int
	maxBytes  int64
	maxLevels int // of a topic (max_topic_levels)

	now func() time.Time

	mu       sync.Mutex
	sizes    map[string]int64 // topic -> bytes it holds (topic + payload)
	bytes    int64
	reserved []reservation // for delayed Wills, oldest first
}

// reservation is room held for a delayed retained Will until mochi
// retains it, or until it can no longer come (the client came back, or
// its session ended first).
type reservation struct {
	topic string
	size  int64
	until time.Time
}

// reserveGrace covers the time mochi's once-a-second loop takes to
// publish a delayed Will after its delay.
const reserveGrace = 3 * time.Second

func newRetainedStore(maxCount int, maxBytes int64, maxLevels int, now func() time.Time) *retainedStore {
	return &retainedStore{maxCount: maxCount, maxBytes: maxBytes, maxLevels: maxLevels, now: now, sizes: map[string]int64{}}
}

func (r *retainedStore) ID() string { return "edged-retained" }

func (r *retainedStore) Provides(b byte) bool {
	return b == mqtt.OnRetainMessage || b == mqtt.OnRetainedExpired
}

// fits reports whether retaining payloadLen bytes on topic would keep
// the store within its bounds; replacing or clearing a topic's message
// always counts only the difference.
func (r *retainedStore) fits(topic string, payloadLen int) error {
	if payloadLen == 0 {
		return nil // clears the topic
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fitsLocked(topic, int64(len(topic)+payloadLen))
}

// fitsLocked counts every unexpired reservation as an extra message.
func (r *retainedStore) fitsLocked(topic string, size int64) error {
	if n := topicLevels(topic); n > r.maxLevels {
		return fmt.Errorf("%w: %d levels, over max_topic_levels %d", errTooDeep, n, r.maxLevels)
	}
	now := r.now()
	for len(r.reserved) > 0 && now.After(r.reserved[0].until) {
		r.reserved = r.reserved[1:]
	}
	count, bytes := len(r.sizes)+len(r.reserved), r.bytes
	for _, v := range r.reserved {
		bytes += v.size
	}
	old, had := r.sizes[topic]
	if !had && count >= r.maxCount {
		return fmt.Errorf("localbroker: retained store full: %d messages (max_retained)", count)
	}
	if bytes-old+size > r.maxBytes {
		return fmt.Errorf("localbroker: retained store full: %d of %d bytes (max_retained_bytes)", bytes, r.maxBytes)
	}
	return nil
}

// reserve is fits for a Will retained after delay: the room is held from
// now until then (plus reserveGrace), so Wills waiting out their delay
// cannot together outgrow the store.
func (r *retainedStore) reserve(topic string, payloadLen int, delay time.Duration) error {
	if delay <= 0 || payloadLen == 0 {
		return r.fits(topic, payloadLen)
	}
	size := int64(len(topic) + payloadLen)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fitsLocked(topic, size); err != nil {
		return err
	}
	r.reserved = append(r.reserved, reservation{topic: topic, size: size, until: r.now().Add(delay + reserveGrace)})
	return nil
}

func (r *retainedStore) OnRetainMessage(_ *mqtt.Client, pk packets.Packet, _ int64) {
	r.set(pk.TopicName, len(pk.Payload))
}

func (r *retainedStore) OnRetainedExpired(topic string) { r.set(topic, 0) }

func (r *retainedStore) set(topic string, payloadLen int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, v := range r.reserved {
		if v.topic == topic { // the delayed Will it was held for
			r.reserved = append(r.reserved[:i:i], r.reserved[i+1:]...)
			break
		}
	}
	r.bytes -= r.sizes[topic]
	if payloadLen == 0 {
		delete(r.sizes, topic)
		return
	}
	size := int64(len(topic) + payloadLen)
	r.sizes[topic] = size
	r.bytes += size
}

// usage returns the retained message count and bytes.
func (r *retainedStore) usage() (int, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sizes), r.bytes
}
