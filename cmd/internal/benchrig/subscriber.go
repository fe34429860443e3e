package benchrig

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// Subscriber is a QoS 0/1 MQTT 5 subscriber whose messages go to a
// Recorder per topic.
//
// It is the benches' measuring instrument, and it shares the machine with
// what it measures, so it is lean where paho's client is general: one
// goroutine reads the connection and handles each PUBLISH where it was
// read, and the PUBACKs for everything one read brought are written
// together, once nothing more is buffered. paho's client passes every
// message between goroutines and writes every PUBACK alone; at a drain's
// rate (40,000 msg/s) that made the subscriber the busiest process of the
// bench, so the drain figure measured the subscriber more than the
// gateway. The acknowledgements are as MQTT requires: one PUBACK per
// QoS 1 PUBLISH, after the message was recorded.
type Subscriber struct {
	addr   string
	id     string
	local  net.IP
	filter string
	qos    byte
	expiry uint32 // session expiry: 0 ends the session with the connection
	clean  bool   // Clean Start of the next connect
	// present is the Session Present flag of the latest CONNACK.
	present bool

	mu     sync.Mutex
	conn   net.Conn
	wmu    sync.Mutex // serialises writes: the reader's PUBACKs, the pings
	done   chan struct{}
	tracks map[string]*Recorder
	raw    func(topic string, payload []byte) // SubscribeRaw's
}

// maxAcks bounds the PUBACKs the reader holds back before writing them.
const maxAcks = 256

// keepAlive is the keep-alive the subscriber asks for; it pings at half
// of the one in effect, which the broker may set in the CONNACK (edged's
// max_keepalive).
const keepAlive = 60 * time.Second

// Subscribe connects to addr and subscribes to filter. persistent makes
// the session outlive the connection (CleanStart on the first connect
// only, a day's session expiry), so Reconnect gets what was queued.
func Subscribe(addr, id string, local net.IP, filter string, qos byte, persistent bool) (*Subscriber, error) {
	s := &Subscriber{addr: addr, id: id, local: local, filter: filter, qos: qos, clean: true, tracks: map[string]*Recorder{}}
	if persistent {
		s.expiry = 86400
	}
	return s, s.connect()
}

// Resume is Subscribe with a persistent session resumed from the
// start (Clean Start off): the broker's session of id, if it has one,
// and a takeover if that session is connected. SessionPresent tells
// whether it had one.
func Resume(addr, id string, local net.IP, filter string, qos byte) (*Subscriber, error) {
	s := &Subscriber{addr: addr, id: id, local: local, filter: filter, qos: qos, expiry: 86400, tracks: map[string]*Recorder{}}
	return s, s.connect()
}

// SessionPresent reports whether the broker resumed a session at the
// latest connect.
func (s *Subscriber) SessionPresent() bool { return s.present }

// SubscribeRaw is Subscribe (clean session) handing every message to
// f, from the reading goroutine, instead of to Recorders; payload is
// valid only during the call.
func SubscribeRaw(addr, id, filter string, qos byte, f func(topic string, payload []byte)) (*Subscriber, error) {
	s := &Subscriber{addr: addr, id: id, filter: filter, qos: qos, clean: true, raw: f}
	return s, s.connect()
}

