package localbroker

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// persistentConnect is the CONNECT of a session kept for an hour after
// the client goes: Session Expiry 3600 (MQTT 5) or Clean Session 0.
func persistentConnect(version byte, id string) packets.Packet {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: version,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: id, Keepalive: 60}}
	if version == 5 {
		pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 3600, true
	}
	return pk
}

// rawPersistent connects a persistent session and returns whether the
// broker had one for the id (CONNACK Session Present).
func rawPersistent(t *testing.T, addr string, version byte, id string) (net.Conn, *bufio.Reader, bool) {
	t.Helper()
	conn, r, ack := rawConnect(t, addr, persistentConnect(version, id))
	if len(ack) < 3 || ack[0] != 0x20 || ack[2] != 0 {
		t.Fatalf("%s: CONNACK % x", id, ack)
	}
	return conn, r, ack[1]&1 == 1
}

// rawSubscribe sends one SUBSCRIBE with filters (QoS 1) and returns the
// SUBACK's reason codes, skipping any PUBLISH that comes first.
func rawSubscribe(t *testing.T, conn net.Conn, r *bufio.Reader, version byte, id uint16, filters ...string) []byte {
	t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, ProtocolVersion: version, PacketID: id}
	for _, f := range filters {
		pk.Filters = append(pk.Filters, packets.Subscription{Filter: f, Qos: 1})
	}
	if _, err := conn.Write(enc(t, pk)); err != nil {
		t.Fatal(err)
	}
	ack := rawAck(t, r, version, packets.Suback)
	if ack.PacketID != id {
		t.Fatalf("SUBACK for packet %d, want %d", ack.PacketID, id)
	}
	return ack.ReasonCodes
}

// rawUnsubscribe sends one UNSUBSCRIBE and returns the UNSUBACK's codes
// (MQTT 5; none in 3.1.1).
func rawUnsubscribe(t *testing.T, conn net.Conn, r *bufio.Reader, version byte, id uint16, filters ...string) []byte {
	t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, ProtocolVersion: version, PacketID: id}
	for _, f := range filters {
		pk.Filters = append(pk.Filters, packets.Subscription{Filter: f})
	}
	if _, err := conn.Write(enc(t, pk)); err != nil {
		t.Fatal(err)
	}
	return rawAck(t, r, version, packets.Unsuback).ReasonCodes
}

// rawAck reads packets until one of type typ, within 10 s.
func rawAck(t *testing.T, r *bufio.Reader, version byte, typ byte) packets.Packet {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		raw := readPkt(r)
		if raw == nil {
			t.Fatalf("connection ended waiting for packet type %d", typ)
		}
		fh := packets.FixedHeader{}
		if err := fh.Decode(raw[0]); err != nil {
			t.Fatal(err)
		}
		if fh.Type != typ {
			continue
		}
		fh.Remaining = len(raw) - 1
		pk := packets.Packet{FixedHeader: fh, ProtocolVersion: version}
		var err error
		switch typ {
		case packets.Suback:
			err = pk.SubackDecode(raw[1:])
		case packets.Unsuback:
			err = pk.UnsubackDecode(raw[1:])
		}
		if err != nil {
			t.Fatal(err)
		}
		return pk
	}
	t.Fatalf("no packet type %d within 10s", typ)
	return packets.Packet{}
}

// rawPublishes reads PUBLISH packets, acknowledging QoS 1 ones, until
// none comes for quiet, and returns their payloads.
func rawPublishes(t *testing.T, conn net.Conn, r *bufio.Reader, version byte, quiet time.Duration) []string {
	t.Helper()
	var got []string
	for {
		_ = conn.SetReadDeadline(time.Now().Add(quiet))
		raw := readPkt(r)
		if raw == nil {
			_ = conn.SetReadDeadline(time.Time{})
			return got
		}
		fh := packets.FixedHeader{}
		if err := fh.Decode(raw[0]); err != nil || fh.Type != packets.Publish {
			continue
		}
		pk := packets.Packet{FixedHeader: fh, ProtocolVersion: version}
		if err := pk.PublishDecode(raw[1:]); err != nil {
			t.Fatal(err)
		}
		got = append(got, string(pk.Payload))
		if fh.Qos == 1 {
			_, _ = conn.Write([]byte{0x40, 2, byte(pk.PacketID >> 8), byte(pk.PacketID)})
		}
	}
}

