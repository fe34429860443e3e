package uplink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// rawCloud accepts connections on 127.0.0.1 and hands each, after its
// CONNECT was read, to serve; it stops every connection at test end.
type rawCloud struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func newRawCloud(t *testing.T, serve func(n int, c net.Conn, br *bufio.Reader)) *rawCloud {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &rawCloud{ln: ln}
	rc.wg.Add(1)
	go func() {
		defer rc.wg.Done()
		for n := 1; n <= 100; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rc.mu.Lock()
			rc.conns = append(rc.conns, c)
			rc.mu.Unlock()
			rc.wg.Add(1)
			go func() {
				defer rc.wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := packets.ReadPacket(br); err != nil {
					return
				}
				serve(n, c, br)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		rc.mu.Lock()
		for _, c := range rc.conns {
			c.Close()
		}
		rc.mu.Unlock()
		rc.wg.Wait()
	})
	return rc
}

func (rc *rawCloud) addr() string { return rc.ln.Addr().String() }

// readPublish reads packets until a PUBLISH that carries a seq.
func readPublish(br *bufio.Reader) (*packets.Publish, uint64, error) {
	for {
		p, err := packets.ReadPacket(br)
		if err != nil {
			return nil, 0, err
		}
		if pk, ok := p.Content.(*packets.Publish); ok {
			for _, up := range pk.Properties.User {
				if up.Key == "seq" {
					var s uint64
					for _, ch := range up.Value {
						s = s*10 + uint64(ch-'0')
					}
					return pk, s, nil
				}
			}
		}
	}
}

// TestQoS0AckedOnlyOnceWritten: README says a QoS 0 message counts as
// delivered once its bytes are written to the socket. A PUBACK for an
// earlier message must not acknowledge the buffer past a QoS 0 message
// whose write is still blocked (a cloud that stopped reading): a crash or
// lost connection then would lose a message never sent.
func TestQoS0AckedOnlyOnceWritten(t *testing.T) {
	gotHead := make(chan uint16, 1)
	sendAck := make(chan struct{})
	rc := newRawCloud(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := (&packets.Connack{Properties: &packets.Properties{}}).WriteTo(c); err != nil {
			return
		}
		if n != 1 {
			for {
				if _, _, err := readPublish(br); err != nil {
					return
				}
			}
		}
		pk, _, err := readPublish(br)
		if err != nil {
			return
		}
		gotHead <- pk.PacketID
		<-sendAck // stop reading: the QoS 0 writes block
		_, _ = (&packets.Puback{PacketID: pk.PacketID, Properties: &packets.Properties{}}).WriteTo(c)
		_, _ = br.ReadByte() // until the client goes
	})
	o := testOpts(rc.addr())
	o.Forward = []Rule{{Local: "t/#", Remote: "cloud/{topic}", QoS: 1}, {Local: "z/#", Remote: "cloud/{topic}", QoS: 0}}
	o.MaxInflight = 1000
	u := openUplink(t, o, t.TempDir())
	capture(t, u, "t/a", 1)
	u.Start()
	<-gotHead
	big := []byte(strings.Repeat("x", 64<<10))
	for range 400 { // 25 MiB: more than the socket buffers hold
		if _, err := u.Capture("z/a", big, 0, false); err != nil {
			t.Fatal(err)
		}
	}
	// Let the writer fill the socket buffers and block.
	last := uint64(0)
	for range 100 {
		time.Sleep(50 * time.Millisecond)
		s := u.sent.Load()
		if s == last && s > 1 {
			break
		}
		last = s
	}
	close(sendAck)
	waitFor(t, func() bool { return u.Stats().Acked == 1 }, "the PUBACK applied")
	acked := u.buf().log.Stats().AckedSeq
	written := u.sent.Load() // seqs 1..written were written wholly
	if acked > written {
		t.Fatalf("buffer acknowledged up to seq %d, but only seqs up to %d were written to the socket", acked, written)
	}
}

// TestLargePubackApplied: a PUBACK longer than the read buffer (a long
// reason string or many user properties, well under the Maximum Packet
// Size edged announces) still acknowledges its message.
func TestLargePubackApplied(t *testing.T) {
	rc := newRawCloud(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := (&packets.Connack{Properties: &packets.Properties{}}).WriteTo(c); err != nil {
			return
		}
		for {
			pk, _, err := readPublish(br)
			if err != nil {
				return
			}
			pa := &packets.Puback{PacketID: pk.PacketID, ReasonCode: 0x10, Properties: &packets.Properties{
				ReasonString: strings.Repeat("r", 20<<10),
				User:         []packets.User{{Key: "k", Value: strings.Repeat("v", 10<<10)}},
			}}
			if _, err := pa.WriteTo(c); err != nil {
				return
			}
		}
	})
	u := openUplink(t, testOpts(rc.addr()), t.TempDir())
	capture(t, u, "t/a", 3)
	u.Start()
	waitFor(t, func() bool { return u.Stats().Acked == 3 }, "3 messages acknowledged")
	if st := u.Stats(); st.Backlog != 0 || st.Connects != 1 || st.NoSubscribers != 3 {
		t.Errorf("after large PUBACKs: %+v", st)
	}
}

