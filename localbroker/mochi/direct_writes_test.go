// Test of edged's DirectWrites patch (see PATCHES.md).

package mqtt

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"
)

// With DirectWrites, publishToClient writes the delivery itself: no
// WriteLoop runs here, so only a direct write can deliver it, and
// nothing is left in the outbound queue.
func TestPublishToClientDirectWrites(t *testing.T) {
	s := newServer()
	s.Options.DirectWrites = true
	r, w := net.Pipe()
	defer r.Close()
	cl := s.NewClient(w, "tcp1", "direct", false) // no WriteLoop started
	cl.State.directReady.Store(true)              // its CONNACK was written
	s.Clients.Add(cl)

	want := packets.TPacketData[packets.Publish].Get(packets.TPublishBasic)
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, len(want.RawBytes))
		_, _ = io.ReadFull(r, buf)
		got <- buf
	}()
	_, err := s.publishToClient(cl, packets.Subscription{Filter: "a/b/c"}, *want.Packet)
	require.NoError(t, err)
	require.Empty(t, cl.State.outbound, "queued for a WriteLoop")
	select {
	case b := <-got:
		require.Equal(t, want.RawBytes, b)
	case <-time.After(5 * time.Second):
		t.Fatal("not delivered")
	}
}

// Before its CONNACK is written, a client's deliveries wait (a resumed
// session's subscriptions are live then) [MQTT-3.2.0-1];
// startDirectWrites, after the CONNACK, resends the session's inflight
// messages, then sends the QoS 0 ones that waited, in order, and later
// deliveries are written directly. The QoS 1 one that waited went out
// with the resend, once.
func TestDirectWritesWaitForConnack(t *testing.T) {
	s, cl, r := resumedClient(t)

	basic := *packets.TPacketData[packets.Publish].Get(packets.TPublishBasic).Packet
	_, err := s.publishToClient(cl, packets.Subscription{Filter: "a/b/c"}, basic) // QoS 0
	require.NoError(t, err)
	qos1 := basic
	qos1.FixedHeader.Qos = 1
	_, err = s.publishToClient(cl, packets.Subscription{Filter: "a/b/c", Qos: 1}, qos1)
	require.NoError(t, err)
	require.Len(t, cl.State.outbound, 2, "held until the CONNACK")

	got := readAll(r)
	require.NoError(t, cl.startDirectWrites(true))
	_, err = s.publishToClient(cl, packets.Subscription{Filter: "a/b/c"}, basic) // direct now
	require.NoError(t, err)
	require.Empty(t, cl.State.outbound)
	_ = cl.Net.Conn.Close()
	b := <-got
	// The inflight QoS 1 (resent, DUP set), then the held QoS 0, then the
	// later one; no second copy of the QoS 1.
	types := packetTypes(b)
	require.Equal(t, []byte{0x3a, 0x30, 0x30}, types)
}

// Without it, the delivery waits in the outbound queue for WriteLoop, as
// upstream does.
func TestPublishToClientQueuedWithoutDirectWrites(t *testing.T) {
	s := newServer()
	r, w := net.Pipe()
	defer r.Close()
	cl := s.NewClient(w, "tcp1", "queued", false)
	s.Clients.Add(cl)
	want := packets.TPacketData[packets.Publish].Get(packets.TPublishBasic)
	_, err := s.publishToClient(cl, packets.Subscription{Filter: "a/b/c"}, *want.Packet)
	require.NoError(t, err)
	require.Len(t, cl.State.outbound, 1)
}

// A delivery larger than the client's Maximum Packet Size is discarded
// as if sent [MQTT-3.1.2-25]: it must not stay inflight, where it used a
// slot for good and made every resumption's resend fail (and with it the
// connection).
func TestDirectWritesDiscardTooLarge(t *testing.T) {
	s := newServer()
	s.Options.DirectWrites = true
	r, w := net.Pipe()
	defer r.Close()
	cl := s.NewClient(w, "tcp1", "small", false)
	cl.Properties.ProtocolVersion = 5
	cl.Properties.Props.MaximumPacketSize = 16
	cl.State.directReady.Store(true)
	s.Clients.Add(cl)
	go func() { _, _ = io.Copy(io.Discard, r) }()

	pk := *packets.TPacketData[packets.Publish].Get(packets.TPublishBasic).Packet // 20 bytes
	pk.FixedHeader.Qos = 1
	_, err := s.publishToClient(cl, packets.Subscription{Filter: "a/b/c", Qos: 1}, pk)
	require.NoError(t, err)
	require.Equal(t, 0, cl.State.Inflight.Len(), "kept inflight")
	require.Equal(t, int64(1), s.Info.MessagesDropped)
	require.NoError(t, cl.ResendInflightMessages(true))
}

