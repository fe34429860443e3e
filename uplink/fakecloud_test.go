package uplink

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/edged/edged/uplink/wal"
)

// fakeCloud is a scripted MQTT 5 server for the forwarder's failure
// paths, which a real Mosquitto cannot be made to produce on demand:
// PUBACKs out of order, transient refusals, a cloud that cuts the
// connection over one message, never answers CONNECT, or stops reading.
type fakeCloud struct {
	t  *testing.T
	ln net.Listener
	// mode: "" serves normally; "silent" never answers CONNECT;
	// "noread" sends CONNACK, then never reads.
	mode string
	// onPublish decides the reply to one PUBLISH (nil: PUBACK 0): the
	// PUBACKs to send, and whether to close the connection instead.
	onPublish func(conn int, seq uint64, pid uint16) (acks []fakeAck, cut bool)

	accepted chan int // connection numbers, from 1
	quit     chan struct{}
	wg       sync.WaitGroup

	mu       sync.Mutex
	conns    []net.Conn
	got      []fakeGot
	connects []*packets.Connect
	statuses []string // payloads of the status messages (no seq)
}

type fakeAck struct {
	pid  uint16
	code byte
}

type fakeGot struct {
	conn int
	seq  uint64
	body string
	dup  bool // the PUBLISH's DUP flag
}

func newFakeCloud(t *testing.T, mode string) *fakeCloud {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCloud{t: t, ln: ln, mode: mode, accepted: make(chan int, 100), quit: make(chan struct{})}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(f.close)
	return f
}

func (f *fakeCloud) addr() string { return f.ln.Addr().String() }

func (f *fakeCloud) close() {
	close(f.quit)
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *fakeCloud) serve() {
	defer f.wg.Done()
	for n := 1; ; n++ {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		f.accepted <- n
		f.wg.Add(1)
		go func() { defer f.wg.Done(); f.handle(n, c) }()
	}
}

func (f *fakeCloud) handle(n int, c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	p, err := packets.ReadPacket(br)
	if err != nil {
		return
	}
	if cp, ok := p.Content.(*packets.Connect); ok {
		f.mu.Lock()
		f.connects = append(f.connects, cp)
		f.mu.Unlock()
	}
	if f.mode == "silent" {
		_, _ = br.ReadByte() // until the client goes
		return
	}
	if _, err := (&packets.Connack{Properties: &packets.Properties{}}).WriteTo(c); err != nil {
		return
	}
	if f.mode == "noread" {
		<-f.quit
		return
	}
	for {
		p, err := packets.ReadPacket(br)
		if err != nil {
			return
		}
		switch pk := p.Content.(type) {
		case *packets.Pingreq:
			if _, err := (&packets.Pingresp{}).WriteTo(c); err != nil {
				return
			}
		case *packets.Publish:
			var seq uint64
			for _, u := range pk.Properties.User {
				if u.Key == "seq" {
					seq, _ = strconv.ParseUint(u.Value, 10, 64)
				}
			}
			if seq == 0 { // the status message
				f.mu.Lock()
				f.statuses = append(f.statuses, string(pk.Payload))
				f.mu.Unlock()
				continue
			}
			f.mu.Lock()
			f.got = append(f.got, fakeGot{conn: n, seq: seq, body: string(pk.Payload), dup: pk.Duplicate})
			f.mu.Unlock()
			acks, cut := []fakeAck{{pid: pk.PacketID}}, false
			if f.onPublish != nil {
				acks, cut = f.onPublish(n, seq, pk.PacketID)
			}
			if cut {
				return
			}
			for _, a := range acks {
				if _, err := (&packets.Puback{PacketID: a.pid, ReasonCode: a.code, Properties: &packets.Properties{}}).WriteTo(c); err != nil {
					return
				}
			}
		case *packets.Disconnect:
			return
		}
	}
}

func (f *fakeCloud) received() []fakeGot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeGot(nil), f.got...)
}

// startFake opens an uplink forwarding to the fake cloud with fast
// backoff and a small window.
func startFake(t *testing.T, f *fakeCloud, window int) *Uplink {
	t.Helper()
	o := testOpts(f.addr())
	o.MaxInflight = window
	u := openUplink(t, o, t.TempDir())
	u.backoffBase, u.backoffMax = 2*time.Millisecond, 20*time.Millisecond
	return u
}

