package localbroker

import (
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestInScanMalformedLength: a remaining length longer than the four
// bytes MQTT allows [MQTT-1.5.5] (mochi refuses the packet, but Read has
// scanned the bytes first) neither panics nor reports an acknowledgement,
// whatever the read sizes. Before the fix ten continuation bytes (five on
// 32-bit ARM) made the length negative and the next byte panicked Read,
// the whole daemon with it, from an unauthenticated client.
func TestInScanMalformedLength(t *testing.T) {
	streams := [][]byte{
		{0x40, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00, 0x07},
		{0x40, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x07},
		{0x40, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00, 0x07}, // negative in a 32-bit int
		{0x40, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x07},
	}
	for i, stream := range streams {
		for split := 1; split <= len(stream); split++ {
			var s inScan
			for p := stream; len(p) > 0; {
				n := min(split, len(p))
				s.scan(p[:n], func(typ byte, id uint16, reason byte) {
					t.Fatalf("stream %d split %d: acknowledgement %s from a malformed packet", i, split, fmtAck(typ, id, reason))
				})
				p = p[n:]
			}
		}
	}
}

// FuzzInScan: no byte stream panics the scanner, and it reports the same
// acknowledgements whether the stream comes in one read or byte by byte.
func FuzzInScan(f *testing.F) {
	f.Add([]byte{0x40, 0x02, 0x00, 0x07, 0x50, 0x03, 0x01, 0x2c, 0x80, 0x70, 0x02, 0xff, 0xff})
	f.Add([]byte{0x40, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00, 0x07})
	f.Add([]byte{0x40, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00, 0x07})
	f.Add([]byte{0x30, 0x0a, 0x00, 0x03, 'a', '/', 'b', 0x00, 'x', 'y', 'z', 'w', 0x40, 0x02, 0x00, 0x01})
	f.Add([]byte{0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c, 0x00, 0x00, 0x03, 'a', 'b', 'c'})
	f.Add(append(connect5, 0x82, 0x09, 0x00, 0x01, 0x00, 0x00, 0x04, 'l', 'a', 'n', '/'))
	f.Fuzz(func(t *testing.T, stream []byte) {
		var whole, bytewise string
		var s inScan
		keep, ok := s.scan(stream, func(typ byte, id uint16, reason byte) { whole += fmtAck(typ, id, reason) })
		if keep < 0 || keep > len(stream) || (ok && keep != len(stream)) {
			t.Fatalf("scan of %d bytes: keep %d ok %v", len(stream), keep, ok)
		}
		s = inScan{}
		bytewiseKeep, bytewiseOK := len(stream), true
		for i := range stream {
			n, ok := s.scan(stream[i:i+1], func(typ byte, id uint16, reason byte) { bytewise += fmtAck(typ, id, reason) })
			if !ok {
				bytewiseKeep, bytewiseOK = i+n, false
				break
			}
		}
		if whole != bytewise || keep != bytewiseKeep || ok != bytewiseOK {
			t.Fatalf("acks %q keep %d ok %v in one read, %q %d %v byte by byte", whole, keep, ok, bytewise, bytewiseKeep, bytewiseOK)
		}
	})
}

// FuzzSendWindow: whatever mochi's writes hold and however they are
// split, and whatever acknowledgements come, enqueue and acked neither
// panic nor lose or duplicate a byte: everything written leaves the queue
// once the window has room, QoS 1/2 PUBLISHes in order and the other
// packets in order.
func FuzzSendWindow(f *testing.F) {
	f.Add([]byte{0x32, 0x07, 0x00, 0x01, 'a', 0x00, 0x01, 0x00, 'x', 0x32, 0x07, 0x00, 0x01, 'a', 0x00, 0x02, 0x00, 'y'}, uint8(1), uint8(3))
	f.Add([]byte{0x34, 0x80, 0x80, 0x80, 0x80, 0x01}, uint8(1), uint8(1))
	f.Add([]byte{0x32, 0x01}, uint8(2), uint8(7))
	f.Fuzz(func(t *testing.T, stream []byte, window, split uint8) {
		c := &clientConn{}
		c.window, c.inflight = int(window%4)+1, map[uint16]byte{}
		step := int(split%16) + 1
		for p := stream; len(p) > 0; {
			n := min(step, len(p))
			c.enqueue(p[:n])
			p = p[n:]
		}
		// Acknowledge everything in flight until nothing is held.
		for range 1 << 16 {
			if len(c.inflight) == 0 {
				break
			}
			for id, qos := range c.inflight {
				typ := byte(packets.Puback)
				if qos == 2 {
					typ = packets.Pubcomp
				}
				c.acked(typ, id, 0)
				break
			}
		}
		if len(c.held) > 0 {
			return
		}
		// QoS 0 and other packets may pass held QoS 1/2 PUBLISHes (MQTT
		// 5.0 section 4.9); each kind keeps its order.
		kinds := func(b []byte) (held, other []byte, rest []byte) {
			for {
				n := packetLen(b)
				if n == 0 {
					return held, other, b
				}
				if _, qos := publishID(b[:n]); qos > 0 {
					held = append(held, b[:n]...)
				} else {
					other = append(other, b[:n]...)
				}
				b = b[n:]
			}
		}
		wantHeld, wantOther, wantRest := kinds(stream)
		gotHeld, gotOther, gotRest := kinds(append(c.queue.Bytes(), c.partial...))
		if string(gotHeld) != string(wantHeld) || string(gotOther) != string(wantOther) || string(gotRest) != string(wantRest) {
			t.Fatalf("queued %x %x %x, want %x %x %x", gotHeld, gotOther, gotRest, wantHeld, wantOther, wantRest)
		}
	})
}

// connect5 is an MQTT 5 CONNECT (client id "a").
var connect5 = []byte{0x10, 0x0e, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x1e, 0x00, 0x00, 0x01, 'a'}

// TestInScanHoldsBackCrashingSubscribe: an MQTT 5 SUBSCRIBE that ends
// before a filter's options byte (mochi v2.7.9 indexes past the body and
// panics, ending edged: mochi-mqtt/server#501) is kept from mochi, its
// last byte withheld, whatever the read sizes; a whole one, and the same
// bytes from an MQTT 3.1.1 client (mochi refuses those with an error),
// go through.
func TestInScanHoldsBackCrashingSubscribe(t *testing.T) {
	connect4 := []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x1e, 0x00, 0x01, 'a'}
	truncated := []byte{0x82, 0x09, 0x00, 0x01, 0x00, 0x00, 0x04, 'l', 'a', 'n', '/'}
	whole := []byte{0x82, 0x0a, 0x00, 0x01, 0x00, 0x00, 0x04, 'l', 'a', 'n', '/', 0x01}
	ping := []byte{0xc0, 0x00}
	cat := func(ps ...[]byte) []byte { return bytes.Join(ps, nil) }
	for _, tc := range []struct {
		name   string
		stream []byte
		keep   int // bytes mochi gets; -1: all
	}{
		{"v5 truncated", cat(connect5, whole, truncated, ping), len(connect5) + len(whole) + len(truncated) - 1},
		{"v5 whole", cat(connect5, whole, ping), -1},
		{"v4 truncated", cat(connect4, []byte{0x82, 0x08, 0x00, 0x01, 0x00, 0x04, 'l', 'a', 'n', '/'}, ping), -1},
	} {
		for split := 1; split <= len(tc.stream); split++ {
			var s inScan
			got, failed := 0, false
			for p := tc.stream; len(p) > 0 && !failed; {
				n := min(split, len(p))
				keep, ok := s.scan(p[:n], func(byte, uint16, byte) {})
				got += keep
				failed = !ok
				p = p[n:]
			}
			want := tc.keep
			if want < 0 {
				want = len(tc.stream)
			}
			if got != want || failed != (tc.keep >= 0) {
				t.Fatalf("%s, reads of %d: mochi gets %d bytes (refused %v), want %d", tc.name, split, got, failed, want)
			}
		}
	}
}
