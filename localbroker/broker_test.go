package localbroker

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/topics"
)

const prefix = "edged/t1"

// gw is the gateway's topic tree, for the topics the tests publish or
// subscribe to in the daemon's place; expected topics stay literal.
var gw = topics.New(prefix)

// startBroker runs a broker on loopback ports picked by the kernel.
func startBroker(t *testing.T, mod func(*Opts)) *Broker {
	t.Helper()
	o := DefaultOpts()
	o.MQTT, o.WebSocket = "127.0.0.1:0", "127.0.0.1:0"
	if mod != nil {
		mod(&o)
	}
	b, err := New(o, prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// client is a real MQTT 5 client (paho) with its received messages.
type client struct {
	*paho.Client
	msgs chan *paho.Publish
}

func connect(t *testing.T, conn net.Conn, id string) *client {
	t.Helper()
	c := &client{msgs: make(chan *paho.Publish, 100)}
	c.Client = paho.NewClient(paho.ClientConfig{
		ClientID: id,
		Conn:     conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	if ca.ReasonCode != 0 {
		t.Fatalf("connect %s: reason 0x%02x", id, ca.ReasonCode)
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	return c
}

func dialTCP(t *testing.T, b *Broker) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", b.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func (c *client) subscribe(t *testing.T, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if err != nil || sa.Reasons[0] >= 0x80 {
		t.Fatalf("subscribe %s: %v %v", filter, err, sa)
	}
}

func (c *client) publish(topic, payload string) (byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if r != nil {
		return r.ReasonCode, err
	}
	return 0, err
}

func (c *client) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
		return nil
	}
}

func (c *client) none(t *testing.T, wait time.Duration) {
	t.Helper()
	select {
	case m := <-c.msgs:
		t.Fatalf("unexpected message %s %q", m.Topic, m.Payload)
	case <-time.After(wait):
	}
}

func TestRetainedPublishReachesLateSubscriber(t *testing.T) {
	b := startBroker(t, nil)
	if err := b.Publish(gw.Sensor("air", sensors.Temperature), []byte(`{"value":21.5}`), true); err != nil {
		t.Fatal(err)
	}
	// Publish queues to the fan-out: a subscriber that comes before the
	// fan-out stored it gets it live (retain 0), not retained. Late
	// means after it is stored.
	for deadline := time.Now().Add(5 * time.Second); b.Stats().RetainedMessages == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the retained message was never stored")
		}
		time.Sleep(time.Millisecond)
	}
	c := connect(t, dialTCP(t, b), "late")
	c.subscribe(t, prefix+"/#")
	m := c.next(t)
	if m.Topic != prefix+"/sensor/air/temperature" || string(m.Payload) != `{"value":21.5}` || !m.Retain {
		t.Fatalf("got %s %q retain=%v", m.Topic, m.Payload, m.Retain)
	}
}

func TestAnonymousRoles(t *testing.T) {
	tests := []struct {
		role, topic string
		allowed     bool
	}{
		{RoleViewer, "lan/app/x", false},
		{RoleViewer, prefix + "/control/heat/set", false},
		{RolePublisher, "lan/app/x", true},
		{RolePublisher, prefix + "/sensor/air/temperature", false},
		{RolePublisher, prefix + "/control/heat/set", false},
		{RolePublisher, "$SYS/x", false},
		{RoleOperator, prefix + "/control/heat/set", true},
		{RoleOperator, prefix + "/control/heat/state", false},
		{RoleOperator, prefix + "/control//set", false},
		{RoleOperator, "lan/app/x", true},
		{RoleAdmin, prefix + "/sensor/air/temperature", true},
		// A look-alike prefix is not the gateway's.
		{RolePublisher, prefix + "x/sensor/air/temperature", true},
		{RoleViewer, prefix + "x/control/heat/set", false},
	}
	for _, tt := range tests {
		if got := mayPublish(tt.role, topics.New(prefix), tt.topic); got != tt.allowed {
			t.Errorf("mayPublish(%s, %s) = %v, want %v", tt.role, tt.topic, got, tt.allowed)
		}
	}
}

func TestViewerPublishIsRefusedOverTheWire(t *testing.T) {
	b := startBroker(t, nil) // default role: viewer
	sub := connect(t, dialTCP(t, b), "sub")
	sub.subscribe(t, "#")
	pub := connect(t, dialTCP(t, b), "pub")
	code, err := pub.publish("lan/app/x", "hi")
	if err == nil || code != 0x87 {
		t.Fatalf("viewer publish: code 0x%02x err %v, want 0x87 (not authorized)", code, err)
	}
	sub.none(t, 200*time.Millisecond)
}

