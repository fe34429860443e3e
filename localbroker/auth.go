package localbroker

import (
	"bytes"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// access is the auth and ACL hook: one decision for every message a
// client can make the broker publish (a publish at any QoS, a retained
// one, a Last Will) and the session rules a client cannot talk its way
// around (keep-alive cap). Until users and passwords arrive (a later
// issue), every client is anonymous: it is admitted only when
// AllowAnonymous is set and gets the rights of AnonymousRole.
//
// What a role may publish, with P the topic prefix:
//
//	viewer     nothing
//	publisher  topics outside P/ and outside $
//	operator   + P/control/<id>/set
//	admin      anything
//
// For every role, a control command (P/control/<id>/set) is never
// retained and never a Last Will: a command must come from a client that
// is there to see its reply, not replay on every restart or fire when a
// phone drops off the Wi-Fi.
type access struct {
	mqtt.HookBase
	allowAnonymous bool
	role           string
	prefix         string // topic prefix with trailing '/'
	maxKeepalive   uint16 // seconds
	retained       *retainedStore
	stats          *counters
	warn           func(kind, remote, msg string, args ...any)
}

func (a *access) ID() string { return "edged-access" }

func (a *access) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck,
		mqtt.OnPacketRead, mqtt.OnPublish, mqtt.OnWill}, []byte{b})
}

// OnConnect refuses a Will the client could not publish itself (CONNACK
// 0x87, or 0x05 for MQTT 3.1.1) and caps the keep-alive so dead sessions
// end and cannot hold a client slot: an MQTT 5 client asking for 0 (none)
// or more than maxKeepalive gets maxKeepalive as the Server Keep Alive;
// an MQTT 3.1.1 client cannot be told, so one asking for more is refused
// (0x02 identifier rejected, as Mosquitto's max_keepalive does) and one
// asking for none is disconnected after 1.5 times maxKeepalive of silence.
func (a *access) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	v5 := cl.Properties.ProtocolVersion >= 5
	if pk.Connect.WillFlag {
		if ok, why := a.allowed(cl.ID, pk.Connect.WillTopic, pk.Connect.WillRetain, true); !ok {
			a.stats.willsRefused.Add(1)
			a.warn("will", hostOf(cl.Net.Conn.RemoteAddr()), "refused a connection: its Last Will is not allowed",
				"client", cl.ID, "remote", cl.Net.Remote, "will_topic", pk.Connect.WillTopic, "reason", why)
			return refuseConnect(cl, packets.ErrNotAuthorized, packets.Err3NotAuthorized, "Last Will not allowed: "+why)
		}
	}
	ka := cl.State.Keepalive
	switch {
	case v5 && (ka == 0 || ka > a.maxKeepalive):
		cl.State.Keepalive = a.maxKeepalive
		cl.State.ServerKeepalive = true // the CONNACK carries it [MQTT-3.2.2-21]
	case !v5 && ka > a.maxKeepalive:
		a.warn("keepalive", hostOf(cl.Net.Conn.RemoteAddr()), "refused an MQTT 3.1.1 connection: keep-alive above max_keepalive",
			"client", cl.ID, "remote", cl.Net.Remote, "keepalive", ka, "max_keepalive", a.maxKeepalive)
		return refuseConnect(cl, packets.ErrClientIdentifierNotValid, packets.Err3ClientIdentifierNotValid, "")
	case !v5 && ka == 0:
		cl.State.Keepalive = a.maxKeepalive
	}
	return nil
}

// refuseConnect writes a refusing CONNACK (v5 code, or its MQTT 3.1.1
// return code) and returns the error that ends the connection.
func refuseConnect(cl *mqtt.Client, v5, v3 packets.Code, reason string) error {
	code := v5.Code
	if cl.Properties.ProtocolVersion < 5 {
		code = v3.Code
	}
	_ = cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connack},
		ReasonCode:  code,
		Properties:  packets.Properties{ReasonString: reason},
	})
	return v5
}

// refusePublish answers a publish a hook refuses with code: an MQTT 5
// QoS 1 publish gets PUBACK code (mochi writes it), QoS 2 gets PUBREC
// code (mochi would send a PUBACK), QoS 0 is dropped. MQTT 3.1.1 has no
// negative acknowledgement: a QoS 1/2 publisher is disconnected when
// disconnect is set (mochi's answer to a refused 3.1.1 publish), else the
// message is dropped unacknowledged and the publisher resends it.
func refusePublish(cl *mqtt.Client, pk packets.Packet, code packets.Code, disconnect bool) (packets.Packet, error) {
	switch {
	case pk.FixedHeader.Qos == 0:
	case cl.Properties.ProtocolVersion >= 5 && pk.FixedHeader.Qos == 1:
		return pk, code
	case cl.Properties.ProtocolVersion >= 5:
		_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: pk.PacketID, ReasonCode: code.Code})
	case disconnect:
		cl.Stop(code)
	}
	return pk, packets.ErrRejectPacket
}

