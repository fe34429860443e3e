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
	c.setReceiveMaximum(2)
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
