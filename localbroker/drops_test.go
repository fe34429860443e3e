package localbroker

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lockedBuffer is a log sink the broker's goroutines may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestEveryDropCounted pins issue 11's silent loss: under overload the
// broker dropped QoS 1 messages for a subscriber (98 % and 94 %
// delivered) with nothing counted or logged. A QoS 1 subscriber that
// reads but never acknowledges (1,024 unacknowledged, then the rest are
// dropped), and one that acknowledges everything (it loses nothing: no
// queue in front of the connection's can overflow), each under a LAN
// publisher at full speed: in both, what was published less what
// arrived equals the drops counted, exactly, and each reason is logged
// once.
func TestEveryDropCounted(t *testing.T) {
	for _, tc := range []struct {
		name string
		ack  bool
	}{
		{"never acknowledges", false},
		{"acknowledges", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &lockedBuffer{}
			b := startBrokerLog(t, slog.New(slog.NewTextHandler(logs, nil)), func(o *Opts) { o.AnonymousRole = RolePublisher })
			conn, r, ack := rawSession(t, b.MQTTAddr(), 4, "slow-sub", 60)
			if len(ack) != 3 || ack[2] != 0 {
				t.Fatalf("CONNACK % x", ack)
			}
			if _, err := conn.Write([]byte{0x82, 11, 0, 1, 0, 6, 'l', 'o', 'a', 'd', '/', '#', 1}); err != nil {
				t.Fatal(err)
			}
			var delivered atomic.Int64
			suback := make(chan struct{})
			readerDone := make(chan struct{})
			go func() {
				defer close(readerDone)
				for {
					pk := readPkt(r)
					if pk == nil {
						return // closed at the end of the test
					}
					switch pk[0] & 0xf0 {
					case 0x90:
						close(suback)
					case 0x30:
						delivered.Add(1)
						if tc.ack {
							tl := int(binary.BigEndian.Uint16(pk[1:]))
							_, _ = conn.Write(append([]byte{0x40, 2}, pk[3+tl:5+tl]...))
						}
					}
				}
			}()
			defer func() { conn.Close(); <-readerDone }()
			select {
			case <-suback:
			case <-time.After(5 * time.Second):
				t.Fatal("no SUBACK")
			}

			// A LAN publisher at full speed: 3,000 QoS 1 publishes written
			// at once, its PUBACKs drained.
			const n = 3000
			pconn, pr, pack := rawSession(t, b.MQTTAddr(), 4, "fast-pub", 60)
			if len(pack) != 3 || pack[2] != 0 {
				t.Fatalf("publisher CONNACK % x", pack)
			}
			var burst bytes.Buffer
			for i := range n {
				msg := fmt.Sprint(i)
				burst.Write([]byte{0x32, byte(2 + 6 + 2 + len(msg)), 0, 6, 'l', 'o', 'a', 'd', '/', 'x', byte(i>>8 + 1), byte(i)})
				burst.WriteString(msg)
			}
			pubDone := make(chan struct{})
			go func() {
				defer close(pubDone)
				for readPkt(pr) != nil {
				}
			}()
			defer func() { pconn.Close(); <-pubDone }()
			// A subscriber that acknowledges gets the burst in chunks of
			// 500, each once the one before has reached it: it keeps up,
			// but on two busy cores its PUBACKs could otherwise trail
			// 3,000 deliveries by more than the 1,024 it may have
			// unacknowledged (max_queued_messages), and what passes that
			// bound is dropped by design (the test failed 3 in 6 runs
			// so at 0845f2d). The one that never acknowledges gets it at
			// once.
			chunk := n
			if tc.ack {
				chunk = 500
			}
			sent := 0
			for b := burst.Bytes(); len(b) > 0; {
				k := 0
				for m := 0; m < chunk && k < len(b); m++ {
					k += 2 + int(b[k+1]) // fixed header byte, one-byte remaining length, body
				}
				if _, err := pconn.Write(b[:k]); err != nil {
					t.Fatal(err)
				}
				b = b[k:]
				sent += chunk
				for wait := time.Now().Add(10 * time.Second); tc.ack && len(b) > 0 && delivered.Load() < int64(min(sent, n)) && time.Now().Before(wait); {
					time.Sleep(5 * time.Millisecond)
				}
			}
			dropped := func() (uint64, Stats) {
				s := b.Stats()
				return s.Dropped.InflightFull + s.Dropped.Fanout, s
			}
			// Every message ends up delivered or counted; then nothing
			// more arrives or is counted.
			deadline := time.Now().Add(20 * time.Second)
			for {
				d, _ := dropped()
				if uint64(delivered.Load())+d >= n || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)
			d, s := dropped()
			got := delivered.Load()
			t.Logf("published %d, delivered %d, dropped %+v", n, got, s.Dropped)
			if uint64(got)+d != n {
				t.Fatalf("published %d, delivered %d, counted as dropped %d (%+v): %d unaccounted for",
					n, got, d, s.Dropped, int64(n)-got-int64(d))
			}
			if tc.ack && d != 0 {
				// Deliveries go straight into the connection's queue
				// (DirectWrites): a burst finds no smaller queue to
				// overflow in front of it.
				t.Errorf("a subscriber that acknowledges everything lost %d messages (%+v)", d, s.Dropped)
			}
			if max := DefaultOpts().MaxQueuedMessages; !tc.ack && got > int64(max) {
				t.Errorf("a subscriber that never acknowledges got %d messages, over the %d in-flight bound", got, max)
			}
			out := logs.String()
			for reason, line := range map[uint64]string{
				s.Dropped.InflightFull: "client store quota reached",
			} {
				if got := strings.Count(out, line); (reason > 0) != (got == 1) || got > 1 {
					t.Errorf("%d drops logged %d times as %q, want once (at most once a minute per client)", reason, got, line)
				}
			}
		})
	}
}

// startBrokerLog is startBroker with a logger.
func startBrokerLog(t *testing.T, log *slog.Logger, mod func(*Opts)) *Broker {
	t.Helper()
	o := DefaultOpts()
	o.MQTT, o.WebSocket = "127.0.0.1:0", ""
	if mod != nil {
		mod(&o)
	}
	b, err := New(o, prefix, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
