package localbroker

// Acknowledgements corked until mochi's next Read (conn.go): nothing
// may stay corked, whatever the transport, version or session state.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/packets"
)

// ackWait is how long a test waits for an acknowledgement before it
// calls it stuck; every one here comes back in well under a millisecond
// on an idle loopback when nothing holds it.
const ackWait = 5 * time.Second

// rc is a raw MQTT client over any net.Conn (TCP, TLS, websocket).
type rc struct {
	t    *testing.T
	name string
	conn net.Conn
	r    *bufio.Reader
	v    byte
	max  map[byte]time.Duration // slowest acknowledgement seen, by type
}

func (c *rc) send(pk packets.Packet) {
	c.t.Helper()
	if _, err := c.conn.Write(encV(c.t, c.v, pk)); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

func ackPk(typ byte, id uint16) packets.Packet {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: typ}, PacketID: id}
	if typ == packets.Pubrel {
		pk.FixedHeader.Qos = 1
	}
	return pk
}

// next reads one packet within d; nil when none came.
func (c *rc) next(d time.Duration) (packets.FixedHeader, []byte) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	raw := readPkt(c.r)
	_ = c.conn.SetReadDeadline(time.Time{})
	if raw == nil {
		return packets.FixedHeader{}, nil
	}
	var fh packets.FixedHeader
	_ = fh.Decode(raw[0])
	return fh, raw[1:]
}

// expect waits for a packet of type typ (with id, for acknowledgements)
// within ackWait; it fails the test when none comes.
func (c *rc) expect(typ byte, id uint16) []byte {
	c.t.Helper()
	start := time.Now()
	fh, body := c.next(ackWait)
	if body == nil {
		c.t.Fatalf("%s: no packet type %d (id %d) within %v: stuck", c.name, typ, id, ackWait)
	}
	if fh.Type != typ {
		c.t.Fatalf("%s: got packet type %d (% x), want %d", c.name, fh.Type, body, typ)
	}
	if typ >= packets.Puback && typ <= packets.Pubcomp {
		if got := uint16(body[0])<<8 | uint16(body[1]); got != id {
			c.t.Fatalf("%s: type %d for id %d, want %d", c.name, typ, got, id)
		}
		if d := time.Since(start); d > c.max[typ] {
			c.max[typ] = d
		}
	}
	return body
}

func certFiles(t *testing.T) TLS {
	t.Helper()
	cert := selfSigned(t)
	dir := t.TempDir()
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	c := filepath.Join(dir, "cert.pem")
	k := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(c, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return TLS{CertFile: c, KeyFile: k}
}

// corkBroker runs a broker with all four listeners.
func corkBroker(t *testing.T, mod func(*Opts)) *Broker {
	t.Helper()
	tlsFiles := certFiles(t)
	return startBroker(t, func(o *Opts) {
		o.AnonymousRole = RolePublisher
		o.MQTTS, o.WSS, o.TLS = "127.0.0.1:0", "127.0.0.1:0", tlsFiles
		o.MaxConnectsPerMinute, o.MaxClientsPerAddress, o.MaxClients = 100000, 1000, 1000
		if mod != nil {
			mod(o)
		}
	})
}

func dialTransport(t *testing.T, b *Broker, transport string) net.Conn {
	t.Helper()
	insecure := &tls.Config{InsecureSkipVerify: true}
	var conn net.Conn
	var err error
	switch transport {
	case "tcp":
		conn, err = net.Dial("tcp", b.MQTTAddr())
	case "mqtts":
		conn, err = tls.Dial("tcp", b.MQTTSAddr(), insecure)
	case "ws", "wss":
		url := "ws://" + b.WebSocketAddr() + "/mqtt"
		if transport == "wss" {
			url = "wss://" + b.WSSAddr() + "/mqtt"
		}
		d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second, TLSClientConfig: insecure}
		var ws *websocket.Conn
		ws, _, err = d.Dial(url, nil)
		if err == nil {
			conn = wsNetConn{Conn: ws.UnderlyingConn(), c: &wsConn{Conn: ws.UnderlyingConn(), ws: ws}, Locker: &sync.Mutex{}}
		}
	}
	if err != nil {
		t.Fatalf("dial %s: %v", transport, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// rawClient connects id over transport; persistent keeps the session
// for an hour (MQTT 5 Session Expiry, 3.1.1 Clean Session 0).
func rawClient(t *testing.T, b *Broker, transport string, v byte, id string, persistent bool) (*rc, bool) {
	t.Helper()
	conn := dialTransport(t, b, transport)
	c := &rc{t: t, name: transport + "/" + id, conn: conn, r: bufio.NewReader(conn), v: v, max: map[byte]time.Duration{}}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: id, Keepalive: 30, Clean: !persistent}}
	if persistent && v == 5 {
		pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 3600, true
	}
	c.send(pk)
	body := c.expect(packets.Connack, 0)
	if len(body) < 2 || body[1] != 0 {
		t.Fatalf("%s: CONNACK % x", c.name, body)
	}
	return c, body[0]&1 == 1
}

func (c *rc) subscribe(filter string, qos byte) {
	c.t.Helper()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: filter, Qos: qos}}})
	c.expect(packets.Suback, 0)
}