// heapInUse is the heap in use after a collection, in bytes.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// waitFor polls cond every 10 ms for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSubscriptionFloodBounded is the hostile client of the issue: one
// connection sends 100 SUBSCRIBE packets of 1,000 distinct filters each.
// Before max_subscriptions the broker held all 100,000 (heap in use
// +131.5 MiB); now it holds max_subscriptions and refuses the rest (+0.4
// MiB).
func TestSubscriptionFloodBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("a 100,000-filter flood")
	}
	b := startBroker(t, nil)
	before := heapInUse()
	conn, r, ack := rawSession(t, b.MQTTAddr(), 5, "flood", 60)
	if len(ack) < 3 || ack[2] != 0 {
		t.Fatalf("CONNACK % x", ack)
	}
	const packetsN, perPacket = 100, 1000
	refused := 0
	for p := range packetsN {
		filters := make([]string, perPacket)
		for i := range filters {
			filters[i] = fmt.Sprintf("flood/%d/reply-%d", p, i)
		}
		for _, c := range rawSubscribe(t, conn, r, 5, uint16(p+1), filters...) {
			if c == packets.ErrQuotaExceeded.Code {
				refused++
			}
		}
	}
	after := heapInUse()
	s := b.Stats()
	t.Logf("%d filters subscribed: broker holds %d subscriptions, refused %d (counted %d); heap in use %.1f MiB -> %.1f MiB (+%.1f MiB)",
		packetsN*perPacket, s.Subscriptions, refused, s.SubscriptionsRefused.MaxSubscriptions,
		float64(before)/(1<<20), float64(after)/(1<<20), (float64(after)-float64(before))/(1<<20))
	max := DefaultOpts().MaxSubscriptions
	if s.Subscriptions > int64(max) {
		t.Fatalf("one client holds %d subscriptions, over max_subscriptions %d", s.Subscriptions, max)
	}
	if want := packetsN*perPacket - max; refused != want || s.SubscriptionsRefused.MaxSubscriptions != uint64(want) {
		t.Errorf("refused %d with 0x97, counted %d; want %d", refused, s.SubscriptionsRefused.MaxSubscriptions, want)
	}
}

// TestMaxSubscriptionsSuback: at the cap, each new filter of a SUBSCRIBE
// gets 0x97 (MQTT 5) or 0x80 (3.1.1) while the other filters of the
// same packet that fit, and filters the client already holds, are
// granted; an unsubscribe frees a slot; the refusals are counted, and
// logged once.
func TestMaxSubscriptionsSuback(t *testing.T) {
	for _, version := range []byte{5, 4} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			logs := &lockedBuffer{}
			b := startBrokerLog(t, slog.New(slog.NewTextHandler(logs, nil)), func(o *Opts) { o.MaxSubscriptions = 3 })
			quota := packets.ErrQuotaExceeded.Code
			invalid := packets.ErrTopicFilterInvalid.Code
			if version < 5 {
				quota, invalid = 0x80, 0x80
			}
			conn, r, ack := rawSession(t, b.MQTTAddr(), version, "capped", 60)
			if len(ack) < 3 || ack[0] != 0x20 || ack[2] != 0 {
				t.Fatalf("CONNACK % x", ack)
			}
			for _, step := range []struct {
				unsubscribe bool
				filters     []string
				want        []byte
			}{
				{filters: []string{"lan/a", "lan/b"}, want: []byte{1, 1}},
				// lan/a again is no new subscription; lan/c is the third;
				// lan/d is over; an invalid filter keeps its own code.
				{filters: []string{"lan/a", "lan/c", "lan/d", "lan/#/x"}, want: []byte{1, 1, quota, invalid}},
				// The same new filter twice in one packet, a held one between.
				{filters: []string{"lan/e", "lan/b", "lan/e", "lan/+"}, want: []byte{quota, 1, quota, quota}},
				{unsubscribe: true, filters: []string{"lan/b"}},
				{filters: []string{"lan/e", "lan/e", "lan/f"}, want: []byte{1, 1, quota}},
			} {
				if step.unsubscribe {
					rawUnsubscribe(t, conn, r, version, 9, step.filters...)
					continue
				}
				if got := rawSubscribe(t, conn, r, version, 7, step.filters...); string(got) != string(step.want) {
					t.Fatalf("SUBSCRIBE %v: SUBACK % x, want % x", step.filters, got, step.want)
				}
			}
			s := b.Stats()
			if s.Subscriptions != 3 || s.SubscriptionsRefused.MaxSubscriptions != 5 {
				t.Errorf("%d subscriptions, %d refused; want 3 and 5", s.Subscriptions, s.SubscriptionsRefused.MaxSubscriptions)
			}
			// What was refused gets nothing; what was granted works.
			if err := b.Publish("lan/d", []byte("refused"), false); err != nil {
				t.Fatal(err)
			}
			if err := b.Publish("lan/e", []byte("granted"), false); err != nil {
				t.Fatal(err)
			}
			if got := rawPublishes(t, conn, r, version, 300*time.Millisecond); len(got) != 1 || got[0] != "granted" {
				t.Errorf("deliveries %q, want only the granted subscription's", got)
			}
			if n := strings.Count(logs.String(), "refused subscriptions over"); n != 1 {
				t.Errorf("refusals logged %d times, want once a minute per client:\n%s", n, logs)
			}
		})
	}
}