// TestHugeMaximumPacketSize: a Maximum Packet Size above 2^31-1 in
// CONNACK (a four byte integer; a server with no real limit may send
// 0xFFFFFFFF) limits nothing, on 32-bit ARM as on 64-bit: int(uint32)
// there is negative and dead-lettered every message.
func TestHugeMaximumPacketSize(t *testing.T) {
	maxp := uint32(0xFFFFFFFF)
	rc := newRawCloud(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := (&packets.Connack{Properties: &packets.Properties{MaximumPacketSize: &maxp}}).WriteTo(c); err != nil {
			return
		}
		for {
			pk, _, err := readPublish(br)
			if err != nil {
				return
			}
			if _, err := (&packets.Puback{PacketID: pk.PacketID, Properties: &packets.Properties{}}).WriteTo(c); err != nil {
				return
			}
		}
	})
	u := openUplink(t, testOpts(rc.addr()), t.TempDir())
	capture(t, u, "t/a", 3)
	u.Start()
	// The buffer's ack lands a moment before the Acked counter moves.
	waitFor(t, func() bool { st := u.Stats(); return st.Backlog == 0 && st.Acked+st.DeadLetters == 3 }, "backlog 0, 3 answered")
	if st := u.Stats(); st.Acked != 3 || st.DeadLetters != 0 {
		t.Errorf("acked %d dead-lettered %d, want 3 and 0", st.Acked, st.DeadLetters)
	}
}

// TestAckTimeoutWhileCloudChatters: the ack timeout and keep-alive
// checks run even when the cloud sends a packet more often than the
// reader's tick (here PINGRESPs and QoS 0 PUBLISHes edged never asked
// for, as a session left subscribed by an older client would bring): a
// missing PUBACK still ends the connection and the message is resent.
func TestAckTimeoutWhileCloudChatters(t *testing.T) {
	rc := newRawCloud(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := (&packets.Connack{Properties: &packets.Properties{}}).WriteTo(c); err != nil {
			return
		}
		if n == 1 {
			done := make(chan struct{})
			defer func() { <-done }()
			go func() { // drain what edged sends; never PUBACK
				defer close(done)
				for {
					if _, _, err := readPublish(br); err != nil {
						return
					}
				}
			}()
			for i := 0; i < 1000; i++ {
				var err error
				if i%2 == 0 {
					_, err = (&packets.Pingresp{}).WriteTo(c)
				} else {
					_, err = (&packets.Publish{Topic: "x", Payload: []byte("y"), Properties: &packets.Properties{}}).WriteTo(c)
				}
				if err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			c.Close()
			return
		}
		for {
			pk, _, err := readPublish(br)
			if err != nil {
				return
			}
			if _, err := (&packets.Puback{PacketID: pk.PacketID, Properties: &packets.Properties{}}).WriteTo(c); err != nil {
				return
			}
		}
	})
	u := openUplink(t, testOpts(rc.addr()), t.TempDir())
	u.ackTimeout = 300 * time.Millisecond
	capture(t, u, "t/a", 1)
	u.Start()
	waitFor(t, func() bool { return u.Stats().Acked == 1 }, "the message resent on a new connection and acknowledged")
}

// TestRetainUnavailableIntegration: a cloud broker without retained
// messages (Mosquitto's retain_available false; some managed brokers)
// refuses a CONNECT whose will is retained (CONNACK 0x9A) and any
// retained PUBLISH. The forwarder must still deliver: it connects again
// without retain.
func TestRetainUnavailableIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	c := newCloud(t, "retain_available false", true)
	u := openUplink(t, testOpts(c.proxy.Addr), t.TempDir())
	u.Start()
	const n = 10
	for i := range n {
		if _, err := u.Capture("t/a", []byte(strconv.Itoa(i)), 1, i%2 == 0); err != nil {
			t.Fatal(err)
		}
	}
	if !c.col.WaitDistinct(n, 10*time.Second) {
		t.Fatalf("only %d of %d arrived; stats %+v", c.col.Distinct(), n, u.Stats())
	}
	if dups := checkDelivery(t, c.col.Messages(), seqs(1, n)); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

