package localbroker

import (
	"errors"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// dropHook counts and logs what mochi drops or cuts off on its own (see
// Stats.Dropped and Stats.PublishesRefused); the other reasons are
// counted where edged decides them.
//
// Where a message to a client can be lost, and what edged does:
//
//   - max_queued_messages QoS 1/2 messages to the client are
//     unacknowledged: mochi drops the next (Drops.InflightFull, mochi's
//     own count; it logs "client store quota reached", at most once a
//     minute per client here). This is Mosquitto's max_queued_messages:
//     a connected subscriber that does not acknowledge, or a persistent
//     one that is away, loses the newest messages, not its session.
//   - The client is away and max_sessions sessions of absent clients
//     are kept: the session whose client left first ends, with what was
//     queued for it (Drops.SessionEnded, counted in limits.end).
//   - clientConn's byte queue outgrows its bound, or a write blocks for
//     write_timeout: the client is disconnected as slow
//     (SlowDisconnects); its unacknowledged QoS 1/2 messages stay in a
//     persistent session and are sent again when it comes back.
type dropHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *dropHook) ID() string { return "edged-drops" }

func (h *dropHook) Provides(b byte) bool {
	return b == mqtt.OnDisconnect
}

// OnDisconnect counts the clients mochi cut off for what they sent.
func (h *dropHook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	switch {
	case errors.Is(err, packets.ErrReceiveMaximum):
		h.b.stats.receiveMaximum.Add(1)
		h.b.warn("receive-maximum", cl.ID, "disconnected a client that sent more unacknowledged QoS 2 publishes than max_inflight",
			"client", cl.ID, "remote", cl.Net.Remote)
	case errors.Is(err, packets.ErrPacketTooLarge):
		h.b.stats.tooLarge.Add(1)
		h.b.warn("too-large", cl.ID, "disconnected a client that sent a packet over max_packet_size",
			"client", cl.ID, "remote", cl.Net.Remote)
	}
}