// TestMaxSubscriptionsAcrossSessions: the count is the session's, so it
// survives a resumption and a takeover (a full session still refuses,
// re-subscribing is free) and starts again with a Clean Start.
func TestMaxSubscriptionsAcrossSessions(t *testing.T) {
	for _, version := range []byte{5, 4} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			b := startBroker(t, func(o *Opts) { o.MaxSubscriptions = 2 })
			quota := packets.ErrQuotaExceeded.Code
			if version < 5 {
				quota = 0x80
			}
			conn, r, _ := rawPersistent(t, b.MQTTAddr(), version, "keeper")
			if got := rawSubscribe(t, conn, r, version, 1, "lan/a", "lan/b", "lan/c"); string(got) != string([]byte{1, 1, quota}) {
				t.Fatalf("first SUBACK % x", got)
			}
			conn.Close()
			waitFor(t, "the session offline", func() bool { return b.Stats().Clients == 0 })
			conn, r, present := rawPersistent(t, b.MQTTAddr(), version, "keeper")
			if !present {
				t.Fatal("session not resumed")
			}
			if got := rawSubscribe(t, conn, r, version, 2, "lan/c", "lan/a"); string(got) != string([]byte{quota, 1}) {
				t.Fatalf("after resuming: SUBACK % x, want % x", got, []byte{quota, 1})
			}
			// A takeover while connected: the new connection has the
			// session's two.
			conn2, r2, present := rawPersistent(t, b.MQTTAddr(), version, "keeper")
			if !present {
				t.Fatal("session not taken over")
			}
			if got := rawSubscribe(t, conn2, r2, version, 3, "lan/c", "lan/b"); string(got) != string([]byte{quota, 1}) {
				t.Fatalf("after a takeover: SUBACK % x, want % x", got, []byte{quota, 1})
			}
			rawUnsubscribe(t, conn2, r2, version, 4, "lan/a")
			if got := rawSubscribe(t, conn2, r2, version, 5, "lan/c"); string(got) != string([]byte{1}) {
				t.Fatalf("after an unsubscribe: SUBACK % x", got)
			}
			conn2.Close()
			waitFor(t, "the session offline", func() bool { return b.Stats().Clients == 0 })
			conn3, r3, ack := rawSession(t, b.MQTTAddr(), version, "keeper", 60)
			if len(ack) < 3 || ack[1]&1 != 0 {
				t.Fatalf("Clean Start: CONNACK % x", ack)
			}
			if got := rawSubscribe(t, conn3, r3, version, 6, "lan/x", "lan/y", "lan/z"); string(got) != string([]byte{1, 1, quota}) {
				t.Fatalf("a Clean Start session: SUBACK % x", got)
			}
			if s := b.Stats().Subscriptions; s != 2 {
				t.Errorf("broker holds %d subscriptions, want the new session's 2", s)
			}
		})
	}
}

