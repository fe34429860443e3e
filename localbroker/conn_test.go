package localbroker

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// encPkt encodes pk as MQTT 5.
func encPkt(t *testing.T, pk packets.Packet) []byte {
	t.Helper()
	return encV(t, 5, pk)
}

func pubPkt(t *testing.T, id uint16, qos byte, payload string) []byte {
	return encPkt(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName: "a/b", PacketID: id, Payload: []byte(payload)})
}

// TestInScanAnySplit: the acknowledgements a client sends are seen
// whatever sizes its bytes arrive in.
func TestInScanAnySplit(t *testing.T) {
	var stream []byte
	stream = append(stream, pubPkt(t, 9, 1, "a payload long enough to skip")...)
	stream = append(stream, encPkt(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: 7})...)
	stream = append(stream, encPkt(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})...)
	stream = append(stream, encPkt(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: 300, ReasonCode: 0x80})...)
	stream = append(stream, encPkt(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: 65535})...)
	want := "4:7:0 5:300:128 7:65535:0 "
	for split := 1; split <= len(stream); split++ {
		var s inScan
		var got string
		for p := stream; len(p) > 0; {
			n := min(split, len(p))
			s.scan(p[:n], func(typ byte, id uint16, reason byte) { got += fmtAck(typ, id, reason) })
			p = p[n:]
		}
		if got != want {
			t.Fatalf("split %d: acks %q, want %q", split, got, want)
		}
	}
}

func fmtAck(typ byte, id uint16, reason byte) string {
	return fmt.Sprintf("%d:%d:%d ", typ, id, reason)
}

// TestSendWindow: with a Receive Maximum of 2, the third QoS 1 PUBLISH
// waits (QoS 0 and other packets do not) until an acknowledgement, and
// writes split mid-packet change nothing.
func TestSendWindow(t *testing.T) {
	server, client := net.Pipe()
	drained := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, client); close(drained) }()
	var shut atomic.Bool
	shut.Store(true) // Close closes at once
	c := newClientConn(server, func() {}, time.Minute, 1<<20, func(bool) {}, &shut)
	defer func() { c.Close(); c.wait(); client.Close(); <-drained }()
	c.setReceiveMaximum(2, DefaultOpts().MaxQueuedMessages)
	var all []byte
	for i := uint16(1); i <= 4; i++ {
		all = append(all, pubPkt(t, i, 1, "q1")...)
	}
	all = append(all, pubPkt(t, 0, 0, "q0")...)
	for _, b := range all { // one byte at a time
		if _, err := c.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	window := func() (inflight []uint16, held []uint16) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for id := range c.inflight {
			inflight = append(inflight, id)
		}
		slices.Sort(inflight)
		for _, pk := range c.held {
			id, _ := publishID(pk)
			held = append(held, id)
		}
		return inflight, held
	}
	if in, held := window(); !slices.Equal(in, []uint16{1, 2}) || !slices.Equal(held, []uint16{3, 4}) {
		t.Fatalf("in flight %v held %v, want [1 2] and [3 4] (QoS 0 not held)", in, held)
	}
	c.acked(packets.Puback, 2, 0)
	c.acked(packets.Puback, 2, 0) // a repeat frees nothing more
	c.acked(packets.Pubrec, 1, 0) // a successful PUBREC frees nothing
	if in, held := window(); !slices.Equal(in, []uint16{1, 3}) || !slices.Equal(held, []uint16{4}) {
		t.Fatalf("after PUBACK 2: in flight %v held %v, want [1 3] and [4]", in, held)
	}
}

// tcpPair returns both ends of a loopback TCP connection, the server's
// as the gate admits it.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); client.Close() })
	return &gatedConn{Conn: s, release: func() {}}, client
}

// TestWriteGoesOutInline: on a TCP connection with room in its socket
// buffer, Write puts the packet on the wire itself: no writer goroutine
// runs here, and the client still gets it, byte for byte.
func TestWriteGoesOutInline(t *testing.T) {
	server, client := tcpPair(t)
	c := &clientConn{Conn: server, sock: socket(server), maxQueued: 1 << 20, kick: make(chan struct{}, 1), done: make(chan struct{})}
	if c.sock == nil {
		t.Fatal("no raw socket for a plain TCP connection")
	}
	pk := pubPkt(t, 1, 1, "inline")
	if _, err := c.Write(pk); err != nil {
		t.Fatal(err)
	}
	if n := c.queue.Len(); n != 0 {
		t.Fatalf("%d bytes left queued for a writer", n)
	}
	got := make([]byte, len(pk))
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pk) {
		t.Fatalf("got % x, want % x", got, pk)
	}
}