// Resending a session whose inflight store holds a message too large
// for the client (stored before it reconnected with a smaller Maximum
// Packet Size) discards it and sends the rest, instead of failing.
func TestPatchResendDiscardsTooLarge(t *testing.T) {
	s := newServer()
	r, w := net.Pipe()
	defer r.Close()
	cl := s.NewClient(w, "tcp1", "small", false)
	cl.Properties.ProtocolVersion = 5
	cl.Properties.Props.MaximumPacketSize = 16
	got := readAll(r)
	big := *packets.TPacketData[packets.Publish].Get(packets.TPublishBasic).Packet
	big.FixedHeader.Qos, big.PacketID = 1, 1
	small := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "a", PacketID: 2, Created: big.Created + 1}
	cl.State.Inflight.Set(big)
	cl.State.Inflight.Set(small)
	require.NoError(t, cl.ResendInflightMessages(true))
	_ = w.Close()
	b := <-got
	require.Equal(t, []byte{0x3a, 6, 0, 1, 'a', 0, 2, 0}, b, "only the small one, resent (MQTT 5: no properties)")
	_, ok := cl.State.Inflight.Get(1)
	require.False(t, ok, "the large one kept")
}

// A QoS 1 delivery that picked the old client of a session just taken
// over (it read the client table before the swap) is stored for the
// client that took the session over, not for the old one, whose inflight
// messages were cloned already and are cleared [MQTT-3.1.2-5].
func TestPatchTakeoverRedirectsDeliveries(t *testing.T) {
	s := newServer()
	s.Options.DirectWrites = true
	existing := s.NewClient(nil, "tcp1", "sess", false)
	existing.Properties.ProtocolVersion = 4
	s.Clients.Add(existing)
	old := *packets.TPacketData[packets.Publish].Get(packets.TPublishBasic).Packet
	old.FixedHeader.Qos, old.PacketID = 1, 7
	existing.State.Inflight.Set(old)

	_, w := net.Pipe()
	cl := s.NewClient(w, "tcp1", "sess", false)
	cl.Properties.ProtocolVersion = 4
	require.True(t, s.inheritClientSession(packets.Packet{Connect: packets.ConnectParams{ClientIdentifier: "sess"}}, cl))
	got, ok := s.Clients.Get("sess")
	require.True(t, ok)
	require.Same(t, cl, got, "the takeover swaps the table before it lets deliveries in")

	late := *packets.TPacketData[packets.Publish].Get(packets.TPublishBasic).Packet
	late.FixedHeader.Qos = 1
	_, err := s.publishToClient(existing, packets.Subscription{Filter: "a/b/c", Qos: 1}, late)
	require.NoError(t, err)
	require.Equal(t, 0, existing.State.Inflight.Len(), "stored for the old client")
	require.Equal(t, 2, cl.State.Inflight.Len(), "the inherited one and the late one")
	require.Len(t, cl.State.outbound, 1, "held for the new client's CONNACK")
}

// A session taken over again while the first takeover still copies its
// subscriptions (two connections with one client id fighting) keeps them
// all: the second takeover must not find the first's client in the table
// before it holds the session's subscriptions. Without that, the last
// client lacks some, and a later Clean Start session still receives the
// old session's messages (its subscriptions stay in the topic index).
func TestPatchTakeoverChainKeepsSubscriptions(t *testing.T) {
	const subs = 300
	for round := 0; round < 20; round++ {
		s := newServer()
		s.Options.DirectWrites = true
		a := s.NewClient(nil, "tcp1", "sess", false)
		a.Properties.ProtocolVersion = 4
		s.Clients.Add(a)
		for i := 0; i < subs; i++ {
			sub := packets.Subscription{Filter: fmt.Sprintf("t/%d", i), Qos: 1}
			s.Topics.Subscribe(a.ID, sub)
			a.State.Subscriptions.Add(sub.Filter, sub)
		}

		resume := packets.Packet{Connect: packets.ConnectParams{ClientIdentifier: "sess"}}
		b := s.NewClient(nil, "tcp1", "sess", false)
		b.Properties.ProtocolVersion = 4
		c := s.NewClient(nil, "tcp1", "sess", false)
		c.Properties.ProtocolVersion = 4
		done := make(chan bool)
		go func() { done <- s.inheritClientSession(resume, b) }()
		for i := 0; i < 10_000_000; i++ { // c connects as soon as b is in the table
			if got, ok := s.Clients.Get("sess"); ok && got == b {
				break
			}
			runtime.Gosched()
		}
		require.True(t, s.inheritClientSession(resume, c))
		require.True(t, <-done)
		require.Equal(t, subs, c.State.Subscriptions.Len(), "round %d: the last client's subscriptions", round)

		d := s.NewClient(nil, "tcp1", "sess", false)
		d.Properties.ProtocolVersion = 4
		require.False(t, s.inheritClientSession(packets.Packet{Connect: packets.ConnectParams{ClientIdentifier: "sess", Clean: true}}, d))
		for i := 0; i < subs; i++ {
			require.Empty(t, s.Topics.Subscribers(fmt.Sprintf("t/%d", i)).Subscriptions, "round %d: a Clean Start session inherits t/%d", round, i)
		}
	}
}

