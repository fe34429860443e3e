package uplink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The WAL body of one captured message, version 1. The log itself only
// stores opaque bytes; this is what the uplink puts in them:
//
//	version u8 (1) | flags u8 | capture time i64 LE (unix ns) | topic length uvarint | topic | payload
//
// flags: bit 0 retain, bits 1-2 the cloud QoS (0 or 1); the other bits are
// zero. The topic is the cloud topic, resolved when the message was
// captured, so a config change never re-routes messages already accepted.
// The payload is the rest of the body, so it needs no length of its own.
const (
	bodyVersion   = 1
	bodyHeader    = 10 // version, flags, time
	flagRetain    = 1 << 0
	flagQoSShift  = 1
	flagQoSMask   = 3 << flagQoSShift
	flagsReserved = ^byte(flagRetain | flagQoSMask)
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
}

// errBody is wrapped by every decoding error.
var errBody = errors.New("uplink: bad message record")

// appendBody encodes m onto dst.
func appendBody(dst []byte, m *Message) []byte {
	flags := m.QoS << flagQoSShift & flagQoSMask
	if m.Retain {
		flags |= flagRetain
	}
	dst = append(dst, bodyVersion, flags)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(m.Captured))
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
}

// decodeBody decodes a record body. The payload aliases b.
func decodeBody(b []byte) (Message, error) {
	d, err := parseBody(b)
	if err != nil {
		return Message{}, err
	}
	return Message{Topic: string(d.topic), Payload: d.payload, QoS: d.qos, Retain: d.retain, Captured: d.captured}, nil
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
	n, k := binary.Uvarint(b[bodyHeader:])
	if k <= 0 {
		return body{}, fmt.Errorf("%w: bad topic length", errBody)
	}
	rest := b[bodyHeader+k:]
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