// delivery reads a PUBLISH within ackWait and returns its id and QoS.
func (c *rc) delivery() (uint16, byte) {
	c.t.Helper()
	fh, body := c.next(ackWait)
	if body == nil || fh.Type != packets.Publish {
		c.t.Fatalf("%s: no PUBLISH within %v (got type %d)", c.name, ackWait, fh.Type)
	}
	pk := packets.Packet{FixedHeader: fh, ProtocolVersion: c.v}
	if err := pk.PublishDecode(body); err != nil {
		c.t.Fatal(err)
	}
	return pk.PacketID, fh.Qos
}

// TestCorkOneAtATimeExchanges: clients that send one QoS 1 or QoS 2
// PUBLISH and wait for its acknowledgement before anything else, and a
// QoS 2 subscriber that waits for each PUBREL, over TCP, websocket, TLS
// and websocket over TLS, MQTT 5 and 3.1.1: no acknowledgement may stay
// corked. Every exchange must finish within ackWait.
func TestCorkOneAtATimeExchanges(t *testing.T) {
	b := corkBroker(t, nil)
	for _, transport := range []string{"tcp", "ws", "mqtts", "wss"} {
		for _, v := range []byte{5, 4} {
			t.Run(fmt.Sprintf("%s/v%d", transport, v), func(t *testing.T) {
				topic := fmt.Sprintf("lan/cork/%s/%d", transport, v)
				sub, _ := rawClient(t, b, transport, v, fmt.Sprintf("sub-%s-%d", transport, v), false)
				sub.subscribe(topic, 2)
				pub, _ := rawClient(t, b, transport, v, fmt.Sprintf("pub-%s-%d", transport, v), false)
				for i := uint16(1); i <= 100; i++ {
					// QoS 1
					pub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: topic, PacketID: i, Payload: []byte("q1")})
					pub.expect(packets.Puback, i)
					id, _ := sub.delivery()
					sub.send(ackPk(packets.Puback, id))
					// QoS 2, each step waiting for the last
					pub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, TopicName: topic, PacketID: i, Payload: []byte("q2")})
					pub.expect(packets.Pubrec, i)
					id, _ = sub.delivery()
					sub.send(ackPk(packets.Pubrec, id))
					sub.expect(packets.Pubrel, id)
					sub.send(ackPk(packets.Pubcomp, id))
					pub.send(ackPk(packets.Pubrel, i))
					pub.expect(packets.Pubcomp, i)
				}
				t.Logf("slowest: PUBACK %v PUBREC %v PUBCOMP %v (publisher), PUBREL %v (subscriber)",
					pub.max[packets.Puback], pub.max[packets.Pubrec], pub.max[packets.Pubcomp], sub.max[packets.Pubrel])
			})
		}
	}
}