func (a *access) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	return a.allowAnonymous
}

func (a *access) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if !write {
		return true
	}
	return a.mayPublish(cl.ID, topic)
}

// OnPacketRead answers a QoS 1/2 publish to $SYS/... with "not
// authorised": mochi drops those before any ACL check without an
// acknowledgement, so the client would wait for one forever. An MQTT
// 3.1.1 client is disconnected, as for any refused 3.1.1 publish.
func (a *access) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 || cl.Net.Inline ||
		!strings.HasPrefix(strings.ToUpper(pk.TopicName), mqtt.SysPrefix) {
		return pk, nil
	}
	if cl.Properties.ProtocolVersion < 5 {
		return pk, packets.ErrRejectPacket // the only error mochi acts on here: it ends the connection
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID, ReasonCode: packets.ErrNotAuthorized.Code}
	if pk.FixedHeader.Qos == 2 {
		ack.FixedHeader.Type = packets.Pubrec
	}
	return pk, cl.WritePacket(ack)
}

// OnPublish refuses what the topic ACL alone cannot see: a retained
// command, and a retained message the store has no room for. MQTT 5
// publishers at QoS 1/2 get reason 0x87 or 0x97; others have it dropped
// (3.1.1 has no negative acknowledgement).
func (a *access) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !pk.FixedHeader.Retain {
		return pk, nil
	}
	var code packets.Code
	if ok, why := a.allowed(cl.ID, pk.TopicName, true, false); !ok {
		code = packets.ErrNotAuthorized
		a.warn("retain", cl.ID, "refused a retained publish", "client", cl.ID, "topic", pk.TopicName, "reason", why)
	} else if err := a.retained.fits(pk.TopicName, len(pk.Payload)); err != nil {
		code = packets.ErrQuotaExceeded
		a.stats.retainedRefused.Add(1)
		a.warn("retain", cl.ID, "refused a retained publish", "client", cl.ID, "topic", pk.TopicName, "error", err)
	} else {
		return pk, nil
	}
	return refusePublish(cl, pk, code, true)
}

// OnWill keeps a retained Will inside the retained store's bounds: when
// it has no room the Will is still published, but not retained. A
// delayed Will is retained only when its delay ends, so its room is
// reserved now (see retainedStore.reserve).
func (a *access) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if will.Retain {
		delay := time.Duration(will.WillDelayInterval) * time.Second
		if err := a.retained.reserve(will.TopicName, len(will.Payload), delay); err != nil {
			a.stats.retainedRefused.Add(1)
			a.warn("retain", cl.ID, "published a Last Will without retaining it", "client", cl.ID, "topic", will.TopicName, "error", err)
			will.Retain = false
		}
	}
	return will, nil
}

// allowed is the one publish decision: may the client publish topic,
// retained or not, as a Will or not. why says what refused it.
func (a *access) allowed(clientID, topic string, retain, will bool) (ok bool, why string) {
	if isControlSet(a.prefix, topic) {
		switch {
		case will:
			return false, "a control command cannot be a Last Will"
		case retain:
			return false, "a control command cannot be retained"
		}
	}
	if !a.mayPublish(clientID, topic) {
		return false, "role " + a.role + " may not publish to " + topic
	}
	return true, ""
}

// mayPublish decides for a client by id. Every client is anonymous until
// user accounts exist, so the id does not matter yet; the signature is
// where per-user roles will be looked up.
func (a *access) mayPublish(clientID, topic string) bool {
	return mayPublish(a.role, a.prefix, topic)
}

// mayPublish decides whether role may publish to topic.
func mayPublish(role, prefix, topic string) bool {
	switch role {
	case RoleAdmin:
		return true
	case RoleOperator:
		if isControlSet(prefix, topic) {
			return true
		}
		fallthrough
	case RolePublisher:
		return !strings.HasPrefix(topic, prefix) && !strings.HasPrefix(topic, "$")
	default: // viewer, and anything unknown: deny
		return false
	}
}

// isControlSet matches P/control/<id>/set.
func isControlSet(prefix, topic string) bool {
	rest, ok := strings.CutPrefix(topic, prefix+"control/")
	if !ok {
		return false
	}
	id, tail, ok := strings.Cut(rest, "/")
	return ok && id != "" && tail == "set"
}

// keepaliveSeconds turns the max_keepalive option into MQTT's 16 bits.
func keepaliveSeconds(d time.Duration) uint16 {
	return uint16(min(max(d/time.Second, 1), 65535))
}