// TestOfflineSessionsBounded: beyond max_sessions sessions kept for
// absent clients, the one that left first ends (as if it had expired):
// its subscriptions leave the topic index and its queued messages are
// counted as dropped; a client coming back to it starts afresh, one
// whose session was kept gets what was queued.
func TestOfflineSessionsBounded(t *testing.T) {
	for _, version := range []byte{5, 4} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			logs := &lockedBuffer{}
			b := startBrokerLog(t, slog.New(slog.NewTextHandler(logs, nil)), func(o *Opts) {
				o.MaxSessions, o.MaxConnectsPerMinute = 10, 1000
			})
			leave := func(id string) {
				conn, r, _ := rawPersistent(t, b.MQTTAddr(), version, id)
				rawSubscribe(t, conn, r, version, 1, "load/#")
				conn.Close()
				waitFor(t, id+" offline", func() bool { return b.Stats().Clients == 0 })
			}
			for i := range 10 {
				leave(fmt.Sprint("sess-", i))
			}
			for i := range 5 {
				if err := b.Publish("load/x", []byte(fmt.Sprint(i)), false); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "5 messages queued for each of 10", func() bool {
				n := 0
				for _, cl := range b.srv.Clients.GetAll() {
					n += cl.State.Inflight.Len()
				}
				return n == 50
			})
			for i := 10; i < 15; i++ {
				leave(fmt.Sprint("sess-", i))
			}
			s := b.Stats()
			if s.SessionsEnded.MaxSessions != 5 || s.Dropped.SessionEnded != 25 {
				t.Errorf("ended %d sessions, dropped %d messages with them; want 5 and 25", s.SessionsEnded.MaxSessions, s.Dropped.SessionEnded)
			}
			if s.Subscriptions != 10 {
				t.Errorf("the topic index holds %d subscriptions, want the 10 kept sessions'", s.Subscriptions)
			}
			if n := sessionsKept(b); n != 10 {
				t.Errorf("%d sessions kept, want max_sessions 10", n)
			}
			if n := strings.Count(logs.String(), "ended the session of"); n != 1 {
				t.Errorf("logged %d times, want once a minute:\n%s", n, logs)
			}
			conn, r, present := rawPersistent(t, b.MQTTAddr(), version, "sess-0")
			if present {
				t.Error("the oldest session was kept")
			}
			if got := rawPublishes(t, conn, r, version, 300*time.Millisecond); len(got) != 0 {
				t.Errorf("an ended session delivered %q", got)
			}
			conn.Close()
			conn, r, present = rawPersistent(t, b.MQTTAddr(), version, "sess-9")
			if !present {
				t.Error("a session within max_sessions was not kept")
			}
			if got := rawPublishes(t, conn, r, version, 300*time.Millisecond); len(got) != 5 {
				t.Errorf("a kept session delivered %q, want its 5 queued", got)
			}
		})
	}
}

// sessionsKept counts the broker's sessions of absent clients.
func sessionsKept(b *Broker) int {
	n := 0
	for _, cl := range b.srv.Clients.GetAll() {
		if !cl.Net.Inline && cl.Closed() {
			n++
		}
	}
	return n
}

// TestOfflineSessionMemoryBounded is the other hostile client of the
// issue: 300 persistent sessions under new client ids, each subscribed
// to everything and gone, while the gateway publishes 100 readings of 1
// KiB. Before max_sessions all 300 were kept with 100 messages each
// (+71.4 MiB of heap); now max_sessions, 32 (+8.2 MiB; the oldest end
// first).
func TestOfflineSessionMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("300 sessions")
	}
	b := startBroker(t, func(o *Opts) { o.MaxClients, o.MaxClientsPerAddress, o.MaxConnectsPerMinute = 1000, 1000, 100000 })
	before := heapInUse()
	const sessions, msgs = 300, 100
	for i := range sessions {
		conn, r, _ := rawPersistent(t, b.MQTTAddr(), 4, fmt.Sprint("gone-", i))
		rawSubscribe(t, conn, r, 4, 1, "load/#")
		conn.Close()
	}
	waitFor(t, "every session offline", func() bool { return b.Stats().Clients == 0 })
	payload := []byte(strings.Repeat("x", 1024))
	for i := range msgs {
		if err := b.Publish(fmt.Sprint("load/", i), payload, false); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 {
			waitFor(t, "the fan-out queue empty", func() bool { return len(b.out) == 0 })
		}
	}
	waitFor(t, "the fan-out queue empty", func() bool { return len(b.out) == 0 })
	time.Sleep(100 * time.Millisecond) // the last message reaches its subscribers
	after := heapInUse()
	queued := 0
	for _, cl := range b.srv.Clients.GetAll() {
		queued += cl.State.Inflight.Len()
	}
	kept := sessionsKept(b)
	t.Logf("%d sessions gone, %d readings of 1 KiB: %d sessions kept, %d messages queued; heap in use %.1f MiB -> %.1f MiB (+%.1f MiB)",
		sessions, msgs, kept, queued, float64(before)/(1<<20), float64(after)/(1<<20), (float64(after)-float64(before))/(1<<20))
	if max := DefaultOpts().MaxSessions; kept > max {
		t.Fatalf("%d sessions of absent clients kept, over max_sessions %d", kept, max)
	}
}