// resendHook runs the client's startDirectWrites (the CONNACK just
// written) at the moment a delivery has stored its message inflight,
// unless the delivery holds off the resend until it is queued.
type resendHook struct {
	HookBase
	fired atomic.Bool
	ready chan error
}

func (h *resendHook) ID() string { return "resend-at-store" }

func (h *resendHook) Provides(b byte) bool { return b == OnQosPublish }

func (h *resendHook) OnQosPublish(cl *Client, _ packets.Packet, _ int64, _ int) {
	if h.fired.Swap(true) {
		return // the resend's own
	}
	if cl.State.directMu.TryLock() {
		cl.State.directMu.Unlock()
		h.ready <- cl.startDirectWrites(true)
		return
	}
	go func() { h.ready <- cl.startDirectWrites(true) }()
}

// A QoS 1/2 delivery stored inflight just before a resumed session's
// resend (startDirectWrites) is sent once: by the resend. It was written
// again after it (the delivery found the client writing directly), so a
// QoS 2 message whose exchange had completed in between was delivered
// twice, and its id, free by then, collided with the next message's.
func TestPatchDeliveryStoredBeforeResendSentOnce(t *testing.T) {
	s, cl, r := resumedClient(t)
	h := &resendHook{ready: make(chan error, 1)}
	require.NoError(t, s.AddHook(h, nil))
	got := readAll(r)

	qos2 := *packets.TPacketData[packets.Publish].Get(packets.TPublishBasic).Packet
	qos2.FixedHeader.Qos = 2
	_, err := s.publishToClient(cl, packets.Subscription{Filter: "a/b/c", Qos: 2}, qos2)
	require.NoError(t, err)
	require.NoError(t, <-h.ready)
	_ = cl.Net.Conn.Close()
	b := <-got
	types := packetTypes(b)
	require.Equal(t, []byte{0x3c}, types, "PUBLISH QoS 2 DUP, once")
}

// A resumed session whose only deliveries before the CONNACK were QoS 1/2
// gets its resend at once: the resend ran while they were still queued,
// so WritePacket only buffered it (upstream's coalescing for a WriteLoop
// with more to write), and nothing flushed the buffer until the client's
// next write (a delivery, a PINGRESP).
func TestPatchResendFlushedWhenOnlyQoS12Waited(t *testing.T) {
	s, cl, r := resumedClient(t)
	qos1 := *packets.TPacketData[packets.Publish].Get(packets.TPublishBasic).Packet
	qos1.FixedHeader.Qos = 1
	_, err := s.publishToClient(cl, packets.Subscription{Filter: "a/b/c", Qos: 1}, qos1)
	require.NoError(t, err)
	require.Len(t, cl.State.outbound, 1, "held until the CONNACK")

	got := readAll(r)
	require.NoError(t, cl.startDirectWrites(true))
	_ = cl.Net.Conn.Close()
	b := <-got
	require.NotEmpty(t, b, "the resend left in the write buffer")
	require.Equal(t, byte(0x3a), b[0], "PUBLISH QoS 1 DUP")
}

// resumedClient returns a DirectWrites server with an MQTT 3.1.1 client
// in its table whose CONNACK is not written yet, and the client's end of
// its connection (closed when the test ends).
func resumedClient(t *testing.T) (*Server, *Client, net.Conn) {
	s := newServer()
	s.Options.DirectWrites = true
	r, w := net.Pipe()
	t.Cleanup(func() { r.Close() })
	cl := s.NewClient(w, "tcp1", "resumed", false)
	cl.Properties.ProtocolVersion = 4
	s.Clients.Add(cl)
	return s, cl, r
}

// readAll returns what arrives at r until the connection closes.
func readAll(r net.Conn) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		got <- b
	}()
	return got
}

// packetTypes lists the first byte of each packet in b (each under 128
// bytes: a one-byte remaining length).
func packetTypes(b []byte) []byte {
	var types []byte
	for len(b) >= 2 {
		types = append(types, b[0])
		b = b[2+int(b[1]):]
	}
	return types
}