// connect dials, sends CONNECT and SUBSCRIBE, and starts the reader,
// which reports the CONNACK and the SUBACK: a resumed session's queued
// messages may come before the SUBACK. All of it bounded to 10 s.
func (s *Subscriber) connect() error {
	if s.qos > 1 {
		// QoS 2 would need PUBREC/PUBREL/PUBCOMP, which read does not
		// answer: the broker would stop after its Receive Maximum.
		return fmt.Errorf("benchrig: subscribe %s to %s: QoS %d (0 or 1 only)", s.id, s.filter, s.qos)
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	if s.local != nil {
		d.LocalAddr = &net.TCPAddr{IP: s.local}
	}
	conn, err := d.Dial("tcp", s.addr)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		conn.Close()
		return fmt.Errorf("benchrig: subscribe %s to %s at %s: %w", s.id, s.filter, s.addr, err)
	}
	cp := &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: s.id,
		CleanStart: s.clean, KeepAlive: uint16(keepAlive / time.Second), Properties: &packets.Properties{}}
	if s.expiry > 0 {
		cp.Properties.SessionExpiryInterval = &s.expiry
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := cp.WriteTo(conn); err != nil {
		return fail(err)
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	p, err := packets.ReadPacket(br)
	if err != nil {
		return fail(fmt.Errorf("CONNACK: %w", err))
	}
	ca, ok := p.Content.(*packets.Connack)
	if !ok {
		return fail(fmt.Errorf("%s instead of CONNACK", p.PacketType()))
	}
	if ca.ReasonCode >= 0x80 {
		return fail(fmt.Errorf("CONNACK %#x", ca.ReasonCode))
	}
	s.present = ca.SessionPresent
	ka := keepAlive
	if ca.Properties != nil && ca.Properties.ServerKeepAlive != nil { // [MQTT-3.2.2-21]
		ka = time.Duration(*ca.Properties.ServerKeepAlive) * time.Second
	}
	sp := &packets.Subscribe{PacketID: 1, Properties: &packets.Properties{},
		Subscriptions: []packets.SubOptions{{Topic: s.filter, QoS: s.qos}}}
	if _, err := sp.WriteTo(conn); err != nil {
		return fail(err)
	}
	_ = conn.SetDeadline(time.Time{})

	suback := make(chan []byte, 1)
	done := make(chan struct{})
	s.mu.Lock()
	s.conn, s.done = conn, done
	s.mu.Unlock()
	go s.read(conn, br, ka, suback, done)
	select {
	case reasons := <-suback:
		if len(reasons) != 1 || reasons[0] >= 0x80 {
			s.Close()
			return fmt.Errorf("benchrig: subscribe %s to %s: SUBACK %v", s.id, s.filter, reasons)
		}
	case <-done:
		return fail(errors.New("connection closed before the SUBACK"))
	case <-time.After(10 * time.Second):
		s.Close()
		return fmt.Errorf("benchrig: subscribe %s to %s: no SUBACK within 10 s", s.id, s.filter)
	}
	return nil
}

// read handles every packet of conn until it closes: PUBLISHes are
// recorded and their PUBACKs written once nothing more is buffered; it
// also pings at half the keep-alive ka (none if 0).
func (s *Subscriber) read(conn net.Conn, br *bufio.Reader, ka time.Duration, suback chan<- []byte, done chan struct{}) {
	stop := make(chan struct{})
	var pinger sync.WaitGroup
	defer func() {
		close(stop)
		pinger.Wait() // its write fails at once: conn is closed
		close(done)
	}()
	pinger.Add(1)
	go func() {
		defer pinger.Done()
		if ka <= 0 {
			return
		}
		t := time.NewTicker(ka / 2)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if s.write(conn, []byte{packets.PINGREQ << 4, 0}) != nil {
					return
				}
			}
		}
	}()
	var acks, buf []byte
	for {
		h, err := br.Peek(1)
		if err != nil {
			conn.Close()
			return
		}
		if h[0]>>4 == packets.PUBLISH {
			var p publish
			if p, buf, err = readPublish(br, buf); err != nil {
				conn.Close()
				return
			}
			s.received(p)
			if p.qos == 1 {
				acks = append(acks, packets.PUBACK<<4, 2, byte(p.id>>8), byte(p.id))
			}
		} else if err := s.control(br, suback); err != nil {
			conn.Close()
			return
		}
		// Written once the read buffer is empty, or every maxAcks: a
		// subscriber that stays behind must not hold back its
		// acknowledgements (edged's broker may have 65,535 in flight).
		if len(acks) > 0 && (br.Buffered() == 0 || len(acks) >= 4*maxAcks) {
			if s.write(conn, acks) != nil {
				conn.Close()
				return
			}
			acks = acks[:0]
		}
	}
}

// control reads a packet other than PUBLISH: paho's decoder is fine for
// the few of them.
func (s *Subscriber) control(br *bufio.Reader, suback chan<- []byte) error {
	p, err := packets.ReadPacket(br)
	if err != nil {
		return err
	}
	switch c := p.Content.(type) {
	case *packets.Suback:
		select {
		case suback <- c.Reasons:
		default:
		}
	case *packets.Disconnect:
		return fmt.Errorf("DISCONNECT %#x", c.ReasonCode)
	}
	return nil
}

// write writes b to conn, bounded to 10 s.
func (s *Subscriber) write(conn net.Conn, b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := conn.Write(b)
	return err
}