// TestExpiredSessionLeavesTheIndex pins a mochi v2.7.9 leak: a session
// that expired left its subscriptions in the topic index for good (the
// subscriptions gauge never fell), and a later client with the same id,
// even with Clean Start, got messages for filters it never subscribed.
func TestExpiredSessionLeavesTheIndex(t *testing.T) {
	b := startBroker(t, func(o *Opts) { o.SessionExpiry = time.Second })
	conn, r, _ := rawPersistent(t, b.MQTTAddr(), 4, "expiring")
	rawSubscribe(t, conn, r, 4, 1, "lan/old")
	conn.Close()
	waitFor(t, "the session expired", func() bool {
		_, ok := b.srv.Clients.Get("expiring")
		return !ok
	})
	if s := b.Stats().Subscriptions; s != 0 {
		t.Errorf("%d subscriptions after the only session expired", s)
	}
	conn, r, ack := rawSession(t, b.MQTTAddr(), 4, "expiring", 60)
	if len(ack) < 3 || ack[2] != 0 {
		t.Fatalf("CONNACK % x", ack)
	}
	if err := b.Publish("lan/old", []byte("stale"), false); err != nil {
		t.Fatal(err)
	}
	if got := rawPublishes(t, conn, r, 4, 300*time.Millisecond); len(got) != 0 {
		t.Errorf("a Clean Start client got %q for its expired predecessor's subscription", got)
	}
}

// TestOfflineQueueBounded: a persistent session away keeps at most
// max_queued_messages; the rest are dropped, counted, and the client
// gets the oldest ones when it comes back.
func TestOfflineQueueBounded(t *testing.T) {
	b := startBroker(t, func(o *Opts) { o.MaxQueuedMessages = 20 })
	conn, r, _ := rawPersistent(t, b.MQTTAddr(), 5, "away")
	rawSubscribe(t, conn, r, 5, 1, "load/#")
	conn.Close()
	waitFor(t, "the session offline", func() bool { return b.Stats().Clients == 0 })
	for i := range 50 {
		if err := b.Publish("load/x", []byte(fmt.Sprint(i)), false); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "50 delivered or dropped", func() bool {
		cl, _ := b.srv.Clients.Get("away")
		return cl.State.Inflight.Len()+int(b.Stats().Dropped.InflightFull) == 50
	})
	if d := b.Stats().Dropped.InflightFull; d != 30 {
		t.Errorf("dropped %d, want 30 past max_queued_messages 20", d)
	}
	conn, r, _ = rawPersistent(t, b.MQTTAddr(), 5, "away")
	if got := rawPublishes(t, conn, r, 5, 300*time.Millisecond); len(got) != 20 {
		t.Errorf("got %d queued messages back, want 20", len(got))
	}
}

// TestOfflineQueueBytesBounded: the messages kept for a client hold at
// most max_queued_bytes of payload and topic; the rest are dropped and
// counted; a client with nothing kept takes a message of any size.
func TestOfflineQueueBytesBounded(t *testing.T) {
	b := startBroker(t, func(o *Opts) { o.MaxQueuedBytes = 4 << 10 })
	conn, r, _ := rawPersistent(t, b.MQTTAddr(), 5, "away")
	rawSubscribe(t, conn, r, 5, 1, "load/#")
	conn.Close()
	waitFor(t, "the session offline", func() bool { return b.Stats().Clients == 0 })
	payload := strings.Repeat("x", 1000)
	for i := range 10 {
		if err := b.Publish("load/x", []byte(fmt.Sprint(i, payload)), false); err != nil {
			t.Fatal(err)
		}
	}
	// 1,007 bytes each (topic and payload): 4 fit in 4 KiB.
	waitFor(t, "10 kept or dropped", func() bool {
		cl, _ := b.srv.Clients.Get("away")
		return cl.State.Inflight.Len()+int(b.Stats().Dropped.QueuedBytesFull) == 10
	})
	if d := b.Stats().Dropped; d.QueuedBytesFull != 6 || d.InflightFull != 0 {
		t.Errorf("dropped %+v, want 6 past max_queued_bytes 4KiB", d)
	}
	conn, r, _ = rawPersistent(t, b.MQTTAddr(), 5, "away")
	if got := rawPublishes(t, conn, r, 5, 300*time.Millisecond); len(got) != 4 {
		t.Errorf("got %d kept messages back, want 4", len(got))
	}
	big := strings.Repeat("y", 8<<10)
	if err := b.Publish("load/big", []byte(big), false); err != nil {
		t.Fatal(err)
	}
	if got := rawPublishes(t, conn, r, 5, 300*time.Millisecond); len(got) != 1 || got[0] != big {
		t.Errorf("a message over max_queued_bytes to a client with none kept: got %d messages", len(got))
	}
}