// TestPatchInboundPublishKeepsOurDelivery (edged patch 8): a client's
// QoS 1 PUBLISH numbered like a message the server sent it and awaits
// the PUBACK of leaves that message alone: client and server number
// their packets independently [MQTT-2.2.1-3]. Upstream deleted it (and
// wrote the client's PUBACK over it first): a resumed session never got
// it again, and the client's PUBACK for it, ignored, never gave back the
// send quota, so deliveries stopped after Receive Maximum such numbers.
func TestPatchInboundPublishKeepsOurDelivery(t *testing.T) {
	s := newServer()
	cl, r, w := newTestClient()
	ours := packets.Packet{PacketID: 7, TopicName: "a/b", Payload: []byte("ours"), FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}}
	cl.State.Inflight.Set(ours)
	cl.State.Inflight.DecreaseSendQuota() // as publishToClient does
	atomic.StoreInt64(&s.Info.Inflight, 1)
	quota := atomic.LoadInt32(&cl.State.Inflight.sendQuota)

	var kept packets.Packet
	var keptOK bool
	errs := make(chan error, 2)
	go func() {
		defer w.Close()
		// The client's own QoS 1 PUBLISH, packet id 7 too, then its
		// PUBACK for our 7.
		errs <- s.processPacket(cl, *packets.TPacketData[packets.Publish].Get(packets.TPublishQos1).Packet)
		kept, keptOK = cl.State.Inflight.Get(7)
		errs <- s.processPacket(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: 7})
	}()
	buf, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, packets.TPacketData[packets.Puback].Get(packets.TPuback).RawBytes, buf) // the client's PUBLISH acknowledged
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
	require.True(t, keptOK, "our message awaiting its PUBACK was dropped by the client's PUBLISH with the same number")
	require.Equal(t, packets.Publish, kept.FixedHeader.Type)
	require.Equal(t, []byte("ours"), kept.Payload)
	_, ok := cl.State.Inflight.Get(7)
	require.False(t, ok, "our message still inflight after its PUBACK")
	require.Equal(t, quota+1, atomic.LoadInt32(&cl.State.Inflight.sendQuota), "the PUBACK gave the send quota back")
	require.Equal(t, int64(0), atomic.LoadInt64(&s.Info.Inflight))
}

// TestPatchSubscribeNumberedLikeOurDelivery (edged patch 8): a SUBSCRIBE
// with the number of a message the server has queued for the client (a
// resumed session's, typically: both count from 1) is granted; upstream
// answered 0x91 Packet Identifier in use for every filter.
func TestPatchSubscribeNumberedLikeOurDelivery(t *testing.T) {
	s := newServer()
	cl, r, w := newTestClient()
	cl.Properties.ProtocolVersion = 5
	cl.State.Inflight.Set(packets.Packet{PacketID: 15, FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}})
	pkx := *packets.TPacketData[packets.Subscribe].Get(packets.TSubscribeMqtt5).Packet
	pkx.PacketID = 15
	errs := make(chan error, 1)
	go func() {
		defer w.Close()
		errs <- s.processPacket(cl, pkx)
	}()
	buf, err := io.ReadAll(r)
	require.NoError(t, err)
	require.NoError(t, <-errs)
	want := packets.TPacketData[packets.Suback].Get(packets.TSubackMqtt5).RawBytes
	require.Equal(t, len(want), len(buf))
	require.Equal(t, want[4:], buf[4:], "the reason codes (after the packet id)")
}

// qosHook records the OnQosPublish and OnQosComplete calls, as a storage
// hook keys its inflight records: client and packet id.
type qosHook struct {
	HookBase
	mu     sync.Mutex
	events []string
}

func (h *qosHook) ID() string { return "qos-record" }
func (h *qosHook) Provides(b byte) bool {
	return b == OnQosPublish || b == OnQosComplete
}
func (h *qosHook) OnQosPublish(cl *Client, pk packets.Packet, sent int64, resends int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, fmt.Sprintf("publish %d", pk.PacketID))
}
func (h *qosHook) OnQosComplete(cl *Client, pk packets.Packet) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, fmt.Sprintf("complete %d", pk.PacketID))
}

// TestPatchInboundPublishOurNumberHooks (edged patch 8): a client's QoS 1
// PUBLISH numbered like our message awaiting its PUBACK, whose PUBACK is
// not stored, does not tell the hooks the exchange under that number
// completed: a storage hook (keyed by client and packet id) would delete
// the record of our message, which a restart then no longer resends.
func TestPatchInboundPublishOurNumberHooks(t *testing.T) {
	s := newServer()
	h := new(qosHook)
	require.NoError(t, s.AddHook(h, nil))
	cl, r, w := newTestClient()
	cl.State.Inflight.Set(packets.Packet{PacketID: 7, TopicName: "a/b", Payload: []byte("ours"), FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}})
	errs := make(chan error, 1)
	go func() {
		defer w.Close()
		errs <- s.processPacket(cl, *packets.TPacketData[packets.Publish].Get(packets.TPublishQos1).Packet)
	}()
	_, err := io.ReadAll(r)
	require.NoError(t, err)
	require.NoError(t, <-errs)
	h.mu.Lock()
	defer h.mu.Unlock()
	require.Empty(t, h.events, "hooks told of an exchange under our message's number")
}

