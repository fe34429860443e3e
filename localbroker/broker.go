// Package localbroker runs the embedded MQTT broker that LAN apps and
// browsers use: the listeners (TCP, WebSocket), who may do what, the
// Pi-safe limits, and the capture hook that hands messages to the uplink
// before they are acknowledged.
//
// It wraps mochi-mqtt and is the only package that imports it. It knows
// nothing of the uplink: it calls the Capturer it is given.
package localbroker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/liveness"
	"github.com/edged/edged/sensors/ratelog"
	"github.com/edged/edged/sensors/topics"
)

// Message is a publish the broker hands to a Capturer.
type Message struct {
	Topic   string
	Payload []byte // owned by the broker: copy it to keep it
	QoS     byte
	Retain  bool
	// Client is the publishing client's id; "" for in-process publishes.
	Client string
}

// Capturer stores the messages that must survive a crash before anybody
// sees or acknowledges them (the uplink's disk buffer). Capture is called
// for every publish, in-process or from the LAN, before fan-out and, for a
// QoS 1 publisher, before the PUBACK; it returns nil at once for topics
// it does not want. An error refuses the message.
type Capturer interface {
	Capture(m Message) error
}

// ErrQuotaExceeded is what a Capturer returns (or wraps) when it refuses
// a message for lack of room; MQTT 5 publishers get PUBACK 0x97.
var ErrQuotaExceeded = errors.New("localbroker: quota exceeded")

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("localbroker: closed")

// Broker is the embedded MQTT broker.
//
// No in-process publisher ever waits on a LAN client: Publish and Reply
// capture synchronously (the disk buffer, never a socket) and hand the
// local fan-out to one goroutine through a bounded queue. mochi writes to
// a client under that client's lock, and the fan-out takes the lock of
// every subscriber in turn, so a client that stops reading could
// otherwise stall whoever publishes; the fan-out itself waits at most
// write_timeout on such a client, which is then disconnected.
type Broker struct {
	opts Opts
	log  *slog.Logger
	srv  *mqtt.Server
	tcp  *tcpListener
	ws   *wsListener
	tcps *tcpListener // MQTT over TLS
	wss  *wsListener  // MQTT over WebSocket over TLS
	tls  *tls.Config  // of tcps and wss
	// inline is mochi's in-process client, for publishes with properties.
	inline   *mqtt.Client
	access   *access
	policy   *connPolicy
	retained *retainedStore
	limiter  *ratelog.Limiter
	stats    counters
	// hooks are edged's mochi hooks, in order (limits.end runs their
	// OnClientExpired as mochi's expiry does).
	hooks []mqtt.Hook

	mu      sync.RWMutex
	capture Capturer
	closed  bool
	out     chan outbound  // the local fan-out queue; closed by Close
	fanDone chan struct{}  // closed when the fan-out goroutine has ended
	beat    *liveness.Beat // the fan-out's
}

// outbound is one in-process message waiting for local fan-out.
type outbound struct {
	topic   string
	payload []byte
	retain  bool
	reply   bool   // an MQTT 5 response: published with correlation data
	corr    []byte // correlation data of a reply
}

// fanoutQueue bounds the in-process messages waiting for local
// delivery; when a stalled fan-out lets it fill, new messages are not
// delivered locally (they are captured for the uplink all the same).
const fanoutQueue = 1024

// closeDrain is how long Close lets queued messages (the "offline"
// status) reach subscribers before it disconnects them.
const closeDrain = time.Second

// counters are the broker's own figures; see Stats.
type counters struct {
	slowClients     atomic.Uint64
	slowTimeout     atomic.Uint64
	slowOverflow    atomic.Uint64
	refused         atomic.Uint64 // at accept, by the gate
	refusedTotal    atomic.Uint64
	refusedPerAddr  atomic.Uint64
	refusedRate     atomic.Uint64
	willsRefused    atomic.Uint64
	badCredentials  atomic.Uint64
	loginsLimited   atomic.Uint64
	loginBusy       atomic.Uint64
	anonymous       atomic.Uint64
	keepalive       atomic.Uint64
	clientIDInUse   atomic.Uint64
	retainedRefused atomic.Uint64
	retainedFull    atomic.Uint64 // publishes only; retainedRefused has the Wills too
	localDropped    atomic.Uint64
	notAuthorized   atomic.Uint64
	uplinkFull      atomic.Uint64
	uplinkFailed    atomic.Uint64
	receiveMaximum  atomic.Uint64
	tooLarge        atomic.Uint64
	subsRefused     atomic.Uint64
	tooDeepSub      atomic.Uint64
	tooDeepPublish  atomic.Uint64
	sessionsEnded   atomic.Uint64 // by max_sessions
	sessionsExpired atomic.Uint64
	sessionDropped  atomic.Uint64 // messages queued for the sessions ended
}