// TestTopicLevelsCapped: a filter or a retained topic deeper than
// max_topic_levels is refused (SUBACK 0x8F, 3.1.1 0x80; PUBACK 0x90),
// counted and logged once; a shared subscription counts its filter's
// levels; a plain publish to a deep topic, which stores nothing, goes
// through.
func TestTopicLevelsCapped(t *testing.T) {
	for _, version := range []byte{5, 4} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			logs := &lockedBuffer{}
			b := startBrokerLog(t, slog.New(slog.NewTextHandler(logs, nil)), func(o *Opts) {
				o.MaxTopicLevels, o.AnonymousRole = 4, RolePublisher
			})
			invalid := packets.ErrTopicFilterInvalid.Code
			if version < 5 {
				invalid = 0x80
			}
			conn, r, _ := rawSession(t, b.MQTTAddr(), version, "deep", 60)
			got := rawSubscribe(t, conn, r, version, 1, "a/b/c/d", "a/b/c/d/e", "$share/g/a/b/c/#", "a/+/+/+/#", "a/b/c/d/e")
			if want := []byte{1, invalid, 1, invalid, invalid}; string(got) != string(want) {
				t.Fatalf("SUBACK % x, want % x", got, want)
			}
			if s := b.Stats(); s.Subscriptions != 2 || s.SubscriptionsRefused.MaxTopicLevels != 3 {
				t.Errorf("%d subscriptions, %d refused; want 2 and 3", s.Subscriptions, s.SubscriptionsRefused.MaxTopicLevels)
			}
			if n := strings.Count(logs.String(), "refused subscriptions over max_topic_levels"); n != 1 {
				t.Errorf("logged %d times, want once", n)
			}
		})
	}
	b := startBroker(t, func(o *Opts) { o.MaxTopicLevels, o.AnonymousRole = 4, RolePublisher })
	c := connect(t, dialTCP(t, b), "pub")
	if code, err := c.publishRetained("a/b/c/d/e", "x"); code != packets.ErrTopicNameInvalid.Code {
		t.Errorf("a retained publish 5 levels deep: PUBACK %#x %v, want 0x90", code, err)
	}
	if code, err := c.publishRetained("a/b/c/d", "x"); code != 0 || err != nil {
		t.Errorf("a retained publish 4 levels deep: PUBACK %#x %v", code, err)
	}
	if code, err := c.publish("a/b/c/d/e", "x"); code != 0 || err != nil {
		t.Errorf("a plain publish 5 levels deep: PUBACK %#x %v", code, err)
	}
	if s := b.Stats(); s.PublishesRefused.MaxTopicLevels != 1 || s.RetainedMessages != 1 {
		t.Errorf("refused %d, %d retained; want 1 and 1", s.PublishesRefused.MaxTopicLevels, s.RetainedMessages)
	}
}

// TestDeepFilterMemoryBounded: a filter's every level is a node of
// mochi's topic tree. Before max_topic_levels one SUBSCRIBE of four
// filters of 16,001 levels (128 KiB, within max_packet_size) took +38.7
// MiB of heap, and max_subscriptions let a client hold 32 such packets.
func TestDeepFilterMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("deep filters")
	}
	b := startBroker(t, nil)
	before := heapInUse()
	conn, r, _ := rawSession(t, b.MQTTAddr(), 5, "deep", 60)
	deep := strings.Repeat("a/", 16000) + "a"
	refused := 0
	for p := range 2 {
		for _, c := range rawSubscribe(t, conn, r, 5, uint16(p+1), fmt.Sprint(p, "w/", deep), fmt.Sprint(p, "x/", deep), fmt.Sprint(p, "y/", deep), fmt.Sprint(p, "z/", deep)) {
			if c == packets.ErrTopicFilterInvalid.Code {
				refused++
			}
		}
	}
	after := heapInUse()
	s := b.Stats()
	t.Logf("2 SUBSCRIBEs of 4 filters of 16,001 levels: %d held, %d refused; heap in use %.1f MiB -> %.1f MiB (+%.1f MiB)",
		s.Subscriptions, refused, float64(before)/(1<<20), float64(after)/(1<<20), (float64(after)-float64(before))/(1<<20))
	if s.Subscriptions != 0 || refused != 8 {
		t.Fatalf("%d deep filters held, %d refused; want 0 and 8", s.Subscriptions, refused)
	}
}