// TestAcksCorkedUntilNextRead: the acknowledgements mochi writes while it
// works through what one Read returned wait until it reads again or
// writes anything else, then go out together and in order; one written
// while mochi waits in Read goes out at once.
func TestAcksCorkedUntilNextRead(t *testing.T) {
	server, client := tcpPair(t)
	c := &clientConn{Conn: server, started: func() {}, sock: socket(server), maxQueued: 1 << 20, kick: make(chan struct{}, 1), done: make(chan struct{})}
	ack := func(id uint16) []byte {
		return encPkt(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id})
	}
	write := func(p []byte) {
		t.Helper()
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(want []byte) {
		t.Helper()
		got := make([]byte, len(want))
		_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(client, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("client got % x, want % x", got, want)
		}
	}
	queued := func() int { c.mu.Lock(); defer c.mu.Unlock(); return c.queue.Len() }

	// The client's burst, read by mochi; its acks wait.
	burst := append(append(pubPkt(t, 1, 1, "a"), pubPkt(t, 2, 1, "b")...), pubPkt(t, 3, 1, "c")...)
	if _, err := client.Write(burst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for got := 0; got < len(burst); {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	var acks []byte
	for id := uint16(1); id <= 3; id++ {
		write(ack(id))
		acks = append(acks, ack(id)...)
	}
	if n := queued(); n != len(acks) {
		t.Fatalf("%d bytes queued after 3 acks while mochi works, want them all (%d) corked", n, len(acks))
	}
	// Anything else takes them along, in order.
	pub := pubPkt(t, 9, 1, "delivery")
	write(pub)
	if n := queued(); n != 0 {
		t.Fatalf("%d bytes left queued after a delivery", n)
	}
	expect(append(acks, pub...))

	// An ack waits for the next Read, which sends it before it waits.
	write(ack(4))
	if n := queued(); n == 0 {
		t.Fatal("an ack written while mochi works went out alone")
	}
	read := make(chan error, 1)
	go func() { _, err := c.Read(buf); read <- err }()
	expect(ack(4))
	// And one written while mochi waits in Read goes out at once.
	for i := 0; !c.reading.Load(); i++ {
		if i == 1000 {
			t.Fatal("Read never started waiting")
		}
		time.Sleep(time.Millisecond)
	}
	write(ack(5))
	expect(ack(5))
	client.Close()
	<-read
}

// TestWriteOrderThroughBackpressure: a client that stops reading fills
// its socket buffer; Write keeps returning at once (the rest queues for
// the writer) and, once the client reads again, every packet arrives
// once and in order, across the switches between inline writes and the
// writer, and with the write deadline the accept set long past.
func TestWriteOrderThroughBackpressure(t *testing.T) {
	server, client := tcpPair(t)
	_ = server.SetWriteDeadline(time.Now().Add(-time.Second)) // as an expired connect timeout
	var shut atomic.Bool
	c := newClientConn(server, func() {}, time.Minute, 8<<20, func(bool) { t.Error("reported slow") }, &shut)
	defer func() { shut.Store(true); c.Close(); c.wait() }()
	payload := string(bytes.Repeat([]byte("x"), 1000))
	var want []byte
	write := func(from, to int) {
		for i := from; i < to; i++ {
			pk := pubPkt(t, uint16(i%65535+1), 1, fmt.Sprintf("%06d%s", i, payload))
			want = append(want, pk...)
			if _, err := c.Write(pk); err != nil {
				t.Fatal(err)
			}
		}
	}
	read := func(n int) {
		got := make([]byte, n)
		_ = client.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadFull(client, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want[:n]) {
			t.Fatalf("stream differs from what was written (%d bytes)", n)
		}
		want = want[n:]
	}
	write(0, 4000) // ~4 MB: far more than the socket buffers hold
	read(len(want))
	for round := 0; round < 50; round++ { // writer idle again: inline writes
		write(4000+round*10, 4010+round*10)
		read(len(want))
	}
}
