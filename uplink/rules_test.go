package uplink

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/packets"

	"github.com/edged/edged/sensors/wallclock"
)

func TestMatchFilter(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"a/+", "a/b", true},
		{"a/+", "a/", true}, // '+' matches an empty level
		{"a/+", "a/b/c", false},
		{"+/b", "a/b", true},
		{"+/+", "/b", true},
		{"a/#", "a", true}, // '#' matches the parent level
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"#", "a/b", true},
		{"#", "$SYS/broker", false}, // wildcards never match $ topics at the first level
		{"+/broker", "$SYS/broker", false},
		{"$SYS/#", "$SYS/broker", true},
		{"edged/gh-01/sensor/#", "edged/gh-01/sensor/air/temperature", true},
		{"edged/gh-01/sensor/+/temperature", "edged/gh-01/sensor/air/humidity", false},
		{"", "a", false},
		{"a", "", false},
	}
	for _, tt := range tests {
		if got := MatchFilter(tt.filter, tt.topic); got != tt.want {
			t.Errorf("MatchFilter(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestRemoteTopic(t *testing.T) {
	tests := []struct {
		name  string
		rule  Rule
		local string
		want  string
		err   bool
	}{
		{"empty template keeps the topic", Rule{}, "edged/gh-01/sensor/air/t", "edged/gh-01/sensor/air/t", false},
		{"prefix add", Rule{Remote: "farms/{topic}"}, "edged/gh-01/x", "farms/edged/gh-01/x", false},
		{"device", Rule{Remote: "farms/{device}/status"}, "edged/gh-01/status", "farms/gh-01/status", false},
		{"strip and add", Rule{Strip: "edged/gh-01/", Remote: "farms/{device}/{topic}"}, "edged/gh-01/sensor/air/t", "farms/gh-01/sensor/air/t", false},
		{"strip not a prefix", Rule{Strip: "other/"}, "edged/x", "edged/x", false},
		{"strip everything", Rule{Strip: "edged/x"}, "edged/x", "", true},
		{"placeholders twice", Rule{Remote: "{device}/{topic}/{device}"}, "t", "gh-01/t/gh-01", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.rule.remoteTopic(tt.local, "gh-01")
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if err != nil && !errors.Is(err, errRemoteTopic) {
				t.Fatalf("err = %v, want errRemoteTopic", err)
			}
			if got != tt.want {
				t.Errorf("remoteTopic(%q) = %q, want %q", tt.local, got, tt.want)
			}
		})
	}
}

func TestFirstMatchingRuleWins(t *testing.T) {
	rules := []Rule{
		{Local: "a/secret/#", Remote: "vault/{topic}", QoS: 1},
		{Local: "a/#", QoS: 0},
	}
	tests := []struct {
		topic string
		want  int // index, -1 for none
	}{{"a/secret/x", 0}, {"a/public", 1}, {"b", -1}}
	for _, tt := range tests {
		got := match(rules, tt.topic)
		switch {
		case tt.want < 0 && got != nil:
			t.Errorf("%s matched %+v, want none", tt.topic, *got)
		case tt.want >= 0 && got != &rules[tt.want]:
			t.Errorf("%s matched %v, want rule %d", tt.topic, got, tt.want)
		}
	}
}

func TestBodyRoundTrip(t *testing.T) {
	for _, m := range []Message{
		{Topic: "a", Payload: nil, QoS: 0},
		{Topic: "farms/gh-01/sensor/air/temperature", Payload: []byte(`{"value":21.37}`), QoS: 1, Retain: true, Captured: 1_795_000_000_123_456_789},
		{Topic: "ü/ö", Payload: bytes.Repeat([]byte{0}, 1000), QoS: 1, Captured: -1},
		{Topic: "a/b", Payload: []byte("p"), QoS: 1, Captured: 3e9, Unsynced: true, Boot: wallclock.BootID{1, 2, 3, 15: 16}, SinceBoot: 10 * time.Second},
	} {
		b := appendBody(nil, &m)
		got, err := decodeBody(b)
		if err != nil {
			t.Fatalf("decode %+v: %v", m, err)
		}
		if got.Topic != m.Topic || !bytes.Equal(got.Payload, m.Payload) || got.QoS != m.QoS || got.Retain != m.Retain || got.Captured != m.Captured ||
			got.Unsynced != m.Unsynced || got.Boot != m.Boot || got.SinceBoot != m.SinceBoot {
			t.Errorf("round trip: got %+v, want %+v", got, m)
		}
	}
}

func TestDecodeBodyRejects(t *testing.T) {
	good := appendBody(nil, &Message{Topic: "a/b", Payload: []byte("p"), QoS: 1})
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short header", good[:5]},
		{"version", mod(func(b []byte) []byte { b[0] = 2; return b })},
		{"reserved flag", mod(func(b []byte) []byte { b[1] |= 0x80; return b })},
		{"qos 2", mod(func(b []byte) []byte { b[1] = 2 << flagQoSShift; return b })},
		{"topic longer than body", mod(func(b []byte) []byte { b[bodyHeader] = 100; return b })},
		{"empty topic", mod(func(b []byte) []byte { b[bodyHeader] = 0; return b })},
		{"no topic length", good[:bodyHeader]},
		{"unsynced without its stamp", mod(func(b []byte) []byte { b[1] |= flagUnsynced; return b })},
		{"bad utf-8", appendBody(nil, &Message{Topic: "\xff\xfe"})},
		{"all zero", make([]byte, 64)},
	}
	for _, tt := range tests {
		if m, err := decodeBody(tt.b); !errors.Is(err, errBody) {
			t.Errorf("%s: decodeBody = %+v, %v; want errBody", tt.name, m, err)
		}
	}
}