// packetIDs lists the packets in b (MQTT 3.1.1, each under 128 bytes) by
// type and packet id, "publish 7 dup" for a resent PUBLISH.
func packetIDs(b []byte) []string {
	var out []string
	for len(b) >= 2 {
		pk, rest := b[2:2+int(b[1])], b[2+int(b[1]):]
		switch b[0] >> 4 {
		case packets.Publish:
			n := 2 + (int(pk[0])<<8 | int(pk[1]))
			s := fmt.Sprintf("publish %d", int(pk[n])<<8|int(pk[n+1]))
			if b[0]&0x08 != 0 {
				s += " dup"
			}
			out = append(out, s)
		default:
			out = append(out, fmt.Sprintf("%s %d", packets.PacketNames[b[0]>>4], int(pk[0])<<8|int(pk[1])))
		}
		b = rest
	}
	return out
}

// qos12Client returns an MQTT 3.1.1 client of s, not in its table, with
// receive and send quotas of 10, and the client's end of its connection.
func qos12Client(s *Server) (*Client, net.Conn) {
	r, w := net.Pipe()
	cl := s.NewClient(w, "tcp1", "qos2ids", false)
	cl.Properties.ProtocolVersion = 4
	cl.State.Inflight.ResetReceiveQuota(10)
	cl.State.Inflight.ResetSendQuota(10)
	return cl, r
}

// TestPatchInboundQoS2KeepsOurDelivery (edged patch 12): a client's QoS 2
// PUBLISH numbered like a QoS 1 or 2 message the server sent it and
// awaits the acknowledgement of leaves that message alone: client and
// server number their packets independently [MQTT-2.2.1-3]. Upstream (and
// patch 8) stored the client's PUBREC over it in the one store both
// directions shared: a resumed session never got it again, the client's
// PUBACK (or PUBREC, PUBCOMP) for it found the client's exchange instead,
// its send quota never came back, and the client's PUBREL found no
// exchange (PUBCOMP 0x92).
func TestPatchInboundQoS2KeepsOurDelivery(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("ours qos %d", qos), func(t *testing.T) {
			s := newServer()
			cl, r := qos12Client(s)
			ours := packets.Packet{PacketID: 7, TopicName: "a/b", Payload: []byte("ours"), FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}}
			cl.State.Inflight.Set(ours)
			cl.State.Inflight.DecreaseSendQuota() // as publishToClient does
			atomic.StoreInt64(&s.Info.Inflight, 1)
			sendQuota := atomic.LoadInt32(&cl.State.Inflight.sendQuota)
			recvQuota := atomic.LoadInt32(&cl.State.Inflight.receiveQuota)

			theirs := packets.Packet{PacketID: 7, TopicName: "c/d", Payload: []byte("theirs"), FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}}
			ack := func(typ byte) packets.Packet {
				return packets.Packet{FixedHeader: packets.FixedHeader{Type: typ, Qos: map[byte]byte{packets.Pubrel: 1}[typ]}, PacketID: 7}
			}
			got := readAll(r)
			var kept packets.Packet
			var keptOK bool
			var steps []error
			steps = append(steps, s.processPacket(cl, theirs))
			kept, keptOK = cl.State.Inflight.Get(7)
			steps = append(steps, cl.ResendInflightMessages(true)) // as on resumption
			if qos == 1 {
				steps = append(steps, s.processPacket(cl, ack(packets.Puback)))
			} else {
				steps = append(steps, s.processPacket(cl, ack(packets.Pubrec)), s.processPacket(cl, ack(packets.Pubcomp)))
			}
			steps = append(steps, s.processPacket(cl, ack(packets.Pubrel))) // the client's own exchange
			_ = cl.Net.Conn.Close()
			b := <-got
			for _, err := range steps {
				require.NoError(t, err)
			}

			require.True(t, keptOK, "our message dropped by the client's QoS 2 PUBLISH with its number")
			require.Equal(t, packets.Publish, kept.FixedHeader.Type, "the client's PUBREC stored over our message")
			require.Equal(t, []byte("ours"), kept.Payload)
			want := []string{"Pubrec 7", "publish 7 dup", "Pubrec 7"}
			if qos == 2 {
				want = append(want, "Pubrel 7")
			}
			want = append(want, "Pubcomp 7")
			require.Equal(t, want, packetIDs(b), "the client's PUBREC, the resend (ours, then its PUBREC), our PUBREL, its PUBCOMP")
			require.Equal(t, sendQuota+1, atomic.LoadInt32(&cl.State.Inflight.sendQuota), "the client's acknowledgement gave our send quota back")
			require.Equal(t, recvQuota, atomic.LoadInt32(&cl.State.Inflight.receiveQuota), "the client's PUBREL gave its receive quota back")
			require.Equal(t, 0, cl.State.Inflight.Len())
			require.Equal(t, int64(0), atomic.LoadInt64(&s.Info.Inflight))
		})
	}
}

