package localbroker

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edged/edged/sensors/topics"
)

// access is the auth and ACL hook: who a client is, and one decision
// for every message a client can make the broker publish (a publish at
// any QoS, a retained one, a Last Will) and the session rules a client
// cannot talk its way around (keep-alive cap).
//
// A client logs in with a user name and password in CONNECT, or comes
// without credentials and gets the anonymous identity when
// AllowAnonymous is set. Its Identity is kept per connection (keyed by
// the *mqtt.Client, never by client id, which the next CONNECT may take
// over) from CONNECT until its session ends. A client id held by one
// user's session cannot be taken over by another user's CONNECT, so the
// id a message carries names one identity.
//
// What a role may publish, with P the topic prefix:
//
//	viewer     nothing
//	publisher  topics outside P/ and outside $
//	operator   + P/control/<id>/set
//	admin      anything
//
// A user's publish rules narrow that further: with rules, only topics
// that match one of them (and that the role allows) may be published.
//
// For every role, a control command (P/control/<id>/set) is never
// retained and never a Last Will: a command must come from a client that
// is there to see its reply, not replay on every restart or fire when a
// phone drops off the Wi-Fi.
type access struct {
	mqtt.HookBase
	accounts     *accounts
	srv          *mqtt.Server
	tree         topics.Tree // the gateway's topics, which the rules protect
	maxKeepalive uint16      // seconds
	retained     *retainedStore
	stats        *counters
	warn         func(kind, remote, msg string, args ...any)

	mu  sync.Mutex
	ids map[*mqtt.Client]Identity
}

func (a *access) ID() string { return "edged-access" }

// Provides is asked for every hook on every event of every packet, so it
// is a switch, not a search.
func (a *access) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck,
		mqtt.OnPacketRead, mqtt.OnPublish, mqtt.OnWill, mqtt.OnDisconnect, mqtt.OnClientExpired:
		return true
	}
	return false
}

// OnConnect logs the client in (see login), refuses a Will the client
// could not publish itself (CONNACK 0x87, or 0x05 for MQTT 3.1.1) and caps the keep-alive so dead sessions
// end and cannot hold a client slot: an MQTT 5 client asking for 0 (none)
// or more than maxKeepalive gets maxKeepalive as the Server Keep Alive;
// an MQTT 3.1.1 client cannot be told, so one asking for more is refused
// (0x02 identifier rejected, as Mosquitto's max_keepalive does) and one
// asking for none is disconnected after 1.5 times maxKeepalive of silence.
//
// mochi runs OnConnect before OnConnectAuthenticate, so the login is
// here, where the Will is checked against the identity it will have.
func (a *access) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	v5 := cl.Properties.ProtocolVersion >= 5
	id, existing, err := a.login(cl, pk)
	if err != nil {
		return err
	}
	if pk.Connect.WillFlag {
		if ok, why := a.allowed(id, pk.Connect.WillTopic, pk.Connect.WillRetain, true); !ok {
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
		a.stats.keepalive.Add(1)
		a.warn("keepalive", hostOf(cl.Net.Conn.RemoteAddr()), "refused an MQTT 3.1.1 connection: keep-alive above max_keepalive",
			"client", cl.ID, "remote", cl.Net.Remote, "keepalive", ka, "max_keepalive", a.maxKeepalive)
		return refuseConnect(cl, packets.ErrClientIdentifierNotValid, packets.Err3ClientIdentifierNotValid, "")
	case !v5 && ka == 0:
		cl.State.Keepalive = a.maxKeepalive
	}
	a.mu.Lock()
	a.ids[cl] = id
	if existing != nil {
		delete(a.ids, existing) // taken over: it may publish nothing more
	}
	a.mu.Unlock()
	return nil
}

// login finds who the client is: the user whose name and password are in
// CONNECT (checked by accounts, rate limited per address), or the
// anonymous identity when there are no credentials (or no users). It refuses, with
// the CONNACK written, wrong credentials (0x86; MQTT 3.1.1: 0x04), an
// address that failed too often (0x9F; 0x05, without a check), an
// anonymous client when anonymous access is off (0x87; 0x05), and a
// client id whose session belongs to another identity (0x87; 0x05).
// existing is the client whose session this one takes over, if any.
func (a *access) login(cl *mqtt.Client, pk packets.Packet) (id Identity, existing *mqtt.Client, err error) {
	remote := cl.Net.Conn.RemoteAddr()
	// Without any users, credentials are ignored, as Mosquitto does
	// without a password file: an app set up with a user name keeps
	// working on an anonymous gateway.
	if !pk.Connect.UsernameFlag && !pk.Connect.PasswordFlag || !a.accounts.users() {
		var ok bool
		if id, ok = a.accounts.anonymousIdentity(); !ok {
			a.stats.anonymous.Add(1)
			a.warn("anonymous", hostOf(remote), "refused a connection without credentials (allow_anonymous is false)",
				"client", cl.ID, "remote", cl.Net.Remote)
			return id, nil, refuseConnect(cl, packets.ErrNotAuthorized, packets.Err3NotAuthorized, "credentials required")
		}
	} else {
		id, err = a.accounts.password(context.Background(), string(pk.Connect.Username), pk.Connect.Password, remote, cl.Net.Listener)
		switch {
		case errors.Is(err, ErrTooManyFailures):
			a.stats.loginsLimited.Add(1)
			return id, nil, refuseConnect(cl, packets.ErrConnectionRateExceeded, packets.Err3NotAuthorized, "too many failed logins: wait a minute")
		case errors.Is(err, ErrBusy):
			a.stats.loginBusy.Add(1)
			return id, nil, refuseConnect(cl, packets.ErrServerBusy, packets.Err3ServerUnavailable, "too many logins being checked")
		case err != nil:
			a.stats.badCredentials.Add(1)
			return id, nil, refuseConnect(cl, packets.ErrBadUsernameOrPassword, packets.ErrMalformedUsernameOrPassword, "")
		}
	}
	if old, ok := a.srv.Clients.Get(cl.ID); ok {
		if prev, bound := a.identity(old); bound && prev != id {
			a.stats.clientIDInUse.Add(1)
			a.warn("takeover", hostOf(remote), "refused a connection: its client id belongs to another user's session",
				"client", cl.ID, "remote", cl.Net.Remote, "user", id.Name)
			return id, nil, refuseConnect(cl, packets.ErrNotAuthorized, packets.Err3NotAuthorized, "client id in use by another user")
		}
		existing = old
	}
	return id, existing, nil
}