func TestAnonymousRefusedWhenNotAllowed(t *testing.T) {
	b := startBroker(t, func(o *Opts) { o.AllowAnonymous = false })
	c := paho.NewClient(paho.ClientConfig{Conn: dialTCP(t, b)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: "anon", CleanStart: true})
	if err == nil || ca == nil || ca.ReasonCode < 0x80 {
		t.Fatalf("connect without credentials succeeded: %v %+v", err, ca)
	}
}

// recorder is a Capturer that records, can block, and can fail.
type recorder struct {
	mu     sync.Mutex
	got    []Message
	err    error
	gate   chan struct{} // when non-nil, Capture waits for it to close
	called chan struct{}
}

func (r *recorder) Capture(m Message) error {
	if r.called != nil {
		r.called <- struct{}{}
	}
	if r.gate != nil {
		<-r.gate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	m.Payload = append([]byte(nil), m.Payload...)
	r.got = append(r.got, m)
	return nil
}

func TestCaptureHappensBeforePubackAndFanOut(t *testing.T) {
	rec := &recorder{gate: make(chan struct{}), called: make(chan struct{}, 1)}
	b := startBroker(t, func(o *Opts) { o.AnonymousRole = RolePublisher })
	b.SetCapturer(rec)
	sub := connect(t, dialTCP(t, b), "sub")
	sub.subscribe(t, "lan/#")
	pub := connect(t, dialTCP(t, b), "pub")

	acked := make(chan error, 1)
	go func() { _, err := pub.publish("lan/app/x", "payload"); acked <- err }()
	select { // the broker is inside Capture now
	case <-rec.called:
	case <-time.After(5 * time.Second):
		t.Fatal("the publish never reached the capturer")
	}
	select {
	case err := <-acked:
		t.Fatalf("PUBACK arrived while the capture was still running (err %v)", err)
	case m := <-sub.msgs:
		t.Fatalf("subscriber saw %s before the capture finished", m.Topic)
	case <-time.After(200 * time.Millisecond):
	}
	close(rec.gate)
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
	if m := sub.next(t); string(m.Payload) != "payload" {
		t.Fatalf("subscriber got %q", m.Payload)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.got) != 1 || rec.got[0].Topic != "lan/app/x" || string(rec.got[0].Payload) != "payload" || rec.got[0].QoS != 1 || rec.got[0].Client != "pub" {
		t.Fatalf("captured %+v", rec.got)
	}
}

func TestCaptureRefusalIsAReasonCode(t *testing.T) {
	for _, tt := range []struct {
		err  error
		code byte
	}{
		{ErrQuotaExceeded, 0x97},
		{errors.New("disk on fire"), 0x80},
	} {
		rec := &recorder{err: tt.err}
		b := startBroker(t, func(o *Opts) { o.AnonymousRole = RolePublisher })
		b.SetCapturer(rec)
		sub := connect(t, dialTCP(t, b), "sub")
		sub.subscribe(t, "lan/#")
		pub := connect(t, dialTCP(t, b), "pub")
		code, err := pub.publish("lan/app/x", "p")
		if err == nil || code != tt.code {
			t.Errorf("capture error %v: PUBACK 0x%02x (%v), want 0x%02x", tt.err, code, err, tt.code)
		}
		sub.none(t, 200*time.Millisecond)
		// An in-process publish gets the error too, and fans out nothing.
		if err := b.Publish("lan/local", []byte("x"), false); !errors.Is(err, tt.err) {
			t.Errorf("in-process publish: %v, want %v", err, tt.err)
		}
		sub.none(t, 100*time.Millisecond)
	}
}

// wsNetConn adapts a client-side websocket to net.Conn for paho. paho
// writes a packet as several Writes and holds the Conn's sync.Locker, when
// it has one, across them: without it, paho's first PINGREQ (sent from
// its own goroutine right after CONNACK) could land inside a SUBSCRIBE
// and corrupt it (issue 14).
type wsNetConn struct {
	net.Conn
	c *wsConn
	sync.Locker
}

var _ sync.Locker = wsNetConn{}

func (w wsNetConn) Read(p []byte) (int, error)  { return w.c.Read(p) }
func (w wsNetConn) Write(p []byte) (int, error) { return w.c.Write(p) }
func (w wsNetConn) Close() error                { return w.c.Close() }

func dialWS(t *testing.T, b *Broker, origin string) (net.Conn, *http.Response, error) {
	t.Helper()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial("ws://"+b.WebSocketAddr()+"/mqtt", h)
	if err != nil {
		return nil, resp, err
	}
	return wsNetConn{Conn: ws.UnderlyingConn(), c: &wsConn{Conn: ws.UnderlyingConn(), ws: ws}, Locker: &sync.Mutex{}}, resp, nil
}

func TestWebSocketClientReceivesReadings(t *testing.T) {
	b := startBroker(t, nil)
	conn, _, err := dialWS(t, b, "")
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, conn, "browser")
	c.subscribe(t, prefix+"/sensor/#")
	for i := range 3 {
		payload := strings.Repeat("x", 1+i*3000) // spans websocket frames and bufio reads
		if err := b.Publish(gw.Sensor("a", sensors.Illuminance), []byte(payload), false); err != nil {
			t.Fatal(err)
		}
		if m := c.next(t); string(m.Payload) != payload {
			t.Fatalf("message %d: got %d bytes, want %d", i, len(m.Payload), len(payload))
		}
	}
}