// TestRetainAvailableZero: a CONNACK that announces Retain Available 0
// gets no retained PUBLISH (a protocol error that would cut the session).
func TestRetainAvailableZero(t *testing.T) {
	zero := byte(0)
	var mu sync.Mutex
	retained := 0
	rc := newRawCloud(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := (&packets.Connack{Properties: &packets.Properties{RetainAvailable: &zero}}).WriteTo(c); err != nil {
			return
		}
		for {
			p, err := packets.ReadPacket(br)
			if err != nil {
				return
			}
			pk, ok := p.Content.(*packets.Publish)
			if !ok {
				continue
			}
			if pk.Retain {
				mu.Lock()
				retained++
				mu.Unlock()
			}
			if pk.QoS == 1 {
				if _, err := (&packets.Puback{PacketID: pk.PacketID, Properties: &packets.Properties{}}).WriteTo(c); err != nil {
					return
				}
			}
		}
	})
	u := openUplink(t, testOpts(rc.addr()), t.TempDir())
	if _, err := u.Capture("t/a", []byte("1"), 1, true); err != nil {
		t.Fatal(err)
	}
	u.Start()
	waitFor(t, func() bool { return u.Stats().Acked == 1 }, "the message acknowledged")
	mu.Lock()
	defer mu.Unlock()
	if retained != 0 {
		t.Errorf("%d retained PUBLISHes sent to a cloud that announced Retain Available 0", retained)
	}
}

// TestDisconnectNotAboutTheMessage: a cloud that ends sessions for
// reasons of its own (DISCONNECT 0x8E session taken over, 0x97 quota
// exceeded, 0x89 server busy, 0x8B shutting down) while a message is in
// flight does not get that message dead-lettered: only a cut that may be
// the message's fault counts towards poisonAfter.
func TestDisconnectNotAboutTheMessage(t *testing.T) {
	for _, code := range []byte{0x89, 0x8B, 0x8E, 0x97, 0x98} {
		t.Run(strconv.Itoa(int(code)), func(t *testing.T) {
			rc := newRawCloud(t, func(n int, c net.Conn, br *bufio.Reader) {
				if _, err := (&packets.Connack{Properties: &packets.Properties{}}).WriteTo(c); err != nil {
					return
				}
				for {
					pk, _, err := readPublish(br)
					if err != nil {
						return
					}
					if n <= 6 {
						_, _ = (&packets.Disconnect{ReasonCode: code, Properties: &packets.Properties{}}).WriteTo(c)
						return
					}
					if _, err := (&packets.Puback{PacketID: pk.PacketID, Properties: &packets.Properties{}}).WriteTo(c); err != nil {
						return
					}
				}
			})
			u := openUplink(t, testOpts(rc.addr()), t.TempDir())
			u.backoffBase, u.backoffMax = time.Millisecond, 5*time.Millisecond
			u.poisonAfter = 3
			capture(t, u, "t/a", 2)
			u.Start()
			// The counters move just after the buffer's ack: wait for
			// both messages to be counted one way or the other.
			waitFor(t, func() bool { st := u.Stats(); return st.Backlog == 0 && st.Acked+st.DeadLetters == 2 }, "both messages settled")
			if st := u.Stats(); st.DeadLetters != 0 || st.Acked != 2 {
				t.Errorf("dead letters %d acked %d after DISCONNECT %#x; want 0 and 2", st.DeadLetters, st.Acked, code)
			}
		})
	}
}

// TestRemainingLengthBoundaries: the variable byte integer at every size
// boundary of MQTT's remaining length, and packetLen reading it back.
func TestRemainingLengthBoundaries(t *testing.T) {
	for _, tc := range []struct{ n, size int }{{0, 1}, {127, 1}, {128, 2}, {16383, 2}, {16384, 3}, {2097151, 3}, {2097152, 4}, {268435455, 4}} {
		b := appendVBI(nil, tc.n)
		if len(b) != tc.size || vbiLen(tc.n) != tc.size {
			t.Errorf("%d: %d bytes (vbiLen %d), want %d", tc.n, len(b), vbiLen(tc.n), tc.size)
		}
		pkt := append([]byte{0x40}, b...)
		got, err := packetLen(bufio.NewReader(bytes.NewReader(pkt)), 1<<28)
		if err != nil || got != 1+tc.size+tc.n {
			t.Errorf("%d: packetLen %d %v, want %d", tc.n, got, err, 1+tc.size+tc.n)
		}
	}
}