func FuzzBody(f *testing.F) {
	f.Add([]byte{}, "a/b", []byte("payload"), byte(1), true, int64(1))
	f.Add([]byte{1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 3, 'a', '/', 'b'}, "", []byte(nil), byte(0), false, int64(0))
	f.Add(make([]byte, 40), "x/\u00e9", bytes.Repeat([]byte{0xff}, 300), byte(0), false, int64(-5))
	// A record captured before the clock was trusted, with its stamp.
	f.Add(appendBody(nil, &Message{Topic: "a/b", Payload: []byte("p"), QoS: 1, Unsynced: true, Boot: wallclock.BootID{1}, SinceBoot: time.Second}), "", []byte(nil), byte(0), false, int64(0))
	f.Fuzz(func(t *testing.T, raw []byte, topic string, payload []byte, qos byte, retain bool, ts int64) {
		// Arbitrary bytes never panic, and whatever decodes re-encodes
		// to the same bytes (one encoding per message).
		if m, err := decodeBody(raw); err == nil {
			if again := appendBody(nil, &m); !bytes.Equal(again, raw) {
				t.Fatalf("decode/encode not canonical: %x -> %+v -> %x", raw, m, again)
			}
		}
		// Every valid message round-trips.
		m := Message{Topic: topic, Payload: payload, QoS: qos & 1, Retain: retain, Captured: ts}
		got, err := decodeBody(appendBody(nil, &m))
		valid := topic != "" && len(topic) <= maxTopicBytes && utf8.ValidString(topic)
		if valid != (err == nil) {
			t.Fatalf("message %+v: decode err %v, valid %v", m, err, valid)
		}
		if err == nil && (got.Topic != m.Topic || !bytes.Equal(got.Payload, m.Payload) || got.QoS != m.QoS || got.Retain != m.Retain || got.Captured != m.Captured) {
			t.Fatalf("round trip: got %+v, want %+v", got, m)
		}
	})
}