// TestWindowBoundsResentAfterReconnect is the regression test for up to
// 4 x max_inflight duplicates (review P2-3): the feeder kept sending while
// fewer than max_inflight were unacknowledged, so PUBACKed messages piled
// up behind an unacknowledged head (up to 4 x max_inflight) and were all
// resent after the reconnect. At most max_inflight may be sent before the
// head is acknowledged.
func TestWindowBoundsResentAfterReconnect(t *testing.T) {
	const window, n = 8, 100
	f := newFakeCloud(t, "")
	f.onPublish = func(conn int, seq uint64, pid uint16) ([]fakeAck, bool) {
		if conn == 1 && seq == 1 {
			return nil, false // the head never gets its PUBACK
		}
		return []fakeAck{{pid: pid}}, false
	}
	u := startFake(t, f, window)
	u.ackTimeout = 300 * time.Millisecond
	capture(t, u, "t/a", n)
	u.Start()
	waitFor(t, func() bool { return u.Stats().Backlog == 0 }, "backlog 0")

	perConn := map[int]int{}
	seen := map[uint64]int{}
	for _, g := range f.received() {
		perConn[g.conn]++
		// A message sent before goes out again with DUP set (MQTT 5
		// 3.3.1.1: the session is kept, Clean Start 0); a first send
		// without.
		if again := seen[g.seq] > 0; g.dup != again {
			t.Errorf("seq %d on connection %d: DUP %v, want %v", g.seq, g.conn, g.dup, again)
		}
		seen[g.seq]++
	}
	if perConn[1] > window {
		t.Errorf("%d messages sent on the first connection before its head was acknowledged; max_inflight is %d", perConn[1], window)
	}
	dups := 0
	for s := uint64(1); s <= n; s++ {
		if seen[s] == 0 {
			t.Fatalf("seq %d never arrived", s)
		}
		dups += seen[s] - 1
	}
	if dups > window {
		t.Errorf("%d duplicates after one reconnect, more than max_inflight %d", dups, window)
	}
}

// TestPubackReasons covers the cloud's PUBACK reason codes and a cloud
// that cuts the connection over one message (review P4-7: such a message,
// and one refused with 0x80/0x83, was resent forever and blocked the
// queue). Permanent refusals are dead-lettered at once; a transient one is
// retried and delivered; a message failing every session is dead-lettered
// after poisonAfter sessions with no progress.
func TestPubackReasons(t *testing.T) {
	const n, bad = 20, 3
	for _, tc := range []struct {
		name     string
		code     byte
		cut      bool
		always   bool // refused on every connection, not only the first
		dead     uint64
		connects uint64
	}{
		{name: "0x87 not authorised", code: 0x87, always: true, dead: 1, connects: 1},
		{name: "0x95 packet too large", code: 0x95, always: true, dead: 1, connects: 1},
		{name: "0x97 quota exceeded once", code: 0x97, dead: 0, connects: 2},
		// The first session makes progress (seqs 1-2), the next
		// poisonAfter (3) make none, the fifth dead-letters it.
		{name: "0x80 unspecified every time", code: 0x80, always: true, dead: 1, connects: 5},
		{name: "0x83 implementation specific every time", code: 0x83, always: true, dead: 1, connects: 5},
		{name: "connection cut every time", cut: true, always: true, dead: 1, connects: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeCloud(t, "")
			f.onPublish = func(conn int, seq uint64, pid uint16) ([]fakeAck, bool) {
				if seq == bad && (tc.always || conn == 1) {
					return []fakeAck{{pid: pid, code: tc.code}}, tc.cut
				}
				return []fakeAck{{pid: pid}}, false
			}
			u := startFake(t, f, 4)
			u.poisonAfter = 3
			capture(t, u, "t/a", n)
			u.Start()
			waitFor(t, func() bool { return u.Stats().Backlog == 0 }, "backlog 0")
			st := u.Stats()
			if st.DeadLetters != tc.dead || st.Connects != tc.connects {
				t.Errorf("dead letters %d, connects %d; want %d and %d", st.DeadLetters, st.Connects, tc.dead, tc.connects)
			}
			seen := map[uint64]bool{}
			for _, g := range f.received() {
				seen[g.seq] = true
			}
			for s := uint64(1); s <= n; s++ {
				if !seen[s] {
					t.Errorf("seq %d never reached the cloud", s)
				}
			}
		})
	}
}