// TestReceiveMaximumHonoured: with a CONNACK Receive Maximum of 2 below
// max_inflight, no more than 2 QoS 1 PUBLISHes are ever unacknowledged.
func TestReceiveMaximumHonoured(t *testing.T) {
	rm := uint16(2)
	var mu sync.Mutex
	most := 0
	rc := newRawCloud(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := (&packets.Connack{Properties: &packets.Properties{ReceiveMaximum: &rm}}).WriteTo(c); err != nil {
			return
		}
		var pending []uint16
		ackAll := func() bool {
			for _, pid := range pending {
				if _, err := (&packets.Puback{PacketID: pid, Properties: &packets.Properties{}}).WriteTo(c); err != nil {
					return false
				}
			}
			pending = pending[:0]
			return true
		}
		for {
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond)) // acks only when edged goes quiet
			pk, _, err := readPublish(br)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if !ackAll() {
					return
				}
				continue
			}
			if err != nil {
				return
			}
			pending = append(pending, pk.PacketID)
			mu.Lock()
			most = max(most, len(pending))
			mu.Unlock()
		}
	})
	o := testOpts(rc.addr())
	o.MaxInflight = 64
	u := openUplink(t, o, t.TempDir())
	capture(t, u, "t/a", 50)
	u.Start()
	waitFor(t, func() bool { return u.Stats().Backlog == 0 }, "backlog 0")
	mu.Lock()
	defer mu.Unlock()
	if most > int(rm) {
		t.Errorf("%d PUBLISHes unacknowledged at once; the cloud's Receive Maximum is %d", most, rm)
	}
}

// TestNoGoroutineLeakAcrossReconnects: 90 sessions cut by the cloud
// leave no goroutine behind once the uplink is closed.
func TestNoGoroutineLeakAcrossReconnects(t *testing.T) {
	const cuts = 90
	rc := newRawCloud(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := (&packets.Connack{Properties: &packets.Properties{}}).WriteTo(c); err != nil {
			return
		}
		for {
			pk, _, err := readPublish(br)
			if err != nil || n <= cuts {
				return // cut with the message in flight
			}
			if _, err := (&packets.Puback{PacketID: pk.PacketID, Properties: &packets.Properties{}}).WriteTo(c); err != nil {
				return
			}
		}
	})
	before := runtime.NumGoroutine()
	u, err := New(testOpts(rc.addr()), t.TempDir(), "gh-01", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	u.backoffBase, u.backoffMax = time.Millisecond, 2*time.Millisecond
	u.stormMax, u.poisonAfter = 1000, 1000
	capture(t, u, "t/a", 1)
	u.Start()
	waitFor(t, func() bool { return u.Stats().Acked == 1 }, "the message delivered after the cuts")
	if c := u.Stats().Connects; c != cuts+1 {
		t.Errorf("%d connects, want %d", c, cuts+1)
	}
	if err := u.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before }, "goroutines back to where they were")
}

// TestQoS0StreamKeepsTheLink: a steady stream of QoS 0 messages gets
// nothing back from the cloud; edged must still ping (and hear PINGRESPs)
// rather than take the silence for a dead link every 1.5 keep-alives.
func TestQoS0StreamKeepsTheLink(t *testing.T) {
	rc := newRawCloud(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := (&packets.Connack{Properties: &packets.Properties{}}).WriteTo(c); err != nil {
			return
		}
		for {
			p, err := packets.ReadPacket(br)
			if err != nil {
				return
			}
			if _, ok := p.Content.(*packets.Pingreq); ok {
				if _, err := (&packets.Pingresp{}).WriteTo(c); err != nil {
					return
				}
			}
		}
	})
	o := testOpts(rc.addr())
	o.KeepAlive = time.Second
	o.Forward = []Rule{{Local: "t/#", Remote: "cloud/{topic}", QoS: 0}}
	u := openUplink(t, o, t.TempDir())
	u.Start()
	for i := range 40 { // 4 s: more than 1.5 keep-alives, twice
		if _, err := u.Capture("t/a", []byte(strconv.Itoa(i)), 0, false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := u.Stats(); st.Connects != 1 {
		t.Errorf("%d connects for a steady QoS 0 stream to a live cloud, want 1", st.Connects)
	}
}

// TestPoisonCutWhileWriting: a cloud that closes the connection over one
// message while edged is still writing the ones after it: whichever of
// the writer (EPIPE, reset) and the reader (EOF, reset) sees the cut
// first, it counts towards dead-lettering that message.
func TestPoisonCutWhileWriting(t *testing.T) {
	const n, bad = 400, 3
	f := newFakeCloud(t, "")
	f.onPublish = func(conn int, seq uint64, pid uint16) ([]fakeAck, bool) {
		return []fakeAck{{pid: pid}}, seq == bad
	}
	u := startFake(t, f, 256)
	u.poisonAfter = 3
	big := []byte(strings.Repeat("x", 8<<10))
	for range n {
		if _, err := u.Capture("t/a", big, 1, false); err != nil {
			t.Fatal(err)
		}
	}
	u.Start()
	waitFor(t, func() bool { return u.Stats().Backlog == 0 }, "backlog 0")
	if st := u.Stats(); st.DeadLetters != 1 {
		t.Errorf("dead letters %d, want 1", st.DeadLetters)
	}
}