// TestPublishEncoding pins the forwarder's own PUBLISH encoder to paho's
// (byte for byte, and through paho's decoder), and publishLen to the
// encoded size, since the forwarder dead-letters by it before sending.
func TestPublishEncoding(t *testing.T) {
	const seq, ts = 123456, 1_795_000_000_123_000_000
	pr := newProps("gh-01", "0123456789abcdef")
	user := []packets.User{{Key: "gw", Value: "gh-01"}, {Key: "epoch", Value: "0123456789abcdef"},
		{Key: "seq", Value: "123456"}, {Key: "ts", Value: time.Unix(0, ts).UTC().Format(time.RFC3339Nano)}}
	for _, n := range []int{0, 1, 100, 127, 128, 16383, 16384, 70000} {
		for _, qos := range []byte{0, 1} {
			for _, retain := range []bool{false, true} {
				dup := retain // both values of each flag, for each QoS
				topic, payload := []byte("farms/gh-01/sensor/air/temperature"), bytes.Repeat([]byte("x"), n)
				pub := &packets.Publish{Topic: string(topic), Payload: payload, QoS: qos, Retain: retain, Duplicate: dup && qos > 0, PacketID: 7, Properties: &packets.Properties{User: user}}
				if qos == 0 {
					pub.PacketID = 0
				}
				var want bytes.Buffer
				if _, err := pub.WriteTo(&want); err != nil {
					t.Fatal(err)
				}
				props := pr.forMessage(seq, ts, false)
				got := appendPublish([]byte("junk"), topic, payload, props, qos, retain, dup, 7)[4:]
				if !bytes.Equal(got, want.Bytes()) {
					t.Fatalf("payload %d qos %d retain %v: encoded\n%x\npaho\n%x", n, qos, retain, got[:min(len(got), 120)], want.Bytes()[:min(want.Len(), 120)])
				}
				if l := publishLen(len(topic), n, len(props), qos); l != len(got) {
					t.Errorf("payload %d qos %d: publishLen %d, encoded %d", n, qos, l, len(got))
				}
				cp, err := packets.ReadPacket(bytes.NewReader(got))
				if err != nil {
					t.Fatal(err)
				}
				p := cp.Content.(*packets.Publish)
				if p.Topic != string(topic) || !bytes.Equal(p.Payload, payload) || p.QoS != qos || p.Retain != retain || p.PacketID != pub.PacketID || len(p.Properties.User) != 4 || p.Properties.User[3] != user[3] {
					t.Fatalf("paho decodes %+v", p)
				}
			}
		}
	}
}

// TestParsePuback reads PUBACKs as paho encodes them: with the reason
// code left out (success), with one, and with properties after it.
func TestParsePuback(t *testing.T) {
	reason := "no subscribers"
	for _, a := range []*packets.Puback{
		{PacketID: 1, ReasonCode: 0, Properties: &packets.Properties{}},
		{PacketID: 0xbeef, ReasonCode: 0x10, Properties: &packets.Properties{}},
		{PacketID: 513, ReasonCode: 0x87, Properties: &packets.Properties{ReasonString: reason}},
	} {
		var b bytes.Buffer
		if _, err := a.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		pid, rc, err := parsePuback(b.Bytes())
		if err != nil || pid != a.PacketID || rc != a.ReasonCode {
			t.Errorf("%x: pid %d reason %#x err %v; want %d %#x", b.Bytes(), pid, rc, err, a.PacketID, a.ReasonCode)
		}
	}
	if _, _, err := parsePuback([]byte{0x40, 1, 0}); err == nil {
		t.Error("a PUBACK of 1 byte parsed")
	}
}

// TestSetForwardLive is the uplink's part of a live reload (issue 13):
// new forward rules select what is captured from then on, the backlog
// already buffered stays, and rules that do not validate change nothing.
// Captures run concurrently with the change (-race).
func TestSetForwardLive(t *testing.T) {
	u := openUplink(t, testOpts("127.0.0.1:1"), t.TempDir())
	capture(t, u, "t/a", 3)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				if _, err := u.Capture("x/busy", []byte("1"), 1, false); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	err := u.SetForward([]Rule{{Local: "u/#", QoS: 1}})
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if m, err := u.Capture("t/b", []byte("x"), 1, false); m || err != nil {
		t.Errorf("capture on a removed rule: matched %v err %v", m, err)
	}
	if m, err := u.Capture("u/b", []byte("x"), 1, false); !m || err != nil {
		t.Errorf("capture on an added rule: matched %v err %v", m, err)
	}
	if err := u.SetForward(nil); err == nil || !strings.Contains(err.Error(), "forward") {
		t.Errorf("no rules: %v, want the forward error", err)
	}
	if m, _ := u.Capture("u/c", []byte("x"), 1, false); !m {
		t.Error("a refused SetForward changed the rules")
	}
	if b := u.Stats().Backlog; b != 5 {
		t.Errorf("backlog %d, want 5 (3 before the change, 2 after)", b)
	}
}
