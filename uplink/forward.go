package uplink

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/edged/edged/uplink/wal"
)

// The forwarder speaks MQTT 5 through paho.golang's packet layer and keeps
// its own connection state, rather than through paho.Client or autopaho:
// it must resend from the first unacknowledged buffer record after every
// reconnect (never on the same connection), ack the buffer only for the
// contiguous PUBACKed prefix, and never keep a second in-memory queue.
// paho's session store would resend its own copies and autopaho's queue
// deletes on write, not on PUBACK.

// Reason codes of a PUBACK that no retry can fix: the message is
// dead-lettered (counted, one WARN) and the queue moves on.
var permanentPuback = map[byte]string{
	0x87: "not authorised",
	0x90: "topic name invalid",
	0x95: "packet too large",
	0x99: "payload format invalid",
}

var (
	errNoPuback = errors.New("uplink: no PUBACK in time; reconnecting to resend")
	errRefused  = errors.New("uplink: cloud refused a message for now")
	errReopened = errors.New("uplink: buffer reopened; starting over on it")
)

// fed is one buffer record handed from the feeder to the session.
type fed struct {
	seq uint64
	msg Message
	err error // the record did not decode
}

// pending is one message of the current connection, in send order.
type pending struct {
	seq  uint64
	pid  uint16
	done bool
	sent time.Time
}

// forward connects, runs sessions and reconnects until ctx ends.
func (u *Uplink) forward(ctx context.Context) {
	cur := u.buf()
	acked := cur.log.Stats().AckedSeq
	attempt := 0
	var recent []time.Time // connect attempts, for the storm guard
	failing := false
	for first := true; ctx.Err() == nil; first = false {
		if !first {
			if !u.sleep(ctx, u.backoff(attempt, recent)) {
				return
			}
		}
		now := u.clock.Now()
		recent = append(recent, now)
		for len(recent) > 0 && now.Sub(recent[0]) > u.stormWindow {
			recent = recent[1:]
		}
		nc, ca, err := u.dial(ctx)
		if err != nil {
			attempt++
			if ctx.Err() != nil {
				return
			}
			if !failing {
				u.log.Warn("uplink: cannot connect to the cloud broker; buffering and retrying with backoff", "url", u.opts.URL, "err", err)
				failing = true
			} else {
				u.log.Debug("uplink: connect failed", "err", err, "attempt", attempt)
			}
			continue
		}
		failing = false
		u.connects.Add(1)
		u.connected.Store(true)
		u.log.Info("uplink: connected", "url", u.opts.URL, "session_present", ca.SessionPresent, "backlog", u.buf().log.Stats().Backlog)
		if ws := u.buf(); ws != cur {
			acked = reconcileAcked(cur, ws, acked)
			cur = ws
		}
		var progressed bool
		acked, progressed, err = u.session(ctx, nc, ca, cur, acked)
		u.connected.Store(false)
		if errors.Is(err, errReopened) {
			attempt = 0
			u.log.Info("uplink: buffer reopened; resending from the first unacknowledged message", "acked_seq", acked)
			continue
		}
		if progressed && !errors.Is(err, errRefused) {
			attempt = 0
		} else {
			attempt++
		}
		if err != nil && ctx.Err() == nil {
			u.log.Warn("uplink: connection lost; resending from the first unacknowledged message", "err", err, "acked_seq", acked)
		}
	}
}

// reconcileAcked returns where to resume on a reopened buffer: where this
// process got to when it is the same epoch (telling the new log so),
// else the new log's own acked seq.
func reconcileAcked(old, ws *walState, acked uint64) uint64 {
	a := ws.log.Stats().AckedSeq
	if ws.epoch != old.epoch {
		return a
	}
	if acked > a {
		ws.log.Ack(acked)
		a = acked
	}
	return a
}

// backoff returns the wait before connect attempt number attempt+1:
// exponential with full jitter, capped at backoffMax, and never more than
// stormMax attempts per stormWindow however the jitter falls.
func (u *Uplink) backoff(attempt int, recent []time.Time) time.Duration {
	ceil := u.backoffMax
	if attempt < 30 {
		ceil = min(u.backoffBase<<attempt, u.backoffMax)
	}
	d := time.Duration(rand.Int64N(int64(ceil) + 1))
	if len(recent) >= u.stormMax {
		wait := recent[len(recent)-u.stormMax].Add(u.stormWindow).Sub(u.clock.Now())
		d = max(d, wait)
	}
	return d
}