// TestSessionEndedAsClientReturns: a session that ends (expired, or
// beyond max_sessions) while its client comes back under the same id
// takes out of the topic index, which mochi keys by client id, only the
// filters the new session does not hold: the new session keeps its own,
// and gets nothing for the old one's.
func TestSessionEndedAsClientReturns(t *testing.T) {
	b := startBroker(t, nil)
	conn, r, _ := rawPersistent(t, b.MQTTAddr(), 4, "dup")
	rawSubscribe(t, conn, r, 4, 1, "lan/both", "lan/old")
	conn.Close()
	waitFor(t, "the session offline", func() bool { return b.Stats().Clients == 0 })
	old, _ := b.srv.Clients.Get("dup")
	b.srv.Clients.Delete("dup") // as limits.end and mochi's expiry do first
	conn, r, ack := rawSession(t, b.MQTTAddr(), 4, "dup", 60)
	if len(ack) < 3 || ack[1]&1 != 0 || ack[2] != 0 {
		t.Fatalf("CONNACK % x, want a new session", ack)
	}
	rawSubscribe(t, conn, r, 4, 2, "lan/both", "lan/new")
	var h *limits
	for _, hk := range b.hooks {
		if l, ok := hk.(*limits); ok {
			h = l
		}
	}
	h.OnClientExpired(old)
	if s := b.Stats().Subscriptions; s != 2 {
		t.Errorf("%d subscriptions in the index, want the new session's 2", s)
	}
	for _, topic := range []string{"lan/old", "lan/both", "lan/new"} {
		if err := b.Publish(topic, []byte(topic), false); err != nil {
			t.Fatal(err)
		}
	}
	if got := rawPublishes(t, conn, r, 4, 300*time.Millisecond); strings.Join(got, " ") != "lan/both lan/new" {
		t.Errorf("the new session got %q, want lan/both and lan/new only", got)
	}
}

// TestQueueTrimmedWhenClientLeaves: a connected client is not held to
// max_queued_bytes (it is disconnected if it stops reading), so what it
// left unacknowledged when it goes is cut to max_queued_bytes, the
// newest first, counted; it gets the oldest back.
func TestQueueTrimmedWhenClientLeaves(t *testing.T) {
	b := startBroker(t, func(o *Opts) { o.MaxQueuedBytes = 4 << 10 })
	conn, r, _ := rawPersistent(t, b.MQTTAddr(), 4, "leaving")
	rawSubscribe(t, conn, r, 4, 1, "load/#")
	payload := strings.Repeat("x", 1000)
	for i := range 10 {
		if err := b.Publish("load/x", []byte(fmt.Sprint(i, payload)), false); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "10 unacknowledged", func() bool {
		cl, _ := b.srv.Clients.Get("leaving")
		return cl.State.Inflight.Len() == 10
	})
	if d := b.Stats().Dropped.QueuedBytesFull; d != 0 {
		t.Fatalf("dropped %d for a connected client", d)
	}
	conn.Close()
	waitFor(t, "the session offline", func() bool { return b.Stats().Clients == 0 })
	if d := b.Stats().Dropped.QueuedBytesFull; d != 6 {
		t.Errorf("dropped %d as the client left, want the 6 newest past max_queued_bytes 4KiB", d)
	}
	conn, r, _ = rawPersistent(t, b.MQTTAddr(), 4, "leaving")
	got := rawPublishes(t, conn, r, 4, 300*time.Millisecond)
	if len(got) != 4 {
		t.Fatalf("got %d messages back, want 4", len(got))
	}
	// mochi resends in no particular order within a second (it sorts
	// by the second the message came), so the set is checked.
	kept := map[string]bool{}
	for _, m := range got {
		kept[m[:1]] = true
	}
	if !kept["0"] || !kept["1"] || !kept["2"] || !kept["3"] {
		t.Errorf("got back %v (first characters), want the oldest four, 0 to 3", kept)
	}
}