// identity returns who cl logged in as; false once its session ended.
func (a *access) identity(cl *mqtt.Client) (Identity, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	id, ok := a.ids[cl]
	return id, ok
}

// identityOf returns the identity of the client holding clientID now.
func (a *access) identityOf(clientID string) Identity {
	cl, ok := a.srv.Clients.Get(clientID)
	if !ok {
		return Identity{}
	}
	id, _ := a.identity(cl)
	return id
}

// OnDisconnect forgets a client whose session ends with the connection
// (or was taken over); a persistent session keeps its identity until it
// expires, so its client id stays bound to its user.
func (a *access) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if expire || cl.IsTakenOver() {
		a.forget(cl)
	}
}

func (a *access) OnClientExpired(cl *mqtt.Client) { a.forget(cl) }

func (a *access) forget(cl *mqtt.Client) {
	a.mu.Lock()
	delete(a.ids, cl)
	a.mu.Unlock()
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

// OnConnectAuthenticate admits the clients OnConnect logged in.
func (a *access) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	_, ok := a.identity(cl)
	return ok
}

// OnACLCheck lets every client subscribe to everything, and publish
// what its identity may.
func (a *access) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if !write {
		return true
	}
	id, ok := a.identity(cl)
	if ok && a.mayPublish(id, topic) {
		return true
	}
	a.stats.notAuthorized.Add(1) // mochi answers 0x87, or disconnects a 3.1.1 client
	return false
}

// OnPacketRead answers a QoS 1/2 publish to $SYS/... with "not
// authorised": mochi drops those before any ACL check without an
// acknowledgement, so the client would wait for one forever. An MQTT
// 3.1.1 client is disconnected, as for any refused 3.1.1 publish.
func (a *access) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 || cl.Net.Inline ||
		len(pk.TopicName) < len(mqtt.SysPrefix) || !strings.EqualFold(pk.TopicName[:len(mqtt.SysPrefix)], mqtt.SysPrefix) {
		return pk, nil
	}
	a.stats.notAuthorized.Add(1)
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
	id, _ := a.identity(cl)
	if ok, why := a.allowed(id, pk.TopicName, true, false); !ok {
		code = packets.ErrNotAuthorized
		a.stats.notAuthorized.Add(1)
		a.warn("retain", cl.ID, "refused a retained publish", "client", cl.ID, "topic", pk.TopicName, "reason", why)
	} else if err := a.retained.fits(pk.TopicName, len(pk.Payload)); errors.Is(err, errTooDeep) {
		code = packets.ErrTopicNameInvalid // 0x90; 3.1.1: disconnected
		a.stats.tooDeepPublish.Add(1)
		a.warn("too-deep", cl.ID, "refused a retained publish", "client", cl.ID, "error", err)
	} else if err != nil {
		code = packets.ErrQuotaExceeded
		a.stats.retainedRefused.Add(1)
		a.stats.retainedFull.Add(1)
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

// allowed is the one publish decision: may the client with identity id
// publish topic, retained or not, as a Will or not. why says what
// refused it.
func (a *access) allowed(id Identity, topic string, retain, will bool) (ok bool, why string) {
	if _, cmd := a.tree.ParseControlSet(topic); cmd {
		switch {
		case will:
			return false, "a control command cannot be a Last Will"
		case retain:
			return false, "a control command cannot be retained"
		}
	}
	switch {
	case !mayPublish(id.Role, a.tree, topic):
		return false, "role " + id.Role + " may not publish to " + topic
	case !a.mayPublish(id, topic):
		return false, "the publish rules of user " + id.Name + " do not include " + topic
	}
	return true, ""
}

// mayPublish decides for an identity: its role, then its user's publish
// rules.
func (a *access) mayPublish(id Identity, topic string) bool {
	return a.accounts.mayPublish(id, a.tree, topic)
}

// mayPublish decides whether role may publish to topic.
func mayPublish(role string, tree topics.Tree, topic string) bool {
	switch role {
	case RoleAdmin:
		return true
	case RoleOperator:
		if _, cmd := tree.ParseControlSet(topic); cmd {
			return true
		}
		fallthrough
	case RolePublisher:
		return !tree.Owns(topic) && !strings.HasPrefix(topic, "$")
	default: // viewer, and anything unknown: deny
		return false
	}
}

// keepaliveSeconds turns the max_keepalive option into MQTT's 16 bits.
func keepaliveSeconds(d time.Duration) uint16 {
	return uint16(min(max(d/time.Second, 1), 65535))
}