// Stats are what the broker has counted since it started.
type Stats struct {
	// Clients is the number of connected MQTT clients.
	Clients int64 `json:"clients"`
	// SlowClientsDisconnected counts clients cut off as slow (the sum of
	// SlowClients).
	SlowClientsDisconnected uint64 `json:"slow_clients_disconnected"`
	// ConnectionsRefused counts connections closed at accept by
	// max_clients, max_clients_per_address or max_connects_per_minute.
	ConnectionsRefused uint64 `json:"connections_refused"`
	// WillsRefused counts CONNECTs refused for a Last Will the client may
	// not publish.
	WillsRefused uint64 `json:"wills_refused"`
	// RetainedRefused counts retained publishes (and Wills) the retained
	// store had no room for.
	RetainedRefused uint64 `json:"retained_refused"`
	// RetainedMessages and RetainedBytes are the retained store's size.
	RetainedMessages int   `json:"retained_messages"`
	RetainedBytes    int64 `json:"retained_bytes"`
	// LocalDropped counts in-process messages not delivered to LAN
	// subscribers because the fan-out queue was full (still captured).
	LocalDropped uint64 `json:"local_dropped"`
	// LoginFailures counts logins (MQTT or HTTP) refused for wrong
	// credentials; LoginsLimited those refused without a check because
	// their address failed max_login_failures times in a minute.
	LoginFailures uint64 `json:"login_failures"`
	LoginsLimited uint64 `json:"logins_limited"`
	// mochi's own counts: PUBLISH packets received from and sent to
	// clients (the gateway's own publishes are not received ones),
	// bytes, and live subscriptions. What it dropped is in Dropped.
	MessagesReceived int64 `json:"messages_received"`
	MessagesSent     int64 `json:"messages_sent"`
	BytesReceived    int64 `json:"bytes_received"`
	BytesSent        int64 `json:"bytes_sent"`
	Subscriptions    int64 `json:"subscriptions"`

	// Dropped, PublishesRefused, ConnectsRefused and SlowClients are the
	// per-reason counts of everything the broker did not deliver or
	// admit; each field is one reason (a label value in /metrics).
	Dropped          Drops           `json:"dropped"`
	PublishesRefused PublishRefusals `json:"publishes_refused"`
	ConnectsRefused  ConnectRefusals `json:"connects_refused"`
	SlowClients      SlowDisconnects `json:"slow_clients"`
	// SubscriptionsRefused counts SUBSCRIBE filters refused; SessionsEnded
	// the sessions of absent clients the broker ended.
	SubscriptionsRefused SubscribeRefusals `json:"subscriptions_refused"`
	SessionsEnded        SessionEnds       `json:"sessions_ended"`
}

// SubscribeRefusals counts filters of SUBSCRIBE packets refused, by
// reason.
type SubscribeRefusals struct {
	// MaxSubscriptions: the session held max_subscriptions already
	// (0x97; 3.1.1: 0x80).
	MaxSubscriptions uint64 `json:"max_subscriptions"`
	// MaxTopicLevels: the filter has more than max_topic_levels levels
	// (0x8F; 3.1.1: 0x80).
	MaxTopicLevels uint64 `json:"max_topic_levels"`
}

// SessionEnds counts sessions of absent clients that ended, by why.
type SessionEnds struct {
	// Expired: the client stayed away for its session expiry.
	Expired uint64 `json:"expired"`
	// MaxSessions: max_sessions were kept; the one whose client left
	// first ended (its queued messages in Dropped.SessionEnded).
	MaxSessions uint64 `json:"max_sessions"`
}

// Drops counts messages not delivered to a subscriber, once per
// subscriber that missed it (Fanout once per message).
type Drops struct {
	// InflightFull: the client had max_queued_messages QoS 1/2 messages
	// unacknowledged (in flight, or kept for it while away), as
	// Mosquitto's max_queued_messages.
	InflightFull uint64 `json:"inflight_full"`
	// QueuedBytesFull: the client was away and those messages held
	// max_queued_bytes of payload and topic (as Mosquitto's
	// max_queued_bytes), or held more when it left (the newest went).
	QueuedBytesFull uint64 `json:"queued_bytes_full"`
	// Fanout: an in-process message found the local fan-out queue full
	// (LocalDropped; the uplink still has it).
	Fanout uint64 `json:"fanout"`
	// SessionEnded: queued for an absent client whose session ended to
	// keep max_sessions.
	SessionEnded uint64 `json:"session_ended"`
}

