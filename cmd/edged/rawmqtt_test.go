package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// Hand-made MQTT packets, for clients that misbehave on purpose (never
// read, never send CONNECT, Wills a client library would not send) and
// for MQTT 3.1.1, which paho.golang does not speak.

// rawWill is the Last Will of a raw CONNECT.
type rawWill struct {
	topic   string
	payload string
	qos     byte
	retain  bool
	delay   uint32 // MQTT 5 Will Delay Interval, seconds
}

// mqttString is a length-prefixed UTF-8 string.
func mqttString(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}

// varint is MQTT's variable byte integer.
func varint(n int) []byte {
	var b []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func packet(typeFlags byte, body []byte) []byte {
	return append(append([]byte{typeFlags}, varint(len(body))...), body...)
}

// connectPacket is a clean-session CONNECT for version 4 (3.1.1) or 5.
// MQTT 5 CONNECTs ask for a 60 s session expiry so a Will delay is not
// cut short by the session ending.
func connectPacket(version byte, id string, keepalive uint16, w *rawWill) []byte {
	flags := byte(0x02) // clean session / clean start
	if w != nil {
		flags |= 0x04 | w.qos<<3
		if w.retain {
			flags |= 0x20
		}
	}
	body := append(mqttString("MQTT"), version, flags)
	body = binary.BigEndian.AppendUint16(body, keepalive)
	if version == 5 {
		props := append([]byte{0x11}, binary.BigEndian.AppendUint32(nil, 60)...) // session expiry
		body = append(body, varint(len(props))...)
		body = append(body, props...)
	}
	body = append(body, mqttString(id)...)
	if w != nil {
		if version == 5 {
			var wp []byte
			if w.delay > 0 {
				wp = append([]byte{0x18}, binary.BigEndian.AppendUint32(nil, w.delay)...)
			}
			body = append(body, varint(len(wp))...)
			body = append(body, wp...)
		}
		body = append(body, mqttString(w.topic)...)
		body = append(body, mqttString(w.payload)...)
	}
	return packet(0x10, body)
}

// subscribePacket subscribes to filter at qos, packet id 1.
func subscribePacket(version byte, filter string, qos byte) []byte {
	body := []byte{0, 1}
	if version == 5 {
		body = append(body, 0) // no properties
	}
	body = append(body, mqttString(filter)...)
	return packet(0x82, append(body, qos))
}

// readPacket reads one packet: its first byte and its body.
func readPacket(r *bufio.Reader) (byte, []byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&0x7f) * mult
		mult *= 128
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, fmt.Errorf("malformed remaining length")
		}
	}
	body := make([]byte, n)
	_, err = io.ReadFull(r, body)
	return h, body, err
}

// rawClient is one hand-driven MQTT connection.
type rawClient struct {
	conn    net.Conn
	r       *bufio.Reader
	version byte
}

// dialFrom connects to addr from a given loopback source address ("" for
// any): each 127.0.0.x counts as a different LAN device.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawConnect sends a CONNECT and returns the CONNACK's reason code.
func rawConnect(t *testing.T, conn net.Conn, version byte, id string, keepalive uint16, w *rawWill) (*rawClient, byte) {
	t.Helper()
	c := &rawClient{conn: conn, r: bufio.NewReader(conn), version: version}
	if _, err := conn.Write(connectPacket(version, id, keepalive, w)); err != nil {
		t.Fatalf("%s: write CONNECT: %v", id, err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, body, err := readPacket(c.r)
	if err != nil {
		t.Fatalf("%s: no CONNACK: %v", id, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if h != 0x20 || len(body) < 2 {
		t.Fatalf("%s: got packet %#x %x, want a CONNACK", id, h, body)
	}
	return c, body[1]
}

// subscribe subscribes and waits for the SUBACK.
func (c *rawClient) subscribe(t *testing.T, filter string, qos byte) {
	t.Helper()
	if _, err := c.conn.Write(subscribePacket(c.version, filter, qos)); err != nil {
		t.Fatal(err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.conn.SetReadDeadline(time.Time{})
	for {
		h, _, err := readPacket(c.r)
		if err != nil {
			t.Fatalf("no SUBACK for %s: %v", filter, err)
		}
		if h == 0x90 {
			return
		}
	}
}