// TestCorkResumedSessionResends: a resumed session's resend of the
// client's open QoS 2 exchange (PUBREC) and of ours at PUBREL is written
// by mochi before its read loop starts (attachClient:
// startDirectWrites), while the reader is not in Read: it must reach a
// client that waits for it and sends nothing. Both as a resumption after
// the connection closed and as a takeover of a connection still open.
func TestCorkResumedSessionResends(t *testing.T) {
	b := corkBroker(t, nil)
	for _, transport := range []string{"tcp", "ws", "mqtts", "wss"} {
		for _, v := range []byte{5, 4} {
			for _, takeover := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/v%d/takeover=%v", transport, v, takeover), func(t *testing.T) {
					id := fmt.Sprintf("res-%s-%d-%v", transport, v, takeover)
					topic := "lan/cork/res/" + id
					// The client's own QoS 2 exchange, left at PUBREC.
					c, _ := rawClient(t, b, transport, v, id, true)
					c.subscribe(topic, 2)
					c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, TopicName: "lan/cork/other", PacketID: 7, Payload: []byte("x")})
					c.expect(packets.Pubrec, 7)
					// Ours, left at PUBREL.
					p, _ := rawClient(t, b, transport, v, id+"-pub", false)
					p.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, TopicName: topic, PacketID: 1, Payload: []byte("y")})
					p.expect(packets.Pubrec, 1)
					p.send(ackPk(packets.Pubrel, 1))
					p.expect(packets.Pubcomp, 1)
					did, _ := c.delivery()
					c.send(ackPk(packets.Pubrec, did))
					c.expect(packets.Pubrel, did)
					if !takeover {
						c.conn.Close()
						time.Sleep(50 * time.Millisecond)
					}
					c2, present := rawClient(t, b, transport, v, id, true)
					if !present {
						t.Fatal("session not present")
					}
					// Nothing sent: both resends must come by themselves.
					got := map[byte]uint16{}
					for len(got) < 2 {
						fh, body := c2.next(ackWait)
						if body == nil {
							t.Fatalf("resent so far %v; the rest never came within %v (stuck)", got, ackWait)
						}
						got[fh.Type] = uint16(body[0])<<8 | uint16(body[1])
					}
					if got[packets.Pubrel] != did || got[packets.Pubrec] != 7 {
						t.Fatalf("resent %v, want PUBREL %d and PUBREC 7", got, did)
					}
					c2.send(ackPk(packets.Pubcomp, did))
					c2.send(ackPk(packets.Pubrel, 7))
					c2.expect(packets.Pubcomp, 7)
				})
			}
		}
	}
}

// TestCorkedAckSentOnClose: an ack corked when mochi ends the connection
// without reading again (the client's burst ended with DISCONNECT, or a
// packet mochi refuses) still goes out before the socket closes, over
// TCP (inline writes) and over TLS (writer goroutine only). While the
// broker stops, a closed client's socket closes at once (a stuck client
// must not hold the stop up), but a corked ack the socket takes at once
// still goes out first: before, an MQTT 5 client got it only because
// mochi's DISCONNECT flushed it, and a 3.1.1 client, sent no DISCONNECT
// (mochi patch 16), lost it and resent the message after reconnecting,
// a duplicate upstream (a reviewer's finding). That is plain TCP only:
// over TLS the writer goroutine sends, and the stop does not wait for it.
func TestCorkedAckSentOnClose(t *testing.T) {
	for _, tc := range []struct{ tls, stopping bool }{{false, false}, {true, false}, {false, true}} {
		t.Run(fmt.Sprintf("tls=%v/stopping=%v", tc.tls, tc.stopping), func(t *testing.T) {
			server, client := tcpPair(t)
			if tc.tls {
				server, client = tlsPair(t, server, client)
			}
			var shut atomic.Bool
			c := newClientConn(server, func() {}, 5*time.Second, 1<<20, func(bool) {}, &shut)
			if _, err := client.Write(pubPkt(t, 1, 1, "a")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			if _, err := c.Read(buf); err != nil {
				t.Fatal(err)
			}
			ack := encPkt(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: 1})
			if _, err := c.Write(ack); err != nil {
				t.Fatal(err)
			}
			shut.Store(tc.stopping)
			c.Close()
			got := make([]byte, len(ack))
			_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, ack) {
				t.Fatalf("corked ack on close: got % x, %v; want % x", got, err, ack)
			}
			c.wait()
		})
	}
}

// slowGate is a capturer whose capture of "slow" takes 2 ms (an fsync)
// and whose capture of "block" waits for open.
type slowGate struct {
	entered chan struct{}
	open    chan struct{}
}