// PublishRefusals counts LAN publishes the broker refused (MQTT 5: a
// PUBACK/PUBREC with the reason; 3.1.1: disconnected or dropped).
type PublishRefusals struct {
	// NotAuthorized: the role or the user's publish rules deny the topic,
	// a retained command, or a publish to $SYS (0x87).
	NotAuthorized uint64 `json:"not_authorized"`
	// RetainedFull: a retained publish the retained store had no room
	// for (0x97).
	RetainedFull uint64 `json:"retained_full"`
	// UplinkFull and UplinkFailed: the uplink's disk buffer refused to
	// store the message (0x97, 0x80).
	UplinkFull   uint64 `json:"uplink_full"`
	UplinkFailed uint64 `json:"uplink_failed"`
	// ReceiveMaximum: a client sent more unacknowledged QoS 2 publishes
	// than max_inflight and was disconnected (0x93).
	ReceiveMaximum uint64 `json:"receive_maximum_exceeded"`
	// TooLarge: a client sent a packet over max_packet_size and was
	// disconnected.
	TooLarge uint64 `json:"packet_too_large"`
	// MaxTopicLevels: a retained publish whose topic has more than
	// max_topic_levels levels (0x90).
	MaxTopicLevels uint64 `json:"max_topic_levels"`
}

// ConnectRefusals counts connections refused, at accept (the first
// three) or at CONNECT.
type ConnectRefusals struct {
	MaxClients           uint64 `json:"max_clients"`
	MaxClientsPerAddress uint64 `json:"max_clients_per_address"`
	MaxConnectsPerMinute uint64 `json:"max_connects_per_minute"`
	// BadCredentials: wrong user name or password (0x86).
	BadCredentials uint64 `json:"bad_credentials"`
	// LoginsLimited: refused unchecked after max_login_failures (0x9F).
	LoginsLimited uint64 `json:"logins_limited"`
	// LoginBusy: no password check slot came free in time (0x89).
	LoginBusy uint64 `json:"login_busy"`
	// AnonymousNotAllowed: no credentials while allow_anonymous is false.
	AnonymousNotAllowed uint64 `json:"anonymous_not_allowed"`
	// WillNotAllowed: a Last Will the client may not publish.
	WillNotAllowed uint64 `json:"will_not_allowed"`
	// KeepaliveTooLong: an MQTT 3.1.1 keep-alive above max_keepalive.
	KeepaliveTooLong uint64 `json:"keepalive_too_long"`
	// ClientIDInUse: the client id's session belongs to another user.
	ClientIDInUse uint64 `json:"client_id_in_use"`
}