func TestWebSocketOrigin(t *testing.T) {
	b := startBroker(t, func(o *Opts) { o.WebSocketOrigins = []string{"http://dash.lan:3000"} })
	for _, tt := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://127.0.0.1:9999", true}, // a page from the broker's own host
		{"http://dash.lan:3000", true},  // listed
		{"http://evil.example", false},
		{"http://localhost:8080", true}, // loopback listener: localhost is this machine
	} {
		conn, resp, err := dialWS(t, b, tt.origin)
		if tt.ok != (err == nil) {
			t.Errorf("origin %q: err %v, want ok=%v", tt.origin, err, tt.ok)
		}
		if err != nil && resp != nil && resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %q: status %d, want 403", tt.origin, resp.StatusCode)
		}
		if conn != nil {
			conn.Close()
		}
	}
}

// A DNS-rebinding page sends a Host header naming its own domain, which
// resolves to the gateway; the Origin check must not trust Host.
func TestWebSocketOriginIgnoresHostHeader(t *testing.T) {
	b := startBroker(t, nil)
	req, err := http.NewRequest("GET", "http://"+b.WebSocketAddr()+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "evil.example"
	req.Header.Set("Origin", "http://evil.example")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Protocol", "mqtt")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("rebinding request: status %d, want 403", resp.StatusCode)
	}
}

func TestStartFailsOnBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	o := DefaultOpts()
	o.MQTT, o.WebSocket = ln.Addr().String(), ""
	b, err := New(o, prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Start on a busy port: %v", err)
	}
	// Regression: a failed Start closed mochi, and the owner's Close
	// closed it again: panic (close of closed channel).
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPublishAfterClose(t *testing.T) {
	b := startBroker(t, nil)
	b.Close()
	if err := b.Publish("x", nil, false); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSubscribeAndReplyCarryRequestResponseProperties(t *testing.T) {
	b := startBroker(t, func(o *Opts) { o.AnonymousRole = RoleOperator })
	reqs := make(chan Inbound, 1)
	if err := b.Subscribe(gw.ControlSetFilter(), 7, func(m Inbound) { reqs <- m }); err != nil {
		t.Fatal(err)
	}
	c := connect(t, dialTCP(t, b), "app")
	c.subscribe(t, "app/replies")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: prefix + "/control/heat/set", QoS: 1, Payload: []byte(`{"setpoint":21}`),
		Properties: &paho.PublishProperties{ResponseTopic: "app/replies", CorrelationData: []byte("req-1")}}); err != nil {
		t.Fatal(err)
	}
	var req Inbound
	select {
	case req = <-reqs:
	case <-time.After(5 * time.Second):
		t.Fatal("no request")
	}
	if req.Topic != prefix+"/control/heat/set" || string(req.Payload) != `{"setpoint":21}` || req.ResponseTopic != "app/replies" || string(req.CorrelationData) != "req-1" || req.Client != "app" {
		t.Fatalf("request %+v", req)
	}
	if err := b.Reply(req, []byte(`{"ok":true}`)); err != nil {
		t.Fatal(err)
	}
	m := c.next(t)
	if m.Topic != "app/replies" || string(m.Payload) != `{"ok":true}` || m.Properties == nil || string(m.Properties.CorrelationData) != "req-1" {
		t.Fatalf("reply %s %q %+v", m.Topic, m.Payload, m.Properties)
	}
	for _, topic := range []string{"bad/#", "$SYS/x", ""} {
		if err := b.Reply(Inbound{ResponseTopic: topic, Client: "app"}, nil); err == nil {
			t.Errorf("reply to %q accepted", topic)
		}
	}
}

// Regression: Reply published through the in-process client, which mochi
// exempts from the ACL, so an operator could get a reply written to a
// gateway topic it may not publish to by naming it as response topic.
func TestReplyObeysTheRequestersRights(t *testing.T) {
	b := startBroker(t, func(o *Opts) { o.AnonymousRole = RoleOperator })
	sub := connect(t, dialTCP(t, b), "watcher")
	sub.subscribe(t, prefix+"/status")
	err := b.Reply(Inbound{ResponseTopic: prefix + "/status", Client: "app", Identity: Identity{Role: RoleOperator}}, []byte(`{"error":"x"}`))
	if !errors.Is(err, ErrReplyNotAllowed) {
		t.Fatalf("reply to a gateway topic: %v, want ErrReplyNotAllowed", err)
	}
	sub.none(t, 100*time.Millisecond)
}
