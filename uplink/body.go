package uplink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/edged/edged/sensors/wallclock"
)

// The WAL body of one captured message, version 1. The log itself only
// stores opaque bytes; this is what the uplink puts in them:
//
//	version u8 (1) | flags u8 | capture time i64 LE (unix ns) | [boot id 16 bytes | time since boot i64 LE (ns)] | topic length uvarint | topic | payload
//
// flags: bit 0 retain, bits 1-2 the cloud QoS (0 or 1), bit 3 unsynced:
// the message was captured before the wall clock was trusted, and the
// bracketed stamp follows the capture time (README "Clock"); the other
// bits are zero (a binary from before bit 3 counts such a record as
// bad_record). The topic is the cloud topic, resolved when the message was
// captured, so a config change never re-routes messages already accepted.
// The payload is the rest of the body, so it needs no length of its own.
const (
	bodyVersion   = 1
	bodyHeader    = 10 // version, flags, time
	flagRetain    = 1 << 0
	flagQoSShift  = 1
	flagQoSMask   = 3 << flagQoSShift
	flagUnsynced  = 1 << 3
	stampBytes    = 16 + 8
	flagsReserved = ^byte(flagRetain | flagQoSMask | flagUnsynced)
	maxTopicBytes = 65535 // MQTT's limit on a topic name
)

// Message is one captured message as the forwarder sends it.
type Message struct {
	Topic   string // cloud topic
	Payload []byte
	QoS     byte
	Retain  bool
	// Captured is when the message was captured (unix ns by the uplink's
	// clock); it travels to the cloud as the "ts" user property.
	Captured int64
	// Unsynced: captured before the wall clock was trusted; Boot and
	// SinceBoot then say when, so the forwarder can correct Captured.
	Unsynced  bool
	Boot      wallclock.BootID
	SinceBoot time.Duration
}

// errBody is wrapped by every decoding error.
var errBody = errors.New("uplink: bad message record")

// appendBody encodes m onto dst.
func appendBody(dst []byte, m *Message) []byte {
	flags := m.QoS << flagQoSShift & flagQoSMask
	if m.Retain {
		flags |= flagRetain
	}
	if m.Unsynced {
		flags |= flagUnsynced
	}
	dst = append(dst, bodyVersion, flags)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(m.Captured))
	if m.Unsynced {
		dst = append(dst, m.Boot[:]...)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(m.SinceBoot))
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.Topic)))
	dst = append(dst, m.Topic...)
	return append(dst, m.Payload...)
}

// body is a decoded record body; its slices alias the record.
type body struct {
	topic, payload []byte
	qos            byte
	retain         bool
	captured       int64
	unsynced       bool
	boot           wallclock.BootID
	sinceBoot      time.Duration
}

// decodeBody decodes a record body. The payload aliases b.
func decodeBody(b []byte) (Message, error) {
	d, err := parseBody(b)
	if err != nil {
		return Message{}, err
	}
	return Message{Topic: string(d.topic), Payload: d.payload, QoS: d.qos, Retain: d.retain, Captured: d.captured,
		Unsynced: d.unsynced, Boot: d.boot, SinceBoot: d.sinceBoot}, nil
}

// parseBody decodes a record body without copying it. It never panics:
// the body comes from disk, which may hold anything.
func parseBody(b []byte) (body, error) {
	if len(b) < bodyHeader {
		return body{}, fmt.Errorf("%w: %d bytes is shorter than the header", errBody, len(b))
	}
	if b[0] != bodyVersion {
		return body{}, fmt.Errorf("%w: unknown version %d", errBody, b[0])
	}
	flags := b[1]
	if flags&flagsReserved != 0 {
		return body{}, fmt.Errorf("%w: reserved flags %#x set", errBody, flags)
	}
	d := body{
		qos:      flags & flagQoSMask >> flagQoSShift,
		retain:   flags&flagRetain != 0,
		captured: int64(binary.LittleEndian.Uint64(b[2:])),
	}
	if d.qos > 1 {
		return body{}, fmt.Errorf("%w: qos %d", errBody, d.qos)
	}
	at := bodyHeader
	if flags&flagUnsynced != 0 {
		if len(b) < bodyHeader+stampBytes {
			return body{}, fmt.Errorf("%w: %d bytes is shorter than the header with a clock stamp", errBody, len(b))
		}
		d.unsynced = true
		copy(d.boot[:], b[bodyHeader:])
		d.sinceBoot = time.Duration(binary.LittleEndian.Uint64(b[bodyHeader+16:]))
		at += stampBytes
	}
	n, k := binary.Uvarint(b[at:])
	if k <= 0 {
		return body{}, fmt.Errorf("%w: bad topic length", errBody)
	}
	rest := b[at+k:]
	if n == 0 || n > maxTopicBytes || n > uint64(len(rest)) {
		return body{}, fmt.Errorf("%w: topic length %d out of range", errBody, n)
	}
	d.topic = rest[:n]
	if !utf8.Valid(d.topic) {
		return body{}, fmt.Errorf("%w: topic is not UTF-8", errBody)
	}
	d.payload = rest[n:]
	return d, nil
}