// SlowDisconnects counts clients disconnected as slow, by what showed it.
type SlowDisconnects struct {
	// WriteTimeout: the client took no 64 KiB within write_timeout.
	WriteTimeout uint64 `json:"write_timeout"`
	// QueueOverflow: its queue outgrew max_retained_bytes + 2 x
	// max_packet_size.
	QueueOverflow uint64 `json:"queue_overflow"`
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	n, size := b.retained.usage()
	c := &b.stats
	return Stats{
		Clients:                 atomic.LoadInt64(&b.srv.Info.ClientsConnected),
		SlowClientsDisconnected: c.slowClients.Load(),
		ConnectionsRefused:      c.refused.Load(),
		WillsRefused:            c.willsRefused.Load(),
		RetainedRefused:         c.retainedRefused.Load(),
		RetainedMessages:        n,
		RetainedBytes:           size,
		LocalDropped:            c.localDropped.Load(),
		LoginFailures:           b.access.accounts.failed.Load(),
		LoginsLimited:           b.access.accounts.limited.Load(),
		MessagesReceived:        atomic.LoadInt64(&b.srv.Info.MessagesReceived),
		MessagesSent:            atomic.LoadInt64(&b.srv.Info.MessagesSent),
		BytesReceived:           atomic.LoadInt64(&b.srv.Info.BytesReceived),
		BytesSent:               atomic.LoadInt64(&b.srv.Info.BytesSent),
		Subscriptions:           atomic.LoadInt64(&b.srv.Info.Subscriptions),
		Dropped: Drops{
			// mochi counts these itself (and packet id exhaustion, which
			// cannot come first: max_queued_messages is at most 16,384).
			InflightFull:    uint64(atomic.LoadInt64(&b.srv.Info.InflightDropped)),
			QueuedBytesFull: uint64(atomic.LoadInt64(&b.srv.Info.InflightBytesDropped)),
			Fanout:          c.localDropped.Load(),
			SessionEnded:    c.sessionDropped.Load(),
		},
		SubscriptionsRefused: SubscribeRefusals{MaxSubscriptions: c.subsRefused.Load(), MaxTopicLevels: c.tooDeepSub.Load()},
		SessionsEnded:        SessionEnds{Expired: c.sessionsExpired.Load(), MaxSessions: c.sessionsEnded.Load()},
		PublishesRefused: PublishRefusals{
			NotAuthorized:  c.notAuthorized.Load(),
			RetainedFull:   c.retainedFull.Load(),
			UplinkFull:     c.uplinkFull.Load(),
			UplinkFailed:   c.uplinkFailed.Load(),
			ReceiveMaximum: c.receiveMaximum.Load(),
			TooLarge:       c.tooLarge.Load(),
			MaxTopicLevels: c.tooDeepPublish.Load(),
		},
		ConnectsRefused: ConnectRefusals{
			MaxClients:           c.refusedTotal.Load(),
			MaxClientsPerAddress: c.refusedPerAddr.Load(),
			MaxConnectsPerMinute: c.refusedRate.Load(),
			BadCredentials:       c.badCredentials.Load(),
			LoginsLimited:        c.loginsLimited.Load(),
			LoginBusy:            c.loginBusy.Load(),
			AnonymousNotAllowed:  c.anonymous.Load(),
			WillNotAllowed:       c.willsRefused.Load(),
			KeepaliveTooLong:     c.keepalive.Load(),
			ClientIDInUse:        c.clientIDInUse.Load(),
		},
		SlowClients: SlowDisconnects{
			WriteTimeout:  c.slowTimeout.Load(),
			QueueOverflow: c.slowOverflow.Load(),
		},
	}
}

// warnEvery is how often one kind of client-caused warning may be
// logged per address (or client), and warnBurst how many lines of them
// all may be logged in that time.
const (
	warnEvery = time.Minute
	warnBurst = 20
)

// warn logs a warning a remote client caused, at most once per kind and
// key (address or client id) a minute.
func (b *Broker) warn(kind, key, msg string, args ...any) {
	b.limiter.Log(b.log, slog.LevelWarn, kind+"|"+key, msg, args...)
}