func (g *slowGate) Capture(m Message) error {
	switch string(m.Payload) {
	case "slow":
		time.Sleep(2 * time.Millisecond)
	case "block":
		g.entered <- struct{}{}
		<-g.open
	}
	return nil
}

// TestCorkedAckNotHeldAcrossSlowCapture: a client sends two QoS 1 (QoS 2)
// PUBLISHes in one write. The first one's capture is slow (2 ms, as an
// fsync under sync: always), so its acknowledgement is not corked past
// the start of the next capture, which here does not end until the
// client has that acknowledgement. (After a quick capture the ack would
// wait for the next one: the reviewer's finding, a burst's first PUBACK
// 0.5 ms -> 13-21 ms with sync: always, before the rule.)
func TestCorkedAckNotHeldAcrossSlowCapture(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			g := &slowGate{entered: make(chan struct{}, 1), open: make(chan struct{})}
			b := corkBroker(t, nil)
			b.SetCapturer(g)
			c, _ := rawClient(t, b, "tcp", 5, "burst", false)
			first := encV(t, 5, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, TopicName: "lan/x", PacketID: 1, Payload: []byte("slow")})
			second := encV(t, 5, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, TopicName: "lan/x", PacketID: 2, Payload: []byte("block")})
			if _, err := c.conn.Write(append(first, second...)); err != nil {
				t.Fatal(err)
			}
			select {
			case <-g.entered:
			case <-time.After(ackWait):
				t.Fatal("the second publish never reached the capturer")
			}
			ack := packets.Puback
			if qos == 2 {
				ack = packets.Pubrec
			}
			fh, body := c.next(ackWait)
			close(g.open)
			if body == nil {
				t.Fatalf("no acknowledgement of the first publish while the second one's capture runs (%v)", ackWait)
			}
			if fh.Type != ack || body[1] != 1 {
				t.Fatalf("got type %d % x, want type %d for id 1", fh.Type, body, ack)
			}
			c.expect(ack, 2)
		})
	}
}

// corkProbe is a quick capturer that, at the second capture of each
// burst of two, records whether the first one's ack is still corked.
type corkProbe struct {
	b      *Broker
	mu     sync.Mutex
	corked []bool
}

func (q *corkProbe) Capture(m Message) error {
	if string(m.Payload) != "second" {
		return nil
	}
	cl, ok := q.b.srv.Clients.Get(m.Client)
	if !ok {
		return nil
	}
	cc := cl.Net.Conn.(*clientConn)
	cc.mu.Lock()
	corked := cc.corked && cc.queue.Len() > 0
	cc.mu.Unlock()
	q.mu.Lock()
	q.corked = append(q.corked, corked)
	q.mu.Unlock()
	return nil
}

// TestQuickCapturesShareOneWrite guards what the corking is for, with a
// capturer installed as edged always runs: after a quick capture the
// first publish's ack is still corked while the second one of the same
// read is captured. A capture preempted for 100 µs counts as slow and
// sends the acks (harmless, but it would make a single try flaky), so up
// to 5 bursts are tried and one must show it. (It fails with every
// capture counted as slow, slowCapture = 0: a reviewer's finding that no
// other test did.)
func TestQuickCapturesShareOneWrite(t *testing.T) {
	b := corkBroker(t, nil)
	q := &corkProbe{b: b}
	b.SetCapturer(q)
	c, _ := rawClient(t, b, "tcp", 5, "quick", false)
	for try := uint16(0); try < 5; try++ {
		first := encV(t, 5, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "lan/x", PacketID: 2*try + 1, Payload: []byte("first")})
		second := encV(t, 5, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "lan/x", PacketID: 2*try + 2, Payload: []byte("second")})
		if _, err := c.conn.Write(append(first, second...)); err != nil {
			t.Fatal(err)
		}
		c.expect(packets.Puback, 2*try+1)
		c.expect(packets.Puback, 2*try+2)
		q.mu.Lock()
		seen := slices.Contains(q.corked, true)
		q.mu.Unlock()
		if seen {
			return
		}
	}
	t.Fatalf("in 5 bursts of two, the first ack was never still corked at the second capture (%v)", q.corked)
}
