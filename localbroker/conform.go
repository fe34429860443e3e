package localbroker

import (
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// conformance corrects what mochi v2.7.9 does against the MQTT 5.0
// specification and cannot be configured away (issue 11). Each fix names
// the normative statement; cmd/edged/conformance_integration_test.go
// checks each against `edged run`.
//
//   - Acks carry no User Properties of the packet they acknowledge
//     [MQTT-3.4.2-3] [MQTT-3.9.2-2]: mochi copies the publisher's onto
//     PUBACK/PUBREC/PUBREL/PUBCOMP (Compatibilities.NoInheritedPropertiesOnAck
//     stops that) and the SUBSCRIBE's onto SUBACK and UNSUBACK (nothing
//     stops that).
//   - A forwarded PUBLISH keeps its User Properties [MQTT-3.3.2-17] when
//     the subscriber set Request Problem Information to 0, which only
//     concerns other packets [MQTT-3.1.2-29]; mochi dropped them.
//   - The CONNACK says Topic Alias Maximum and Maximum Packet Size
//     [MQTT-3.2.2-17]; mochi accepted aliases without telling anyone.
//   - Retained messages sent on SUBSCRIBE carry that subscription's
//     Subscription Identifier [MQTT-3.3.4-3], and no other overlapping
//     subscription's (they are not the result of those; Mosquitto does
//     the same); mochi left it off.
//   - No Topic Aliases to clients: mochi kept aliased packets for
//     redelivery and resent them on a new connection, where the alias
//     means nothing [MQTT-3.3.2-11], and two publishers could race the
//     alias ahead of its topic. Mosquitto sends none either.
//   - A delayed Will is not published when a new connection with the
//     same client id came before the delay ended [MQTT-3.1.2-8]; mochi
//     published it when the old connection's end was noticed after the
//     new one had arrived (always so on session takeover).
//   - Packet identifiers are per direction (MQTT 5.0 section 2.2.1):
//     mochi kept the client's and its own in one table. That is fixed in
//     mochi itself (patches 8 and 12, localbroker/mochi/PATCHES.md:
//     the client's exchanges have a store of their own); this hook
//     swapped clashing ids before them.
//   - Receive Maximum towards the client is kept by the connection
//     (clientConn's send window), not by mochi, whose held messages were
//     sent without being kept for their acknowledgement, so each used
//     up a slot for good and a subscriber with a Receive Maximum stalled
//     and got messages out of order [MQTT-3.3.4-9].
type conformance struct {
	mqtt.HookBase
	maxPacketSize uint32
	maxQueued     int      // max_queued_messages
	owner         sync.Map // client id -> *mqtt.Client holding it last (admitted)
}

func (h *conformance) ID() string { return "edged-conformance" }

func (h *conformance) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnWill,
		mqtt.OnPacketEncode, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribe:
		return true
	}
	return false
}

// OnSessionEstablish runs once the client is admitted, before it takes
// over an existing session: from here a delayed Will of an earlier
// connection with this id is void.
//
// It also hands the client's Receive Maximum to the connection before
// the CONNACK and any redelivery are written, and switches mochi's own
// send quota off.
func (h *conformance) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	h.owner.Store(cl.ID, cl)
	// Never alias topics towards the client (see the type's comment).
	cl.Properties.Props.TopicAliasMaximum = 0
	if cl.Properties.ProtocolVersion < 5 {
		return
	}
	cl.State.Inflight.ResetSendQuota(0)
	if cc, ok := cl.Net.Conn.(*clientConn); ok {
		cc.setReceiveMaximum(int(cl.Properties.Props.ReceiveMaximum), h.maxQueued)
	}
}

// OnSessionEstablished switches mochi's send quota off again (taking
// over a session with messages in flight turns it back on).
func (h *conformance) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Properties.ProtocolVersion < 5 {
		return
	}
	cl.State.Inflight.ResetSendQuota(0)
}

func (h *conformance) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.owner.CompareAndDelete(cl.ID, cl)
}

// OnWill voids a delayed Will when a newer connection holds the client
// id. mochi publishes whatever OnWill returns, so a void Will is one
// without a topic: it reaches no subscriber and is not retained.
func (h *conformance) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if will.WillDelayInterval == 0 {
		return will, nil
	}
	if cur, ok := h.owner.Load(cl.ID); ok && cur != cl {
		return mqtt.Will{}, nil
	}
	return will, nil
}

func (h *conformance) OnSubscribe(_ *mqtt.Client, pk packets.Packet) packets.Packet {
	pk.Properties.User = nil // not echoed on the SUBACK
	return pk
}

// OnSubscribed gives each new subscription with an identifier that
// identifier alone for the retained messages mochi sends next: mochi
// takes a PUBLISH's identifiers from the subscription it is sent for,
// and sends retained messages for the SUBSCRIBE's own filters, whose
// Identifiers it leaves empty. The subscriptions are stored by now, so
// the stored ones keep theirs empty (mochi fills a copy per message).
func (h *conformance) OnSubscribed(_ *mqtt.Client, pk packets.Packet, _ []byte) {
	for i, s := range pk.Filters {
		if s.Identifier > 0 {
			pk.Filters[i].Identifiers = map[string]int{s.Filter: s.Identifier}
		}
	}
}

func (h *conformance) OnUnsubscribe(_ *mqtt.Client, pk packets.Packet) packets.Packet {
	pk.Properties.User = nil // not echoed on the UNSUBACK
	return pk
}

func (h *conformance) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Properties.ProtocolVersion < 5 {
		return pk
	}
	switch pk.FixedHeader.Type {
	case packets.Connack:
		if pk.ReasonCode < packets.ErrUnspecifiedError.Code {
			pk.Properties.TopicAliasMaximum = maxTopicAliases
			pk.Properties.MaximumPacketSize = h.maxPacketSize
		}
	case packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp:
		pk.Properties.User = nil
	case packets.Publish:
		pk.Mods.DisallowProblemInfo = false
	}
	return pk
}