// New builds a broker; nothing listens until Start. prefix is the
// gateway's topic prefix (e.g. "edged/gh-01"), which the access rules
// protect.
func New(opts Opts, prefix string, log *slog.Logger) (*Broker, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("localbroker: %w", err)
	}
	log = sensors.LogOrDiscard(log)
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(opts.MaxPacketSize)
	// Deliveries are written by the publishing goroutine (DirectWrites);
	// mochi's per-client queue only holds those that come for a resumed
	// session before its CONNACK is written (QoS 0 beyond it are dropped,
	// QoS 1/2 are resent after the CONNACK anyway).
	caps.MaximumClientWritesPending = 256
	caps.ReceiveMaximum = uint16(opts.MaxInflight)
	caps.MaximumInflight = uint16(opts.MaxQueuedMessages)
	caps.MaximumOfflineInflightBytes = opts.MaxQueuedBytes // edged's patch (PATCHES.md)
	caps.MaximumClients = int64(opts.MaxClients)
	caps.MaximumSessionExpiryInterval = uint32(opts.SessionExpiry.Seconds())
	caps.MaximumMessageExpiryInterval = int64(opts.MessageExpiry.Seconds())
	// Each inbound alias pins its topic name; mochi's default of 65535
	// would let one client hold gigabytes.
	caps.TopicAliasMaximum = maxTopicAliases
	// Acks carry no copy of the acknowledged packet's user properties
	// [MQTT-3.4.2-3]; see conformance for SUBACK and UNSUBACK.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	limiter := ratelog.New(warnEvery, warnBurst, nil)
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		InlineClient: true,
		// edged's patch (localbroker/mochi/PATCHES.md): a publish is
		// written to each subscriber from the publishing goroutine, not
		// handed to a writer goroutine per client. Safe because every
		// connection is a clientConn, whose Write never blocks.
		DirectWrites:           true,
		SysTopicResendInterval: int64(opts.SysInterval.Seconds()),
		// mochi logs every hook and listener at info; keep its voice
		// down to warnings unless we are debugging.
		Logger: slog.New(minLevel{log.Handler(), slog.LevelWarn, limiter}).With("library", "mochi"),
	})
	b := &Broker{opts: opts, log: log, srv: srv, limiter: limiter,
		retained: newRetainedStore(opts.MaxRetained, opts.MaxRetainedBytes, opts.MaxTopicLevels, time.Now),
		out:      make(chan outbound, fanoutQueue), fanDone: make(chan struct{}), beat: liveness.New("broker/fanout")}
	b.inline, _ = srv.Clients.Get(mqtt.InlineClientId)
	b.policy = &connPolicy{
		gate:           newGate(opts.MaxClients, opts.MaxClientsPerAddress, opts.MaxConnectsPerMinute, time.Now),
		connectTimeout: opts.ConnectTimeout,
		writeTimeout:   opts.WriteTimeout,
		// Room for a new subscriber's retained messages, all written at
		// once on SUBSCRIBE, and two of the largest packets.
		maxQueued:  int(opts.MaxRetainedBytes + 2*opts.MaxPacketSize),
		stats:      &b.stats,
		warn:       b.warn,
		disconnect: b.disconnectListener,
	}
	accts, err := newAccounts(opts, b.warn)
	if err != nil {
		return nil, err
	}
	if opts.MQTTS != "" || opts.WSS != "" {
		if b.tls, err = opts.TLS.ServerConfig(); err != nil {
			return nil, fmt.Errorf("localbroker: %w", err)
		}
	}
	b.access = &access{
		accounts:     accts,
		srv:          srv,
		tree:         topics.New(prefix),
		maxKeepalive: keepaliveSeconds(opts.MaxKeepalive),
		retained:     b.retained,
		stats:        &b.stats,
		warn:         b.warn,
		ids:          map[*mqtt.Client]Identity{},
	}
	b.hooks = []mqtt.Hook{b.access, b.retained, &captureHook{b: b}, &dropHook{b: b}, &conformance{maxPacketSize: uint32(opts.MaxPacketSize), maxQueued: opts.MaxQueuedMessages}, newLimits(b, opts)}
	for _, h := range b.hooks {
		if err := srv.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("localbroker: %w", err)
		}
	}
	go b.fanout()
	return b, nil
}

// maxTopicAliases caps the MQTT 5 topic aliases a client may set up.
const maxTopicAliases = 32

// SetCapturer installs the capturer; call it before Start.
func (b *Broker) SetCapturer(c Capturer) {
	b.mu.Lock()
	b.capture = c
	b.mu.Unlock()
}

// Start binds the listeners and starts serving. A listener that cannot
// bind is an error and nothing keeps running.
//
// With users configured, a plain listener on a non-loopback address is
// logged as a warning once: passwords cross the LAN readable there. It
// is not refused, since small devices (an ESP8266) may not manage TLS.
func (b *Broker) Start() error {
	add := func(l listeners.Listener, key, addr string) error {
		if err := b.srv.AddListener(l); err != nil {
			b.Close()
			return fmt.Errorf("localbroker: %s listener %s: %w", key, addr, err)
		}
		return nil
	}
	if b.opts.MQTT != "" {
		b.tcp = newTCPListener("mqtt", b.opts.MQTT, nil, b.policy)
		if err := add(b.tcp, "mqtt", b.opts.MQTT); err != nil {
			return err
		}
	}
	if b.opts.WebSocket != "" {
		b.ws = newWSListener("websocket", b.opts.WebSocket, b.opts.WebSocketOrigins, nil, b.policy)
		if err := add(b.ws, "websocket", b.opts.WebSocket); err != nil {
			return err
		}
	}
	if b.opts.MQTTS != "" {
		b.tcps = newTCPListener("mqtts", b.opts.MQTTS, b.tls, b.policy)
		if err := add(b.tcps, "mqtts", b.opts.MQTTS); err != nil {
			return err
		}
	}
	if b.opts.WSS != "" {
		b.wss = newWSListener("wss", b.opts.WSS, b.opts.WebSocketOrigins, b.tls, b.policy)
		if err := add(b.wss, "wss", b.opts.WSS); err != nil {
			return err
		}
	}
	if err := b.srv.Serve(); err != nil {
		b.Close()
		return fmt.Errorf("localbroker: %w", err)
	}
	b.log.Info("broker listening", "mqtt", b.MQTTAddr(), "websocket", b.WebSocketAddr(),
		"mqtts", b.MQTTSAddr(), "wss", b.WSSAddr(), "users", len(b.opts.Users),
		"anonymous", b.opts.AllowAnonymous, "anonymous_role", b.opts.AnonymousRole)
	if len(b.opts.Users) > 0 {
		for key, addr := range map[string]string{"mqtt": b.opts.MQTT, "websocket": b.opts.WebSocket} {
			if addr != "" && !IsLoopback(addr) {
				b.log.Warn("passwords can be read on the LAN: a plain listener is open beyond this machine while users are configured; use mqtts/wss, or bind it to 127.0.0.1",
					"listener", key, "addr", addr)
			}
		}
	}
	return nil
}