// publishedHook counts the messages the server published.
type publishedHook struct {
	HookBase
	n atomic.Int32
}

func (h *publishedHook) ID() string                                { return "published" }
func (h *publishedHook) Provides(b byte) bool                      { return b == OnPublished }
func (h *publishedHook) OnPublished(cl *Client, pk packets.Packet) { h.n.Add(1) }

// TestPatchInboundQoS2DupRecognised (edged patch 12): with the client's
// exchanges in a store of their own, a resent QoS 2 PUBLISH (DUP) whose
// PUBREL has not come is still answered with a PUBREC and not published
// again [MQTT-4.3.3-10], also when a message of ours has its number (and
// that message stays). Before: passed for the DUP, but our message was
// gone.
func TestPatchInboundQoS2DupRecognised(t *testing.T) {
	s := newServer()
	h := new(publishedHook)
	require.NoError(t, s.AddHook(h, nil))
	cl, r := qos12Client(s)
	cl.State.Inflight.Set(packets.Packet{PacketID: 7, TopicName: "a/b", Payload: []byte("ours"), FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}})

	theirs := packets.Packet{PacketID: 7, TopicName: "c/d", Payload: []byte("theirs"), FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}}
	got := readAll(r)
	err1 := s.processPacket(cl, theirs)
	theirs.FixedHeader.Dup = true
	err2 := s.processPacket(cl, theirs)
	_ = cl.Net.Conn.Close()
	b := <-got
	require.NoError(t, err1)
	require.NoError(t, err2)
	require.Equal(t, []string{"Pubrec 7", "Pubrec 7"}, packetIDs(b))
	require.Equal(t, int32(1), h.n.Load(), "the resent PUBLISH was published again")
	kept, ok := cl.State.Inflight.Get(7)
	require.True(t, ok, "our message dropped")
	require.Equal(t, packets.Publish, kept.FixedHeader.Type)
}

// TestPatchInboundQoS2OurNumberHooks (edged patch 12): the client's QoS 2
// exchange under the number of a message of ours does not reach the
// hooks, which a storage hook keys by client and packet id: its
// OnQosPublish would overwrite our message's record, and its
// OnQosComplete (at the PUBREL) delete it. Our message's completion does.
func TestPatchInboundQoS2OurNumberHooks(t *testing.T) {
	s := newServer()
	h := new(qosHook)
	require.NoError(t, s.AddHook(h, nil))
	cl, r := qos12Client(s)
	cl.State.Inflight.Set(packets.Packet{PacketID: 7, TopicName: "a/b", Payload: []byte("ours"), FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}})
	got := readAll(r)
	err1 := s.processPacket(cl, packets.Packet{PacketID: 7, TopicName: "c/d", FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}})
	err2 := s.processPacket(cl, packets.Packet{PacketID: 7, FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}})
	h.mu.Lock()
	afterPubrel := append([]string(nil), h.events...)
	h.mu.Unlock()
	err3 := s.processPacket(cl, packets.Packet{PacketID: 7, FixedHeader: packets.FixedHeader{Type: packets.Puback}})
	_ = cl.Net.Conn.Close()
	<-got
	require.NoError(t, err1)
	require.NoError(t, err2)
	require.NoError(t, err3)
	require.Empty(t, afterPubrel, "hooks told of the client's exchange under our message's number")
	h.mu.Lock()
	defer h.mu.Unlock()
	require.Equal(t, []string{"complete 7"}, h.events, "our message's PUBACK")
}

