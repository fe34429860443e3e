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
	pk.ProtocolVersion = 5
	var b bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Publish:
		err = pk.PublishEncode(&b)
	case packets.Puback:
		err = pk.PubackEncode(&b)
	case packets.Pubrec:
		err = pk.PubrecEncode(&b)
	case packets.Pubcomp:
		err = pk.PubcompEncode(&b)
	case packets.Pingreq:
		err = pk.PingreqEncode(&b)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
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