// MQTTSAddr returns the bound MQTT-over-TLS address, or "" when disabled.
func (b *Broker) MQTTSAddr() string {
	if b.tcps == nil {
		return ""
	}
	return b.tcps.Address()
}

// WSSAddr returns the bound WebSocket-over-TLS address, or "" when
// disabled.
func (b *Broker) WSSAddr() string {
	if b.wss == nil {
		return ""
	}
	return b.wss.Address()
}

// Authenticate checks a user name and password for another surface (the
// HTTP API) with the same accounts, rate limit and log as MQTT logins:
// ErrTooManyFailures when remote failed too often (no check is run),
// ErrBadCredentials when they are wrong. A check runs bcrypt: tens of
// milliseconds on a Pi, so a surface that serves many requests should
// log in once and then use a token or a session of its own (a success is
// remembered for a short while, so repeating it is cheap). ErrBusy when
// no bcrypt slot came free in time or ctx ended first.
func (b *Broker) Authenticate(ctx context.Context, user, password string, remote net.Addr) (Identity, error) {
	return b.access.accounts.password(ctx, user, []byte(password), remote, "http")
}

// SetAccounts replaces the users (o.Users) and the anonymous rights
// (o.AllowAnonymous, o.AnonymousRole) of a running broker, for a live
// reload; every other field of o is ignored (listeners and limits take a
// restart). Connected clients stay connected with the identity they
// logged in with; one whose user was removed or changed may no longer
// publish and must log in again for its new rights. Logins from now on,
// over MQTT and HTTP, use the new accounts; remembered password checks
// are forgotten. On error (a password_hash_file that cannot be read)
// nothing changes.
func (b *Broker) SetAccounts(o Opts) error {
	return b.access.accounts.set(o)
}

// AuthenticateToken checks a bearer token (see NewToken), rate limited
// as Authenticate is.
func (b *Broker) AuthenticateToken(token string, remote net.Addr) (Identity, error) {
	return b.access.accounts.token(token, remote)
}

// Anonymous returns the identity of a client without credentials, and
// whether such clients are admitted (broker.allow_anonymous).
func (b *Broker) Anonymous() (Identity, bool) {
	return b.access.accounts.anonymousIdentity()
}

// MayPublish is the broker's publish decision for id (role, then the
// user's publish rules), for surfaces that publish on a client's behalf
// (an HTTP command must be refused where MQTT would refuse it). Commands
// are never retained, whatever MayPublish says.
func (b *Broker) MayPublish(id Identity, topic string) bool {
	return b.access.mayPublish(id, topic)
}

// MQTTAddr returns the bound TCP address, or "" when disabled.
func (b *Broker) MQTTAddr() string {
	if b.tcp == nil {
		return ""
	}
	return b.tcp.Address()
}

// WebSocketAddr returns the bound WebSocket address, or "" when disabled.
func (b *Broker) WebSocketAddr() string {
	if b.ws == nil {
		return ""
	}
	return b.ws.Address()
}

// Publish publishes an in-process message at QoS 1: first to the
// capturer (so it is stored before anybody sees it), then, queued, to
// the local subscribers. A capture error is returned and nothing is
// published. It never waits on a LAN client.
func (b *Broker) Publish(topic string, payload []byte, retain bool) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	if b.capture != nil {
		if err := b.capture.Capture(Message{Topic: topic, Payload: payload, QoS: 1, Retain: retain}); err != nil {
			return fmt.Errorf("localbroker: capture %s: %w", topic, err)
		}
	}
	b.enqueue(outbound{topic: topic, payload: append([]byte(nil), payload...), retain: retain})
	return nil
}

