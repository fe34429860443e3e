package uplink

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// The two packets the forwarder handles per message, PUBLISH out and
// PUBACK in, are encoded and decoded here into reused buffers; paho's
// packets package, which allocates several objects per packet, handles
// the rest (CONNECT, status, PINGREQ, DISCONNECT). A test checks the
// encoding against paho's decoder.

// maxIncoming is the Maximum Packet Size announced in CONNECT and enforced
// on every packet read: the cloud only sends small packets, and a damaged
// length must not make a 1 GB Pi allocate up to 256 MB.
const maxIncoming = 1 << 20

var errPacketTooLarge = errors.New("uplink: packet from the cloud above the maximum packet size")

// props holds the MQTT 5 user properties of a PUBLISH: gw and epoch are
// the same for every message of a session and encoded once.
type props struct {
	fixed []byte // gw and epoch, encoded
	buf   []byte // fixed, then seq and ts of the current message
}

func newProps(gw, epoch string) *props {
	p := &props{}
	p.fixed = appendUserProp(p.fixed, "gw", gw)
	p.fixed = appendUserProp(p.fixed, "epoch", epoch)
	return p
}

// forMessage returns the encoded properties of one message; valid until
// the next call. unsynced adds clock=unsynced: a capture time taken
// before the wall clock was trusted that could not be corrected.
func (p *props) forMessage(seq uint64, captured int64, unsynced bool) []byte {
	b := append(p.buf[:0], p.fixed...)
	b = append(b, 0x26, 0, 3, 's', 'e', 'q', 0, 0)
	n := len(b)
	b = strconv.AppendUint(b, seq, 10)
	binary.BigEndian.PutUint16(b[n-2:], uint16(len(b)-n))
	b = append(b, 0x26, 0, 2, 't', 's', 0, 0)
	n = len(b)
	b = time.Unix(0, captured).UTC().AppendFormat(b, time.RFC3339Nano)
	binary.BigEndian.PutUint16(b[n-2:], uint16(len(b)-n))
	if unsynced {
		b = appendUserProp(b, "clock", "unsynced")
	}
	p.buf = b
	return b
}

func appendUserProp(b []byte, k, v string) []byte {
	b = append(b, 0x26)
	b = binary.BigEndian.AppendUint16(b, uint16(len(k)))
	b = append(b, k...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// publishLen is the encoded size of a PUBLISH, to compare with the
// server's Maximum Packet Size before sending.
func publishLen(topic, payload, props int, qos byte) int {
	rem := publishRem(topic, payload, props, qos)
	return 1 + vbiLen(rem) + rem
}

func publishRem(topic, payload, props int, qos byte) int {
	rem := 2 + topic + vbiLen(props) + props + payload
	if qos > 0 {
		rem += 2
	}
	return rem
}

// appendPublish appends an MQTT 5 PUBLISH packet; pid is only written
// for QoS 1.
func appendPublish(b, topic, payload, props []byte, qos byte, retain, dup bool, pid uint16) []byte {
	h := byte(0x30) | qos<<1
	if retain {
		h |= 1
	}
	if dup && qos > 0 {
		h |= 0x08 // DUP: this message may have been sent before
	}
	b = append(b, h)
	b = appendVBI(b, publishRem(len(topic), len(payload), len(props), qos))
	b = binary.BigEndian.AppendUint16(b, uint16(len(topic)))
	b = append(b, topic...)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, pid)
	}
	b = appendVBI(b, len(props))
	b = append(b, props...)
	return append(b, payload...)
}

func appendVBI(b []byte, n int) []byte {
	for n >= 128 {
		b = append(b, byte(n&0x7f|0x80))
		n >>= 7
	}
	return append(b, byte(n))
}

func vbiLen(n int) int {
	l := 1
	for n >= 128 {
		n >>= 7
		l++
	}
	return l
}

// packetLen peeks at the fixed header of the next packet and returns the
// packet's whole length, refusing one whose remaining length is above max
// before anything is allocated for it. It consumes nothing.
func packetLen(br *bufio.Reader, max int) (int, error) {
	n, mul := 0, 1
	for i := 1; i <= 4; i++ {
		b, err := br.Peek(i + 1)
		if err != nil {
			if err == io.EOF && len(b) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		n += int(b[i]&0x7f) * mul
		mul <<= 7
		if b[i]&0x80 == 0 {
			if n > max {
				return 0, fmt.Errorf("%w: %d bytes", errPacketTooLarge, n)
			}
			return 1 + i + n, nil
		}
	}
	return 0, fmt.Errorf("uplink: malformed remaining length from the cloud")
}

// readPacket reads one packet with paho's decoder, after checking its
// length against max.
func readPacket(br *bufio.Reader, max int) (*packets.ControlPacket, error) {
	if _, err := packetLen(br, max); err != nil {
		return nil, err
	}
	return packets.ReadPacket(br)
}

// parsePuback decodes a whole MQTT 5 PUBACK packet (fixed header
// included): its packet id and reason code (0 when omitted).
func parsePuback(b []byte) (pid uint16, reason byte, err error) {
	_, k := binary.Uvarint(b[1:]) // the length has been checked; find its size
	body := b[1+k:]
	if len(body) < 2 {
		return 0, 0, fmt.Errorf("uplink: PUBACK of %d bytes", len(body))
	}
	pid = binary.BigEndian.Uint16(body)
	if len(body) > 2 {
		reason = body[2]
	}
	return pid, reason, nil
}
