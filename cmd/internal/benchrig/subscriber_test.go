package benchrig

import (
	"bufio"
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/uplink/uplinktest"
)

// The bench's subscriber records what a real Mosquitto delivers, with
// edged's tags, acknowledges every QoS 1 message (a resumed session gets
// no copy of anything recorded) and gets what its persistent session
// queued while it was away.
func TestSubscriberRecordsAcksAndResumesIntegration(t *testing.T) {
	bin := uplinktest.MosquittoBin(t)
	dir := t.TempDir()
	m, err := uplinktest.StartMosquitto(bin, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	s, err := Subscribe(m.Addr, "bench-sub", nil, "t/#", 1, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := s.Track("t/a")
	publish := func(from uint64, n int) {
		t.Helper()
		p, err := NewPublisher(m.Addr, "bench-pub", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if _, err := p.Send("t/a", from, n, 0, 1, 20); err != nil {
			t.Fatal(err)
		}
		// Two more with edged's tags, the second a copy of the first
		// under another epoch.
		c, err := Dial(m.Addr, ClientOpts{ID: "bench-tagged", CleanStart: true})
		if err != nil {
			t.Fatal(err)
		}
		defer Disconnect(c)
		for i, epoch := range []string{"e1", "e2"} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := c.Publish(ctx, &paho.Publish{Topic: "t/a", QoS: 1, Payload: Payload(from+uint64(n), time.Now()),
				Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "epoch", Value: epoch}, {Key: "seq", Value: strconv.Itoa(i + 7)}}}})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
	}

	const n = 3000
	publish(0, n)
	if !rec.WaitDistinct(n+1, 20*time.Second) {
		t.Fatalf("%d of %d arrived", rec.Distinct(), n+1)
	}
	rec.WaitQuiet(200*time.Millisecond, 5*time.Second)
	rep := rec.Report(0, n+1)
	if rep.Lost != 0 || rep.Dups != 1 || rep.DupsRetagged != 1 {
		t.Fatalf("lost %d, dups %d (retagged %d); want 0, 1 (1): the tagged copy", rep.Lost, rep.Dups, rep.DupsRetagged)
	}
	if a := rec.Arrivals(); a[len(a)-2].Tag != "e1/7" || a[len(a)-1].Tag != "e2/8" {
		t.Errorf("tags %q, %q; want e1/7, e2/8", a[len(a)-2].Tag, a[len(a)-1].Tag)
	}

	// The subscriber goes away keeping its session (Reconnect's first
	// half), messages are queued for it, it comes back for them.
	s.disconnect(false)
	publish(n+1, 100)
	s.clean = false
	if err := s.connect(); err != nil {
		t.Fatal(err)
	}
	if !rec.WaitDistinct(n+102, 20*time.Second) {
		t.Fatalf("%d of %d arrived after the resume", rec.Distinct(), n+102)
	}
	rec.WaitQuiet(500*time.Millisecond, 5*time.Second)
	// An unacknowledged message would come again, with DUP, on the
	// resumed session.
	if rep := rec.Report(0, n+102); rep.Lost != 0 || rep.Dups != 2 {
		t.Errorf("after the resume: lost %d, dups %d; want 0 and the 2 tagged copies: an unacknowledged message came again", rep.Lost, rep.Dups)
	}
}