// enqueue hands m to the fan-out without waiting; the caller holds b.mu
// for reading and has checked closed.
func (b *Broker) enqueue(m outbound) {
	select {
	case b.out <- m:
	default:
		b.stats.localDropped.Add(1)
		b.warn("fanout", "", "local delivery is behind: a message was not delivered to LAN subscribers (it was captured for the uplink)", "topic", m.topic)
	}
}

// fanout delivers queued in-process messages to the local subscribers,
// in order, until Close closes the queue.
func (b *Broker) fanout() {
	defer close(b.fanDone)
	for m := range b.out {
		// mochi hands the message to each client's send queue: no
		// socket is touched here.
		b.beat.Expect(sensors.BeatSlack)
		var err error
		if m.reply {
			err = b.srv.InjectPacket(b.inline, packets.Packet{
				FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
				TopicName:   m.topic,
				Payload:     m.payload,
				Properties:  packets.Properties{CorrelationData: m.corr},
				PacketID:    1, // the inline client's packets are not acknowledged; an id keeps them valid
			})
		} else {
			err = b.srv.Publish(m.topic, m.payload, m.retain, 1)
		}
		if err != nil {
			b.warn("fanout-error", "", "local delivery failed", "topic", m.topic, "error", err)
		}
		if len(b.out) == 0 {
			b.beat.Idle()
		}
	}
}

// Heartbeat is the local fan-out's beat, "broker/fanout": busy while it
// delivers, idle while its queue is empty.
func (b *Broker) Heartbeat() *liveness.Beat { return b.beat }

// Inbound is a message delivered to an in-process subscription. Payload
// and CorrelationData are copies the receiver owns.
type Inbound struct {
	Topic   string
	Payload []byte
	// ResponseTopic and CorrelationData are the MQTT 5 request/response
	// properties, empty when the publisher gave none.
	ResponseTopic   string
	CorrelationData []byte
	Client          string
	// Identity is who the publishing client was logged in as when the
	// message arrived; Reply checks the response topic against it.
	Identity Identity
}

// Subscribe calls fn for every message matching filter, in the
// publishing client's goroutine: fn must return quickly and must not
// publish (hand the work to a goroutine of your own). id tells
// subscriptions apart.
func (b *Broker) Subscribe(filter string, id int, fn func(Inbound)) error {
	return b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(Inbound{
			Topic:           pk.TopicName,
			Payload:         append([]byte(nil), pk.Payload...),
			ResponseTopic:   pk.Properties.ResponseTopic,
			CorrelationData: append([]byte(nil), pk.Properties.CorrelationData...),
			Client:          pk.Origin, // the publisher; the handler's client is the subscriber
			Identity:        b.access.identityOf(pk.Origin),
		})
	})
}

// Unsubscribe removes the in-process subscription Subscribe made with
// filter and id (a live reload that moves it).
func (b *Broker) Unsubscribe(filter string, id int) error {
	return b.srv.Unsubscribe(filter, id)
}

// ErrReplyNotAllowed is returned by Reply when the requester could not
// publish to its own response topic: a reply must not let a client write
// where the access rules would stop it (the gateway's topics, $SYS).
var ErrReplyNotAllowed = errors.New("localbroker: the requester may not publish to its response topic")

// Reply publishes an MQTT 5 response to req's response topic with its
// correlation data (not retained, not captured for the uplink), if the
// requester itself (req.Identity) may publish there.
func (b *Broker) Reply(req Inbound, payload []byte) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	topic := req.ResponseTopic
	if !validPublishTopic(topic) {
		return fmt.Errorf("localbroker: reply to invalid response topic %q", topic)
	}
	if !b.access.mayPublish(req.Identity, topic) {
		return fmt.Errorf("%w (%s, user %q, to %q)", ErrReplyNotAllowed, req.Client, req.Identity.Name, topic)
	}
	b.enqueue(outbound{topic: topic, payload: append([]byte(nil), payload...), reply: true,
		corr: append([]byte(nil), req.CorrelationData...)})
	return nil
}

// validPublishTopic rejects empty topics, wildcards and $ topics.
func validPublishTopic(t string) bool {
	return t != "" && t[0] != '$' && !strings.ContainsAny(t, "+#\x00")
}