// TestPatchTakeoverKeepsInboundQoS2 (edged patch 12): a session taken
// over keeps the client's open QoS 2 exchanges, in their own store, as it
// keeps our messages [MQTT-3.1.2-5]: the new connection's PUBREL
// completes the exchange.
func TestPatchTakeoverKeepsInboundQoS2(t *testing.T) {
	s := newServer()
	existing, r1 := qos12Client(s)
	existing.ID = "sess"
	s.Clients.Add(existing)
	got1 := readAll(r1)
	require.NoError(t, s.processPacket(existing, packets.Packet{PacketID: 5, TopicName: "c/d", FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}}))
	_ = existing.Net.Conn.Close()
	<-got1

	cl, r := qos12Client(s)
	cl.ID = "sess"
	require.True(t, s.inheritClientSession(packets.Packet{Connect: packets.ConnectParams{ClientIdentifier: "sess"}}, cl))
	got := readAll(r)
	err := s.processPacket(cl, packets.Packet{PacketID: 5, FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}})
	_ = cl.Net.Conn.Close()
	require.NoError(t, err)
	require.Equal(t, []string{"Pubcomp 5"}, packetIDs(<-got))
	require.False(t, clientPacketInUse(cl, 5), "the exchange completed")
}

// TestPatchQoS1AckNotStored (edged patch 13): a client's QoS 1 PUBLISH is
// answered and its receive quota given back without its PUBACK passing
// through the client's store when no hook is told of QoS exchanges; a
// PUBACK that could not be written is not left there for a resumed
// session to send later (upstream left it, and resent it on resumption,
// where it may acknowledge the client's next message under that number
// before the broker has it). With such a hook, the exchange is stored and
// reported as before.
func TestPatchQoS1AckNotStored(t *testing.T) {
	pub := *packets.TPacketData[packets.Publish].Get(packets.TPublishQos1).Packet

	s := newServer()
	cl, r := qos12Client(s)
	errs := make(chan error, 1)
	go func() { errs <- s.processPacket(cl, pub) }()
	got := make([]byte, 4)
	_, err := io.ReadFull(r, got)
	require.NoError(t, err)
	require.NoError(t, <-errs)
	require.Equal(t, []string{"Puback 7"}, packetIDs(got))
	require.Equal(t, 0, cl.State.InboundInflight.Len())
	require.Equal(t, int32(10), cl.State.Inflight.receiveQuota)

	cl, r = qos12Client(s)
	r.Close() // the PUBACK cannot be written
	require.Error(t, s.processPacket(cl, pub))
	require.Equal(t, 0, cl.State.InboundInflight.Len(), "an unwritten PUBACK kept for a resumed session")

	s = newServer()
	h := new(qosHook)
	require.NoError(t, s.AddHook(h, nil))
	cl, r = qos12Client(s)
	go func() { errs <- s.processPacket(cl, pub) }()
	_, err = io.ReadFull(r, got)
	require.NoError(t, err)
	require.NoError(t, <-errs)
	h.mu.Lock()
	defer h.mu.Unlock()
	require.Equal(t, []string{"publish 7", "complete 7"}, h.events)
}

// TestPatchInboundQoS2BoundAcrossSessions (edged patch 14): a client's
// QoS 2 exchanges awaiting its PUBREL stay with a resumed session while
// the receive quota starts full with each connection, so a client that
// never sends PUBREL could open Receive Maximum of them per connection,
// up to 65,535 stored. A new QoS 2 PUBLISH with Receive Maximum of them
// open now ends the connection (0x93); one of them completed makes room.
func TestPatchInboundQoS2BoundAcrossSessions(t *testing.T) {
	s := newServer()
	s.Options.Capabilities.ReceiveMaximum = 2
	cl, r := qos12Client(s) // a resumed session: quota full
	cl.Properties.ProtocolVersion = 5
	for id := uint16(1); id <= 2; id++ {
		cl.State.InboundInflight.Set(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: id})
	}
	pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, TopicName: "a/b", PacketID: 3, Payload: []byte("x")}
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(r); got <- b }()
	err := s.processPacket(cl, pub)
	require.ErrorIs(t, err, packets.ErrReceiveMaximum)
	cl.Stop(err)
	b := <-got
	require.NotEmpty(t, b)
	require.Equal(t, byte(packets.Disconnect<<4), b[0], "% x", b)
	require.Equal(t, 2, cl.State.InboundInflight.Len(), "the refused exchange stored")

	cl, r = qos12Client(s)
	cl.State.InboundInflight.Set(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: 1})
	errs := make(chan error, 1)
	go func() { errs <- s.processPacket(cl, pub) }()
	ack := make([]byte, 4)
	_, err = io.ReadFull(r, ack)
	require.NoError(t, err)
	require.NoError(t, <-errs)
	require.Equal(t, []string{"Pubrec 3"}, packetIDs(ack))
}