// disconnect sends DISCONNECT, with a session expiry of 0 if end, closes
// the connection and waits (at most 5 s) for the reader.
func (s *Subscriber) disconnect(end bool) {
	s.mu.Lock()
	conn, done := s.conn, s.done
	s.mu.Unlock()
	if conn == nil {
		return
	}
	d := &packets.Disconnect{Properties: &packets.Properties{}}
	if end {
		zero := uint32(0)
		d.Properties.SessionExpiryInterval = &zero
	}
	s.wmu.Lock()
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = d.WriteTo(conn)
	s.wmu.Unlock()
	conn.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// Reconnect connects again, resuming the session (after the broker
// restarted, say).
func (s *Subscriber) Reconnect() error {
	s.disconnect(false) // keeps the session
	s.clean = false
	return s.connect()
}

// Track returns the Recorder of topic, made on first use. Messages on
// topics nobody tracks are dropped.
func (s *Subscriber) Track(topic string) *Recorder {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.tracks[topic]
	if r == nil {
		r = newRecorder()
		s.tracks[topic] = r
	}
	return r
}

func (s *Subscriber) received(p publish) {
	if s.raw != nil {
		s.raw(string(p.topic), p.payload)
		return
	}
	at := time.Now()
	s.mu.Lock()
	r := s.tracks[string(p.topic)]
	s.mu.Unlock()
	if r == nil {
		return
	}
	seq, sent, err := ParsePayload(p.payload)
	if err != nil {
		return
	}
	a := Arrival{Seq: seq, Sent: sent, At: at}
	if len(p.seq) > 0 {
		a.Tag = string(p.epoch) + "/" + string(p.seq)
	}
	r.add(a)
}

// Close disconnects, ending the session.
func (s *Subscriber) Close() { s.disconnect(true) }

// publish is a PUBLISH as the subscriber needs it; its slices point into
// the read buffer and are valid until the next read.
type publish struct {
	topic, payload []byte
	qos            byte
	id             uint16
	epoch, seq     []byte // edged's user properties; nil without
}

var errMalformed = errors.New("benchrig: malformed PUBLISH")

// readPublish reads one MQTT 5 PUBLISH from br into buf (grown as
// needed, returned for the next call) without allocating: paho's decoder
// makes a score of objects for each of edged's messages (one per user
// property string), a cost the subscriber would add to the gateway's
// column, not to the bridge's.
func readPublish(br *bufio.Reader, buf []byte) (publish, []byte, error) {
	var p publish
	h, err := br.ReadByte()
	if err != nil {
		return p, buf, err
	}
	p.qos = h >> 1 & 3
	n, err := binary.ReadUvarint(br) // MQTT's variable byte integer is a uvarint
	if err != nil || n > 1<<28 {
		return p, buf, errMalformed
	}
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	b := buf[:n]
	if _, err := io.ReadFull(br, b); err != nil {
		return p, buf, err
	}
	var ok bool
	if p.topic, b, ok = cutString(b); !ok {
		return p, buf, errMalformed
	}
	if p.qos > 0 {
		if len(b) < 2 {
			return p, buf, errMalformed
		}
		p.id, b = binary.BigEndian.Uint16(b), b[2:]
	}
	pl, k := binary.Uvarint(b)
	if k <= 0 || pl > uint64(len(b)-k) {
		return p, buf, errMalformed
	}
	props := b[k : k+int(pl)]
	p.payload = b[k+int(pl):]
	for len(props) > 0 {
		id := props[0]
		props = props[1:]
		var size int
		switch id {
		case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A:
			size = 1
		case 0x13, 0x21, 0x22, 0x23:
			size = 2
		case 0x02, 0x11, 0x18, 0x27:
			size = 4
		case 0x0B: // subscription identifier
			if _, size = binary.Uvarint(props); size <= 0 {
				return p, buf, errMalformed
			}
		case 0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F:
			if _, props, ok = cutString(props); !ok {
				return p, buf, errMalformed
			}
		case 0x26: // user property
			var key, value []byte
			if key, props, ok = cutString(props); ok {
				value, props, ok = cutString(props)
			}
			if !ok {
				return p, buf, errMalformed
			}
			switch string(key) {
			case "epoch":
				p.epoch = value
			case "seq":
				p.seq = value
			}
		default:
			return p, buf, errMalformed
		}
		if size > len(props) {
			return p, buf, errMalformed
		}
		props = props[size:]
	}
	return p, buf, nil
}

// cutString cuts a two-byte length-prefixed string or binary off b.
func cutString(b []byte) (s, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, b, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if n > len(b)-2 {
		return nil, b, false
	}
	return b[2 : 2+n], b[2+n:], true
}