// sleep waits d on the injected clock; false means ctx ended first.
func (u *Uplink) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := u.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// dial opens the connection and does the CONNECT/CONNACK exchange.
func (u *Uplink) dial(ctx context.Context) (net.Conn, *packets.Connack, error) {
	connectTimeout := u.connectTimeout
	dctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var nc net.Conn
	var err error
	if u.tlsConf != nil {
		d := tls.Dialer{Config: u.tlsConf}
		nc, err = d.DialContext(dctx, "tcp", u.addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(dctx, "tcp", u.addr)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("uplink: dial %s: %w", u.addr, err)
	}
	_ = nc.SetDeadline(time.Now().Add(connectTimeout))
	sei := uint32(u.opts.SessionExpiry / time.Second)
	cp := &packets.Connect{
		ProtocolName:    "MQTT",
		ProtocolVersion: 5,
		ClientID:        u.opts.ClientID,
		KeepAlive:       uint16(u.opts.KeepAlive / time.Second),
		CleanStart:      false,
		Properties:      &packets.Properties{SessionExpiryInterval: &sei},
		WillFlag:        true,
		WillTopic:       u.status,
		WillMessage:     []byte("offline"),
		WillQOS:         1,
		WillRetain:      true,
		WillProperties:  &packets.Properties{},
	}
	if u.opts.Username != "" {
		cp.UsernameFlag, cp.Username = true, u.opts.Username
	}
	if u.password != nil {
		cp.PasswordFlag, cp.Password = true, u.password
	}
	if _, err := cp.WriteTo(nc); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("uplink: send CONNECT: %w", err)
	}
	p, err := packets.ReadPacket(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("uplink: read CONNACK: %w", err)
	}
	ca, ok := p.Content.(*packets.Connack)
	if !ok {
		nc.Close()
		return nil, nil, fmt.Errorf("uplink: got %s instead of CONNACK", p.PacketType())
	}
	if ca.ReasonCode >= 0x80 {
		nc.Close()
		return nil, nil, fmt.Errorf("uplink: cloud refused the connection: %#x %s", ca.ReasonCode, ca.Reason())
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, ca, nil
}

// session sends buffer records after acked on one connection until it
// fails or ctx ends. It returns the new contiguous acked seq and whether
// any message was acknowledged.
func (u *Uplink) session(ctx context.Context, nc net.Conn, ca *packets.Connack, ws *walState, acked uint64) (uint64, bool, error) {
	window := u.opts.MaxInflight
	var maxPacket uint32
	ka := u.opts.KeepAlive
	if p := ca.Properties; p != nil {
		if p.ReceiveMaximum != nil && int(*p.ReceiveMaximum) < window && *p.ReceiveMaximum > 0 {
			window = int(*p.ReceiveMaximum)
		}
		if p.MaximumPacketSize != nil {
			maxPacket = *p.MaximumPacketSize
		}
		if p.ServerKeepAlive != nil {
			ka = time.Duration(*p.ServerKeepAlive) * time.Second
		}
	}

	// The helpers run until the session ends, whatever ctx does: a clean
	// stop still waits for PUBACKs.
	sctx, cancel := context.WithCancel(context.Background())
	feed := make(chan fed, window)
	acks := make(chan *packets.Puback, 256)
	rerr := make(chan error, 1)
	done := make(chan struct{}, 2)
	defer func() {
		cancel()
		nc.Close()
		<-done
		<-done
	}()
	go func() { defer func() { done <- struct{}{} }(); u.feed(sctx, ws.log, acked, feed) }()
	go func() { defer func() { done <- struct{}{} }(); u.read(sctx, nc, ka, acks, rerr) }()

	s := &sender{u: u, epoch: ws.epoch, w: bufio.NewWriterSize(nc, 32<<10), nc: nc, maxPacket: maxPacket, byPID: map[uint16]*pending{}}
	if err := s.status("online"); err != nil {
		return acked, false, err
	}
	progressed := false
	tick := time.NewTicker(min(time.Second, max(ka/2, 10*time.Millisecond)))
	defer tick.Stop()
	lastWrite := time.Now()
	stopping := false
	var stopBy time.Time
	ctxDone := ctx.Done()

	for {
		if stopping && s.outstanding == 0 {
			err := s.goodbye()
			return acked, progressed, err
		}
		var fc <-chan fed
		if !stopping && s.outstanding < window && len(s.fifo) < 4*window {
			fc = feed
		}
		select {
		case <-ctxDone:
			stopping, ctxDone = true, nil
			stopBy = time.Now().Add(u.drainWait)
		case f := <-fc:
			if err := s.send(f); err != nil {
				return acked, progressed, err
			}
		more:
			for s.outstanding < window && len(s.fifo) < 4*window {
				select {
				case f := <-feed:
					if err := s.send(f); err != nil {
						return acked, progressed, err
					}
				default:
					break more
				}
			}
			if n := s.popDone(); n != 0 {
				// QoS 0 and dead-lettered records at the front.
				acked = n
				ws.log.Ack(acked)
			}
			if err := s.flush(ka); err != nil {
				return acked, progressed, err
			}
			lastWrite = time.Now()
		case a := <-acks:
			var err error
			for {
				if err = s.ack(a); err != nil {
					break
				}
				select {
				case a = <-acks:
					continue
				default:
				}
				break
			}
			if n := s.popDone(); n != 0 {
				acked = n
				progressed = true
				ws.log.Ack(acked)
			}
			if err != nil {
				return acked, progressed, err
			}
		case err := <-rerr:
			return acked, progressed, err
		case <-ws.swapped:
			return acked, progressed, errReopened
		case now := <-tick.C:
			if stopping && now.After(stopBy) {
				return acked, progressed, s.goodbye()
			}
			if len(s.fifo) > 0 && !s.fifo[0].done && now.Sub(s.fifo[0].sent) > u.ackTimeout {
				return acked, progressed, errNoPuback
			}
			if ka > 0 && now.Sub(lastWrite) >= ka/2 {
				if _, err := (&packets.Pingreq{}).WriteTo(s.w); err != nil {
					return acked, progressed, err
				}
				if err := s.flush(ka); err != nil {
					return acked, progressed, err
				}
				lastWrite = now
			}
		}
	}
}

// sender is the write side of one connection.
type sender struct {
	u           *Uplink
	epoch       string
	w           *bufio.Writer
	nc          net.Conn
	maxPacket   uint32
	fifo        []*pending // send order; done entries are popped from the front
	byPID       map[uint16]*pending
	nextPID     uint16
	outstanding int // QoS 1 messages awaiting PUBACK
	props       [4]packets.User
}

func (s *sender) flush(ka time.Duration) error {
	if s.w.Buffered() == 0 {
		return nil
	}
	_ = s.nc.SetWriteDeadline(time.Now().Add(max(ka, 10*time.Second)))
	return s.w.Flush()
}

// send publishes one record, or dead-letters it when it cannot be sent.
func (s *sender) send(f fed) error {
	u := s.u
	p := &pending{seq: f.seq, done: true, sent: time.Now()}
	s.fifo = append(s.fifo, p)
	if f.err != nil {
		u.dropBadRecord.Add(1)
		u.log.Warn("uplink: skipping a buffer record that does not decode", "seq", f.seq, "err", f.err)
		return nil
	}
	m := &f.msg
	props := s.userProps(f.seq, m.Captured)
	if s.maxPacket > 0 && publishSize(m, props) > int(s.maxPacket) {
		s.deadLetter(f.seq, m.Topic, fmt.Sprintf("%d bytes is above the cloud's maximum packet size %d", publishSize(m, props), s.maxPacket))
		return nil
	}
	pub := &packets.Publish{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, Properties: &packets.Properties{User: props}}
	if m.QoS > 0 {
		pid := s.allocPID()
		pub.PacketID = pid
		p.pid, p.done = pid, false
		s.byPID[pid] = p
		s.outstanding++
	}
	if _, err := pub.WriteTo(s.w); err != nil {
		return err
	}
	u.sent.Add(1)
	return nil
}

func (s *sender) userProps(seq uint64, captured int64) []packets.User {
	s.props = [4]packets.User{
		{Key: "gw", Value: s.u.device},
		{Key: "epoch", Value: s.epoch},
		{Key: "seq", Value: strconv.FormatUint(seq, 10)},
		{Key: "ts", Value: time.Unix(0, captured).UTC().Format(time.RFC3339Nano)},
	}
	return s.props[:]
}

func (s *sender) allocPID() uint16 {
	for {
		s.nextPID++
		if s.nextPID == 0 {
			s.nextPID = 1
		}
		if _, used := s.byPID[s.nextPID]; !used {
			return s.nextPID
		}
	}
}

// ack handles one PUBACK.
func (s *sender) ack(a *packets.Puback) error {
	p, ok := s.byPID[a.PacketID]
	if !ok {
		return nil // a PUBACK for nothing we sent: ignore, as the spec allows
	}
	delete(s.byPID, a.PacketID)
	s.outstanding--
	s.u.lastPuback.Store(s.u.clock.Now().UnixNano())
	switch why, permanent := permanentPuback[a.ReasonCode]; {
	case a.ReasonCode < 0x80:
		p.done = true
		s.u.acked.Add(1)
	case permanent:
		p.done = true
		s.deadLetter(p.seq, "", fmt.Sprintf("PUBACK %#x %s", a.ReasonCode, why))
	default:
		return fmt.Errorf("%w: seq %d: PUBACK %#x %s", errRefused, p.seq, a.ReasonCode, a.Reason())
	}
	return nil
}

// popDone drops the done prefix of the FIFO and returns the newest seq it
// dropped, 0 if none.
func (s *sender) popDone() uint64 {
	var last uint64
	i := 0
	for i < len(s.fifo) && s.fifo[i].done {
		last = s.fifo[i].seq
		i++
	}
	if i > 0 {
		clear(s.fifo[:i])
		s.fifo = s.fifo[i:]
		if len(s.fifo) == 0 {
			s.fifo = s.fifo[:0:0]
		}
	}
	return last
}

func (s *sender) deadLetter(seq uint64, topic, why string) {
	n := s.u.deadLetters.Add(1)
	if s.u.deadWarned.CompareAndSwap(false, true) {
		s.u.log.Warn("uplink: the cloud cannot take a message; dead-lettered it and moved on (later ones are counted in dead_letters)", "seq", seq, "topic", topic, "why", why)
	} else {
		s.u.log.Debug("uplink: dead-lettered", "seq", seq, "why", why, "dead_letters", n)
	}
}

// status publishes the gateway's retained status on the cloud (QoS 0: the
// will covers the case that matters, a lost connection).
func (s *sender) status(v string) error {
	pub := &packets.Publish{Topic: s.u.status, Payload: []byte(v), Retain: true, Properties: &packets.Properties{}}
	if _, err := pub.WriteTo(s.w); err != nil {
		return err
	}
	return s.flush(0)
}

// goodbye ends a clean stop: status offline, then a normal DISCONNECT,
// which tells the broker not to publish the will.
func (s *sender) goodbye() error {
	if err := s.status("offline"); err != nil {
		return err
	}
	if _, err := (&packets.Disconnect{ReasonCode: 0, Properties: &packets.Properties{}}).WriteTo(s.w); err != nil {
		return err
	}
	return s.flush(0)
}

// feed reads the buffer after `after` and hands decoded records over in
// seq order.
func (u *Uplink) feed(ctx context.Context, lg *wal.Log, after uint64, out chan<- fed) {
	buf := make([]wal.Record, 0, 256)
	for {
		recs, err := lg.Read(ctx, after, cap(buf), buf)
		if err != nil {
			return
		}
		for _, r := range recs {
			m, derr := decodeBody(r.Body)
			m.Payload = bytes.Clone(m.Payload)
			select {
			case out <- fed{seq: r.Seq, msg: m, err: derr}:
			case <-ctx.Done():
				return
			}
			after = r.Seq
		}
		buf = recs
	}
}

// read reads packets from the cloud and hands PUBACKs to the session. It
// declares the link dead after 1.5 keep-alives of silence.
func (u *Uplink) read(ctx context.Context, nc net.Conn, ka time.Duration, acks chan<- *packets.Puback, rerr chan<- error) {
	br := bufio.NewReaderSize(nc, 16<<10)
	for {
		if ka > 0 {
			_ = nc.SetReadDeadline(time.Now().Add(ka * 3 / 2))
		}
		p, err := packets.ReadPacket(br)
		if err != nil {
			rerr <- fmt.Errorf("uplink: read: %w", err)
			return
		}
		switch c := p.Content.(type) {
		case *packets.Puback:
			select {
			case acks <- c:
			case <-ctx.Done():
				return
			}
		case *packets.Disconnect:
			rerr <- fmt.Errorf("uplink: cloud disconnected us: %#x %s", c.ReasonCode, c.Reason())
			return
		}
	}
}

// publishSize is the encoded size of the PUBLISH packet for m, to compare
// with the server's Maximum Packet Size before sending.
func publishSize(m *Message, props []packets.User) int {
	pl := 0
	for _, p := range props {
		pl += 1 + 2 + len(p.Key) + 2 + len(p.Value)
	}
	rem := 2 + len(m.Topic) + vbiLen(pl) + pl + len(m.Payload)
	if m.QoS > 0 {
		rem += 2
	}
	return 1 + vbiLen(rem) + rem
}

func vbiLen(n int) int {
	l := 1
	for n >= 128 {
		n >>= 7
		l++
	}
	return l
}