// TestCloseWhileCloudNeverAnswersConnect is the regression test for
// CONNECT/CONNACK ignoring a stop (review P3-5): a cloud that accepts TCP
// and never answers held Close for the whole connect timeout (10 s), past
// the daemon's stop budget.
func TestCloseWhileCloudNeverAnswersConnect(t *testing.T) {
	f := newFakeCloud(t, "silent")
	u := startFake(t, f, 4)
	u.Start()
	<-f.accepted
	waitFor(t, func() bool { f.mu.Lock(); defer f.mu.Unlock(); return len(f.connects) > 0 }, "CONNECT sent")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := u.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestCloseWhileCloudStopsReading is the regression test for writes with
// no deadline (review P3-4): with a cloud that CONNACKs and then never
// reads, a large message blocked in the socket write forever, where the
// loop could see neither the stop nor anything else.
func TestCloseWhileCloudStopsReading(t *testing.T) {
	f := newFakeCloud(t, "noread")
	u := startFake(t, f, 16)
	payload := strings.Repeat("x", 900<<10)
	for range 16 { // well above what loopback socket buffers hold
		if _, err := u.Capture("t/big", []byte(payload), 1, false); err != nil {
			t.Fatal(err)
		}
	}
	u.Start()
	waitFor(t, func() bool { return u.Stats().Sent >= 2 }, "the writes under way")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := u.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestCloseDrainFitsTheStopBudget is the regression test for the drain
// wait overrunning (review P3-6): it was checked on a 1 s ticker against a
// fixed 2 s, whatever the caller's deadline, so a stop with less left than
// that failed. The drain now ends within the deadline of Close's context.
func TestCloseDrainFitsTheStopBudget(t *testing.T) {
	f := newFakeCloud(t, "")
	f.onPublish = func(int, uint64, uint16) ([]fakeAck, bool) { return nil, false } // never a PUBACK
	u := startFake(t, f, 4)
	capture(t, u, "t/a", 4)
	u.Start()
	waitFor(t, func() bool { return len(f.received()) == 4 }, "the window sent")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second) // under drainWait (2 s)
	defer cancel()
	if err := u.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	f.mu.Lock()
	cp := f.connects[0]
	f.mu.Unlock()
	// The CONNECT carried a Maximum Packet Size (review: a bad cloud
	// packet could make paho allocate up to 256 MB).
	if mp := cp.Properties.MaximumPacketSize; mp == nil || *mp != maxIncoming {
		t.Errorf("CONNECT Maximum Packet Size %v, want %d", mp, maxIncoming)
	}
}

// TestReadPacketRefusesHugeLength checks the incoming size limit: a
// remaining length above the maximum is refused from its header, before
// anything is allocated for it.
func TestReadPacketRefusesHugeLength(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"pingresp", []byte{0xd0, 0x00}, nil},
		{"puback", []byte{0x40, 0x02, 0x00, 0x07}, nil},
		{"256 MB publish", []byte{0x30, 0xff, 0xff, 0xff, 0x7f}, errPacketTooLarge},
		{"just above 1 MiB", []byte{0x30, 0x81, 0x80, 0x40}, errPacketTooLarge},
		{"cut header", []byte{0x30, 0xff}, errors.New("any")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readPacket(bufio.NewReader(strings.NewReader(string(tc.in))), maxIncoming)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("readPacket: %v", err)
			case tc.want == errPacketTooLarge && !errors.Is(err, errPacketTooLarge):
				t.Fatalf("readPacket: %v, want errPacketTooLarge", err)
			case tc.want != nil && err == nil:
				t.Fatal("readPacket accepted it")
			}
		})
	}
}

// TestAckTimeoutRunsFromWriteCompletion is the regression test for the
// ack timeout looping on slow links (review P4-8): it was measured from
// when a message was queued, so a message whose write alone took longer
// than the timeout could never be acknowledged in time. A message counts
// as sent only once its last byte left.
func TestAckTimeoutRunsFromWriteCompletion(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	u := &Uplink{device: "gh-01"}
	s := &session{u: u, nc: a, ws: &walState{epoch: "e"}, win: newInflight(1), props: newProps("gh-01", "e")}
	payload := []byte(strings.Repeat("x", 100<<10)) // above the encoding buffer's flush size
	before := make(chan time.Time, 1)
	want := publishLen(len("c/a"), len(payload), len(s.props.forMessage(1, 0, false)), 1)
	readerDone := make(chan struct{})
	defer func() { b.Close(); <-readerDone }()
	go func() {
		defer close(readerDone)
		buf := make([]byte, 4096)
		total := 0
		for total < want-1 {
			n, err := b.Read(buf[:min(len(buf), want-1-total)])
			if err != nil {
				return
			}
			total += n
		}
		before <- time.Now() // the last byte is still unread (buffered: never blocks)
		_, _ = b.Read(buf[:1])
	}()
	if err := s.publish(&wal.Record{Seq: 1, Body: appendBody(nil, &Message{Topic: "c/a", Payload: payload, QoS: 1})}); err != nil {
		t.Fatal(err)
	}
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	last := <-before
	if p, _ := s.win.first(); p.sent.IsZero() || p.sent.Before(last) {
		t.Fatalf("message stamped sent at %v, before its last byte was written (%v)", p.sent, last)
	}
}