// readPublish reads what paho's encoder writes, every kind of PUBLISH
// property included, and refuses a packet cut short.
func TestReadPublishAgainstPaho(t *testing.T) {
	one, four, two := byte(1), uint32(60), uint16(3)
	p := &packets.Publish{Topic: "bench/edged/x", QoS: 1, PacketID: 513, Payload: Payload(42, time.Unix(0, 7)),
		Properties: &packets.Properties{PayloadFormat: &one, MessageExpiry: &four, TopicAlias: &two,
			ResponseTopic: "r/t", CorrelationData: []byte{1, 2}, ContentType: "application/json",
			SubscriptionIdentifier: func() *int { i := 300; return &i }(),
			User:                   []packets.User{{Key: "gw", Value: "gh-01"}, {Key: "epoch", Value: "17"}, {Key: "seq", Value: "99"}}}}
	var b bytes.Buffer
	if _, err := p.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	got, _, err := readPublish(bufio.NewReader(bytes.NewReader(b.Bytes())), nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.topic) != p.Topic || got.qos != 1 || got.id != 513 || !bytes.Equal(got.payload, p.Payload) ||
		string(got.epoch) != "17" || string(got.seq) != "99" {
		t.Errorf("read %q qos %d id %d payload %q epoch %q seq %q", got.topic, got.qos, got.id, got.payload, got.epoch, got.seq)
	}
	for n := 1; n < b.Len(); n++ {
		if _, _, err := readPublish(bufio.NewReader(bytes.NewReader(b.Bytes()[:n])), nil); err == nil {
			t.Fatalf("a PUBLISH cut to %d of %d bytes was read", n, b.Len())
		}
	}
}

// A broker's Server Keep Alive replaces the keep-alive the subscriber
// asked for [MQTT-3.2.2-21]: edged's broker with max_keepalive 1s tells
// it 1 s and cuts a client silent for 1.5 s; the subscriber pings in
// time and still gets a message published after 3 s of quiet.
func TestSubscriberKeepsServerKeepAlive(t *testing.T) {
	o := localbroker.DefaultOpts()
	o.MQTT, o.WebSocket, o.MaxKeepalive, o.AnonymousRole = "127.0.0.1:0", "", time.Second, localbroker.RolePublisher
	b, err := localbroker.New(o, "edged/t", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err := Subscribe(b.MQTTAddr(), "bench-sub", nil, "t/#", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := s.Track("t/a")
	time.Sleep(3 * time.Second)
	p, err := NewPublisher(b.MQTTAddr(), "bench-pub", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Send("t/a", 0, 1, 0, 1, 1); err != nil {
		t.Fatal(err)
	}
	if !rec.WaitDistinct(1, 5*time.Second) {
		t.Fatal("a message published after 3 s of quiet did not arrive: the broker cut the subscriber")
	}
}

// The subscriber acknowledges QoS 0 and 1 only: a QoS 2 subscription
// would get PUBLISHes it never answers with PUBREC, and the broker would
// stop sending after its Receive Maximum, so it is refused.
func TestSubscribeRefusesQoS2(t *testing.T) {
	for _, qos := range []byte{2, 3} {
		if _, err := Subscribe("127.0.0.1:1", "bench-sub", nil, "t/#", qos, false); err == nil || !strings.Contains(err.Error(), "QoS") {
			t.Errorf("Subscribe at QoS %d: %v, want an error naming the QoS", qos, err)
		}
	}
}

// Resume takes over a connected persistent session (Session Present):
// the broker sends the old connection a DISCONNECT, after which it
// closes without waiting on anything, and the new one gets what follows.
func TestResumeTakesOverIntegration(t *testing.T) {
	bin := uplinktest.MosquittoBin(t)
	m, err := uplinktest.StartMosquitto(bin, t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	old, err := Subscribe(m.Addr, "bench-sub", nil, "t/#", 1, true)
	if err != nil {
		t.Fatal(err)
	}
	if old.SessionPresent() {
		t.Error("a clean start reported Session Present")
	}
	s, err := Resume(m.Addr, "bench-sub", nil, "t/#", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.SessionPresent() {
		t.Error("Resume of a connected session: no Session Present")
	}
	select {
	case <-old.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the taken-over connection's reader still runs")
	}
	old.Close()
	rec := s.Track("t/a")
	p, err := NewPublisher(m.Addr, "bench-pub", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Send("t/a", 0, 10, 0, 1, 4); err != nil {
		t.Fatal(err)
	}
	if !rec.WaitDistinct(10, 10*time.Second) {
		t.Fatalf("%d of 10 arrived on the session taken over", rec.Distinct())
	}
}
