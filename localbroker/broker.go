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
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
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
type Broker struct {
	opts Opts
	log  *slog.Logger
	srv  *mqtt.Server
	tcp  *tcpListener
	ws   *wsListener
	// inline is mochi's in-process client, for publishes with properties.
	inline *mqtt.Client
	access *access

	mu      sync.RWMutex
	capture Capturer
	closed  bool
}

// New builds a broker; nothing listens until Start. prefix is the
// gateway's topic prefix (e.g. "edged/gh-01"), which the access rules
// protect.
func New(opts Opts, prefix string, log *slog.Logger) (*Broker, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("localbroker: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(opts.MaxPacketSize)
	caps.MaximumClientWritesPending = int32(opts.MaxPendingWrites)
	caps.ReceiveMaximum = uint16(opts.MaxInflight)
	caps.MaximumInflight = maxStoredInflight
	caps.MaximumClients = int64(opts.MaxClients)
	caps.MaximumSessionExpiryInterval = uint32(opts.SessionExpiry.Seconds())
	caps.MaximumMessageExpiryInterval = int64(opts.MessageExpiry.Seconds())
	srv := mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		InlineClient:           true,
		SysTopicResendInterval: int64(opts.SysInterval.Seconds()),
		// mochi logs every hook and listener at info; keep its voice
		// down to warnings unless we are debugging.
		Logger: slog.New(minLevel{log.Handler(), slog.LevelWarn}).With("library", "mochi"),
	})
	b := &Broker{opts: opts, log: log, srv: srv}
	b.inline, _ = srv.Clients.Get(mqtt.InlineClientId)
	b.access = &access{
		allowAnonymous: opts.AllowAnonymous,
		role:           opts.AnonymousRole,
		prefix:         strings.TrimSuffix(prefix, "/") + "/",
	}
	if err := srv.AddHook(b.access, nil); err != nil {
		return nil, fmt.Errorf("localbroker: %w", err)
	}
	if err := srv.AddHook(&captureHook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("localbroker: %w", err)
	}
	return b, nil
}

// maxStoredInflight caps the QoS 1/2 messages mochi keeps per client for
// delivery (also while a persistent client is away).
const maxStoredInflight = 1024

// SetCapturer installs the capturer; call it before Start.
func (b *Broker) SetCapturer(c Capturer) {
	b.mu.Lock()
	b.capture = c
	b.mu.Unlock()
}

// Start binds the listeners and starts serving. A listener that cannot
// bind is an error and nothing keeps running.
func (b *Broker) Start() error {
	if b.opts.MQTT != "" {
		b.tcp = newTCPListener("mqtt", b.opts.MQTT)
		if err := b.srv.AddListener(b.tcp); err != nil {
			b.Close()
			return fmt.Errorf("localbroker: mqtt listener %s: %w", b.opts.MQTT, err)
		}
	}
	if b.opts.WebSocket != "" {
		b.ws = newWSListener("websocket", b.opts.WebSocket, b.opts.WebSocketOrigins)
		if err := b.srv.AddListener(b.ws); err != nil {
			b.Close()
			return fmt.Errorf("localbroker: websocket listener %s: %w", b.opts.WebSocket, err)
		}
	}
	if err := b.srv.Serve(); err != nil {
		b.Close()
		return fmt.Errorf("localbroker: %w", err)
	}
	b.log.Info("broker listening", "mqtt", b.MQTTAddr(), "websocket", b.WebSocketAddr(),
		"anonymous", b.opts.AllowAnonymous, "anonymous_role", b.opts.AnonymousRole)
	return nil
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
// capturer (so it is stored before anybody sees it), then to the local
// subscribers. A capture error is returned and nothing is published.
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
	return b.srv.Publish(topic, payload, retain, 1)
}

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
		})
	})
}

// ErrReplyNotAllowed is returned by Reply when the requester could not
// publish to its own response topic: a reply must not let a client write
// where the access rules would stop it (the gateway's topics, $SYS).
var ErrReplyNotAllowed = errors.New("localbroker: the requester may not publish to its response topic")

// Reply publishes an MQTT 5 response to req's response topic with its
// correlation data (not retained, not captured for the uplink), if the
// requester itself may publish there.
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
	if !b.access.mayPublish(req.Client, topic) {
		return fmt.Errorf("%w (%s to %q)", ErrReplyNotAllowed, req.Client, topic)
	}
	return b.srv.InjectPacket(b.inline, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic,
		Payload:     payload,
		Properties:  packets.Properties{CorrelationData: req.CorrelationData},
		PacketID:    1, // the inline client's packets are not acknowledged; an id keeps them valid
	})
}

// validPublishTopic rejects empty topics, wildcards and $ topics.
func validPublishTopic(t string) bool {
	return t != "" && t[0] != '$' && !strings.ContainsAny(t, "+#\x00")
}

// Close disconnects every client and stops the listeners. It is safe to
// call more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	return b.srv.Close()
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
	err := c.Capture(Message{Topic: pk.TopicName, Payload: pk.Payload, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain, Client: cl.ID})
	if err == nil {
		return pk, nil
	}
	h.b.log.Warn("refused a publish the uplink could not store", "client", cl.ID, "topic", pk.TopicName, "error", err)
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		if errors.Is(err, ErrQuotaExceeded) {
			return pk, packets.ErrQuotaExceeded // PUBACK 0x97
		}
		return pk, packets.ErrUnspecifiedError // PUBACK 0x80
	}
	// MQTT 3.1.1 has no negative PUBACK: drop without acknowledging, so
	// the publisher still owns the message and resends it.
	return pk, packets.ErrRejectPacket
}

// minLevel drops records below a level before they reach h.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return m.h.Enabled(ctx, l) && (l >= m.min || m.h.Enabled(ctx, slog.LevelDebug))
}

// Handle passes records at or above the level, except mochi's
// "error processing packet", which it logs at WARN with a dump of the
// whole packet for every client mistake (a refused publish, a bad
// packet): that is a debug matter, and a client could flood the journal.
func (m minLevel) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < m.min || r.Message == "error processing packet" {
		if !m.h.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return m.h.Handle(ctx, r)
}
func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler { return minLevel{m.h.WithAttrs(a), m.min} }
func (m minLevel) WithGroup(n string) slog.Handler      { return minLevel{m.h.WithGroup(n), m.min} }