// Close delivers what is queued (for at most closeDrain), then
// disconnects every client and stops the listeners. It is safe to call
// more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.out)
	b.mu.Unlock()
	t := time.NewTimer(closeDrain)
	defer t.Stop()
	select {
	case <-b.fanDone:
	case <-t.C:
	}
	b.policy.shutdown.Store(true) // from here a closed client's socket closes at once
	err := b.srv.Close()
	<-b.fanDone
	return err
}

// captureHook hands LAN publishes to the capturer in OnPublish, which
// mochi runs before it writes the PUBACK and before fan-out.
type captureHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *captureHook) ID() string           { return "edged-capture" }
func (h *captureHook) Provides(b byte) bool { return b == mqtt.OnPublish }

func (h *captureHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // Broker.Publish captured it already
	}
	h.b.mu.RLock()
	c := h.b.capture
	h.b.mu.RUnlock()
	if c == nil {
		return pk, nil
	}
	cc, _ := cl.Net.Conn.(*clientConn)
	var start time.Time
	if cc != nil {
		if cc.slowCapture {
			cc.flushAcks(false) // they must not wait for another slow capture
		}
		start = time.Now()
	}
	err := c.Capture(Message{Topic: pk.TopicName, Payload: pk.Payload, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain, Client: cl.ID})
	if cc != nil {
		cc.slowCapture = time.Since(start) >= slowCapture
	}
	if err == nil {
		return pk, nil
	}
	h.b.warn("capture", cl.ID, "refused a publish the uplink could not store", "client", cl.ID, "topic", pk.TopicName, "error", err)
	code := packets.ErrUnspecifiedError // 0x80
	if errors.Is(err, ErrQuotaExceeded) {
		code = packets.ErrQuotaExceeded // 0x97
		h.b.stats.uplinkFull.Add(1)
	} else {
		h.b.stats.uplinkFailed.Add(1)
	}
	// MQTT 3.1.1 has no negative PUBACK: drop without acknowledging, so
	// the publisher still owns the message and resends it.
	return refusePublish(cl, pk, code, false)
}

// minLevel drops records below a level before they reach h, and rate
// limits mochi's warnings, which a client can trigger at will (one per
// dropped message for a slow client, one per connection for keep-alive 0).
type minLevel struct {
	h   slog.Handler
	min slog.Level
	lim *ratelog.Limiter
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return m.h.Enabled(ctx, l) && (l >= m.min || m.h.Enabled(ctx, slog.LevelDebug))
}

// demoted are the client mistakes mochi logs at WARN or ERROR that are a
// debug matter: "error processing packet" (with a dump of the whole
// packet, for a refused publish or a bad packet), a hook's refusal of a
// publish (edged logs its own, rate limited) and the keep-alive advice
// (edged enforces its own keep-alive cap).
var demoted = map[string]bool{
	"error processing packet":        true,
	"publish packet error":           true,
	mqtt.ErrMinimumKeepalive.Error(): true,
}

// perClient are mochi's warnings about one client, limited per client
// rather than per message: a message dropped because the client has
// max_queued_messages unacknowledged (counted in Stats.Dropped.InflightFull).
var perClient = map[string]bool{
	"client store quota reached":       true,
	"client store bytes quota reached": true,
	"packet ids exhausted":             true,
}

// Handle passes records at or above the level, at most once a minute
// per message, except the demoted ones.
func (m minLevel) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < m.min || demoted[r.Message] {
		if !m.h.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
		return m.h.Handle(ctx, r)
	}
	key := "mochi|" + r.Message
	if perClient[r.Message] {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "client" {
				key += "|" + a.Value.String()
				return false
			}
			return true
		})
	}
	if ok, held := m.lim.Allow(key); !ok {
		return nil
	} else if held > 0 {
		r.AddAttrs(slog.Int("suppressed", held))
	}
	return m.h.Handle(ctx, r)
}
func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{m.h.WithAttrs(a), m.min, m.lim}
}
func (m minLevel) WithGroup(n string) slog.Handler { return minLevel{m.h.WithGroup(n), m.min, m.lim} }

// disconnectListener ends the sessions of one listener's clients with
// DISCONNECT 0x8B (server shutting down), as mochi's closeListenerClients
// does, but without its Clients.GetByListener: that takes the clients'
// read lock twice (mochi v2.7.9 clients.go:91-95), so a client leaving
// at the same moment (Clients.Delete, waiting for the write lock between
// the two) deadlocks the stop for good. Seen in make test: Close hung 8
// minutes.
func (b *Broker) disconnectListener(id string) {
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Listener == id && !cl.Closed() {
			_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}
