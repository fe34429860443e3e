package localbroker

import (
	"fmt"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// retainedStore keeps count of what mochi retains (every message, the
// gateway's own included) so LAN clients can be refused before the store
// outgrows its bounds. It is a mochi hook for the accounting; the
// refusal is the access hook's.
type retainedStore struct {
	mqtt.HookBase
	maxCount int
	maxBytes int64

	mu    sync.Mutex
	sizes map[string]int64 // topic -> bytes it holds (topic + payload)
	bytes int64
}

func newRetainedStore(maxCount int, maxBytes int64) *retainedStore {
	return &retainedStore{maxCount: maxCount, maxBytes: maxBytes, sizes: map[string]int64{}}
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
	size := int64(len(topic) + payloadLen)
	r.mu.Lock()
	defer r.mu.Unlock()
	old, had := r.sizes[topic]
	if !had && len(r.sizes) >= r.maxCount {
		return fmt.Errorf("localbroker: retained store full: %d messages (max_retained)", len(r.sizes))
	}
	if r.bytes-old+size > r.maxBytes {
		return fmt.Errorf("localbroker: retained store full: %d of %d bytes (max_retained_bytes)", r.bytes, r.maxBytes)
	}
	return nil
}

func (r *retainedStore) OnRetainMessage(_ *mqtt.Client, pk packets.Packet, _ int64) {
	r.set(pk.TopicName, len(pk.Payload))
}

func (r *retainedStore) OnRetainedExpired(topic string) { r.set(topic, 0) }

func (r *retainedStore) set(topic string, payloadLen int) {
	r.mu.Lock()
	defer r.mu.Unlock()
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