// TestPatchInboundQoS2ResendAcknowledged (edged patch 15): a QoS 2
// PUBLISH with the number of the client's exchange awaiting its PUBREL
// (a resend after a lost PUBREC, DUP set) is answered with a PUBREC of
// success and not published again, and the exchange stays open until the
// PUBREL [MQTT-4.3.3-10]. Upstream answered PUBREC 0x91 Packet Identifier
// in use, with which an MQTT 5 sender ends the exchange [MQTT-4.3.3-4]
// [MQTT-4.4.0-2]: it takes a message published once as refused, and sends
// no PUBREL for the exchange the server keeps open.
func TestPatchInboundQoS2ResendAcknowledged(t *testing.T) {
	s := newServer()
	h := new(publishedHook)
	require.NoError(t, s.AddHook(h, nil))
	cl, r := qos12Client(s)
	cl.Properties.ProtocolVersion = 5
	pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, TopicName: "a/b", PacketID: 7, Payload: []byte("once")}
	got := readAll(r)
	err1 := s.processPacket(cl, pub)
	pub.FixedHeader.Dup = true
	err2 := s.processPacket(cl, pub)
	kept, keptOK := cl.State.InboundInflight.Get(7)
	err3 := s.processPacket(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 7})
	_ = cl.Net.Conn.Close()
	b := <-got
	require.NoError(t, err1)
	require.NoError(t, err2)
	require.NoError(t, err3)
	require.Equal(t, []string{"Pubrec 7", "Pubrec 7", "Pubcomp 7"}, packetIDs(b))
	// Success, with no properties, leaves the reason code out: 2 bytes each.
	require.Equal(t, []byte{packets.Pubrec << 4, 2, 0, 7, packets.Pubrec << 4, 2, 0, 7, packets.Pubcomp << 4, 2, 0, 7}, b,
		"the resend's PUBREC is not one of success, or the PUBREL found no exchange")
	require.Equal(t, int32(1), h.n.Load(), "the resent PUBLISH was published again")
	require.True(t, keptOK, "the exchange ended by the resend")
	require.Equal(t, packets.Pubrec, kept.FixedHeader.Type)
	require.Equal(t, 0, cl.State.InboundInflight.Len())
	require.Equal(t, int64(0), atomic.LoadInt64(&s.Info.Inflight))
}

// MQTT 3.1.1 has no DISCONNECT from the server: it is the client's last
// packet (3.1.1 section 3.14). A 3.1.1 client the server stops (session
// taken over, shutdown, a refused packet) has its connection closed and
// is sent nothing, as Mosquitto does. Upstream wrote E0 00, which a 3.1.1
// client takes as a protocol violation: mosquitto_sub -V mqttv311 exits
// with "A network protocol error occurred" instead of reconnecting, and
// paho's Python client (Home Assistant's) logs "Unrecognised command
// 224". An MQTT 5 client still gets DISCONNECT with the reason code.
func TestPatchNoDisconnectToMQTT311(t *testing.T) {
	for _, version := range []byte{3, 4, 5} {
		t.Run(fmt.Sprint(version), func(t *testing.T) {
			s := newServer()
			cl, r, _ := newTestClient()
			cl.Properties.ProtocolVersion = version
			got := readAll(r)
			err := s.DisconnectClient(cl, packets.ErrSessionTakenOver)
			require.ErrorIs(t, err, packets.ErrSessionTakenOver)
			b := <-got
			if version < 5 {
				require.Empty(t, b, "a DISCONNECT to an MQTT %d client", version)
				return
			}
			require.GreaterOrEqual(t, len(b), 3)
			require.Equal(t, []byte{packets.Disconnect << 4, packets.ErrSessionTakenOver.Code}, []byte{b[0], b[2]})
		})
	}
}

// Patch 16 under Compatibilities.PassiveClientDisconnect: DisconnectClient
// neither writes DISCONNECT (the client is 3.1.1) nor stops the client
// (passive), so it does nothing at all: a session takeover
// (inheritClientSession) or a server shutdown (closeListenerClients)
// leaves the old 3.1.1 connection open and reading, with nothing that
// tells the client to go (a reviewer's test). Upstream wrote DISCONNECT
// and let the client close; Mosquitto closes a 3.1.1 connection. Under
// patch 16 a 3.1.1 connection is closed whatever the passive option says.
func TestPatchPassiveDisconnectClosesMQTT311(t *testing.T) {
	for _, version := range []byte{3, 4} {
		s := newServer()
		s.Options.Capabilities.Compatibilities.PassiveClientDisconnect = true
		cl, r, _ := newTestClient()
		cl.Properties.ProtocolVersion = version
		_ = s.DisconnectClient(cl, packets.ErrSessionTakenOver)
		_ = r.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		b := make([]byte, 16)
		n, err := r.Read(b)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("MQTT %d, passive disconnect: nothing written and the connection left open (StopCause %v)", version, cl.StopCause())
		} else {
			t.Logf("MQTT %d: read %d bytes, %v", version, n, err)
		}
	}
}
