package uplink

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/edged/edged/sensors"
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
	// errCut marks a session the cloud ended (DISCONNECT, connection
	// closed or reset): with errRefused, what counts towards
	// dead-lettering a message that fails every session.
	errCut = errors.New("uplink: the cloud ended the connection")
)

// maxIncoming is the Maximum Packet Size announced in CONNECT and enforced
// on every packet read: the cloud only sends small packets, and a damaged
// length must not make a 1 GB Pi allocate up to 256 MB.
const maxIncoming = 1 << 20

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
	sent time.Time // when its bytes were flushed to the socket; zero before
}

// sessionEnd is how one session ended.
type sessionEnd struct {
	acked      uint64 // the new contiguous acked seq
	progressed bool   // some message was acknowledged
	culprit    uint64 // the message the cloud refused, or the first unacknowledged one when it cut the connection; 0 if none
}

// forward connects, runs sessions and reconnects until ctx ends.
func (u *Uplink) forward(ctx context.Context) {
	cur := u.buf()
	acked := cur.log.Stats().AckedSeq
	attempt := 0
	var recent []time.Time // connect attempts, for the storm guard
	failing := false
	var stuck, skip uint64 // a message failing every session; the one to dead-letter
	stuckN := 0
	defer u.beat.Idle()
	for first := true; ctx.Err() == nil; first = false {
		// A backoff, a connect and a CONNACK wait at most.
		u.beat.Expect(u.backoffMax + u.connectTimeout + sensors.BeatSlack)
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
		nc, br, ca, err := u.dial(ctx)
		if err != nil {
			attempt++
			if ctx.Err() != nil {
				return
			}
			if !failing {
				u.log.Warn("uplink: cannot connect to the cloud broker; buffering and retrying with backoff", "url", u.opts.URL, "error", err)
				failing = true
			} else {
				u.log.Debug("uplink: connect failed", "error", err, "attempt", attempt)
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
		end, err := u.session(ctx, nc, br, ca, cur, acked, skip)
		acked = end.acked
		u.connected.Store(false)
		if skip != 0 && acked >= skip {
			skip = 0
		}
		if errors.Is(err, errReopened) {
			attempt = 0
			u.log.Info("uplink: buffer reopened; resending from the first unacknowledged message", "acked_seq", acked)
			continue
		}
		// A message the cloud refuses or cuts the connection over,
		// session after session with no progress, would block the
		// queue forever (DESIGN 4.6): dead-letter it.
		switch {
		case end.progressed || end.culprit == 0 || !errors.Is(err, errRefused) && !errors.Is(err, errCut):
			stuck, stuckN = 0, 0
		case end.culprit == stuck:
			stuckN++
		default:
			stuck, stuckN = end.culprit, 1
		}
		if stuckN >= u.poisonAfter {
			skip, stuck, stuckN = stuck, 0, 0
		}
		if end.progressed && !errors.Is(err, errRefused) {
			attempt = 0
		} else {
			attempt++
		}
		if err != nil && ctx.Err() == nil {
			u.log.Warn("uplink: connection lost; resending from the first unacknowledged message", "error", err, "acked_seq", acked)
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
func (u *Uplink) dial(ctx context.Context) (net.Conn, *bufio.Reader, *packets.Connack, error) {
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
		return nil, nil, nil, fmt.Errorf("uplink: dial %s: %w", u.addr, err)
	}
	_ = nc.SetDeadline(time.Now().Add(connectTimeout))
	// A stop must not wait for a cloud that accepts TCP and never
	// answers: unblock the CONNECT/CONNACK exchange at once.
	unwatch := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	sei := uint32(u.opts.SessionExpiry / time.Second)
	maxIn := uint32(maxIncoming)
	cp := &packets.Connect{
		ProtocolName:    "MQTT",
		ProtocolVersion: 5,
		ClientID:        u.opts.ClientID,
		KeepAlive:       uint16(u.opts.KeepAlive / time.Second),
		CleanStart:      false,
		Properties:      &packets.Properties{SessionExpiryInterval: &sei, MaximumPacketSize: &maxIn},
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
		unwatch()
		nc.Close()
		return nil, nil, nil, fmt.Errorf("uplink: send CONNECT: %w", err)
	}
	br := bufio.NewReaderSize(nc, 16<<10)
	p, err := readPacket(br, maxIncoming)
	if !unwatch() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("uplink: read CONNACK: %w", err)
	}
	ca, ok := p.Content.(*packets.Connack)
	if !ok {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("uplink: got %s instead of CONNACK", p.PacketType())
	}
	if ca.ReasonCode >= 0x80 {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("uplink: cloud refused the connection: %#x %s", ca.ReasonCode, ca.Reason())
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, br, ca, nil
}

// session sends buffer records after acked on one connection until it
// fails or ctx ends; skip is a seq to dead-letter instead of sending.
func (u *Uplink) session(ctx context.Context, nc net.Conn, br *bufio.Reader, ca *packets.Connack, ws *walState, acked, skip uint64) (sessionEnd, error) {
	end := sessionEnd{acked: acked}
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
	done := make(chan struct{}, 3)
	defer func() {
		cancel()
		nc.Close()
		<-done
		<-done
		<-done
	}()
	s := &sender{u: u, epoch: ws.epoch, w: bufio.NewWriterSize(nc, 32<<10), nc: nc, ka: ka, maxPacket: maxPacket, skip: skip, byPID: map[uint16]*pending{}}
	go func() { defer func() { done <- struct{}{} }(); u.feed(sctx, ws.log, acked, feed) }()
	go func() { defer func() { done <- struct{}{} }(); u.read(sctx, nc, br, ka, acks, rerr) }()
	// The watchdog closes the connection when a stop runs out of time:
	// the loop may be blocked in a write to a cloud that stopped reading
	// and cannot see the stop itself.
	go func() {
		defer func() { done <- struct{}{} }()
		select {
		case <-sctx.Done():
			return
		case <-ctx.Done():
		}
		_, hardBy := u.stopBudget(time.Now())
		t := time.NewTimer(time.Until(hardBy))
		defer t.Stop()
		select {
		case <-sctx.Done():
		case <-t.C:
			nc.Close()
		}
	}()
	fail := func(err error) (sessionEnd, error) {
		if errors.Is(err, errRefused) {
			end.culprit = s.refused
		} else if len(s.fifo) > 0 && !s.fifo[0].sent.IsZero() {
			end.culprit = s.fifo[0].seq
		}
		return end, err
	}

	if err := s.status("online"); err != nil {
		return fail(err)
	}
	tick := time.NewTicker(min(time.Second, max(ka/2, 10*time.Millisecond)))
	defer tick.Stop()
	var drainC <-chan time.Time
	lastWrite := time.Now()
	stopping := false
	ctxDone := ctx.Done()

	for {
		// The tick comes every second at most; a write may block for
		// its deadline (see sender.deadline: a minute covers 256 KiB on
		// a slow link) before the loop is back.
		u.beat.Expect(u.ackTimeout + time.Minute + sensors.BeatSlack)
		if stopping && s.outstanding == 0 {
			return end, s.goodbye()
		}
		// The window bounds the FIFO, not only the unacknowledged
		// messages: PUBACKed ones waiting behind an unacknowledged head
		// are resent after a reconnect too, so at most max_inflight
		// messages are ever sent twice.
		var fc <-chan fed
		if !stopping && len(s.fifo) < window {
			fc = feed
		}
		select {
		case <-ctxDone:
			stopping, ctxDone = true, nil
			drainBy, hardBy := u.stopBudget(time.Now())
			s.hardBy = hardBy
			t := time.NewTimer(time.Until(drainBy))
			defer t.Stop()
			drainC = t.C
		case <-drainC:
			return end, s.goodbye()
		case f := <-fc:
			if err := s.send(f); err != nil {
				return fail(err)
			}
		more:
			for len(s.fifo) < window {
				select {
				case f := <-feed:
					if err := s.send(f); err != nil {
						return fail(err)
					}
				default:
					break more
				}
			}
			if err := s.flush(); err != nil {
				return fail(err)
			}
			if n := s.popDone(); n != 0 {
				// QoS 0 and dead-lettered records at the front.
				end.acked = n
				ws.log.Ack(n)
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
				end.acked = n
				end.progressed = true
				ws.log.Ack(n)
			}
			if err != nil {
				return fail(err)
			}
		case err := <-rerr:
			// PUBACKs read before the error still count: a cloud that
			// acknowledges and then closes (Mosquitto 2.0.11 after a
			// denied publish) must not make them be resent.
			for more := true; more; {
				select {
				case a := <-acks:
					if aerr := s.ack(a); aerr != nil {
						err = aerr
						more = false
					}
				default:
					more = false
				}
			}
			if n := s.popDone(); n != 0 {
				end.acked = n
				end.progressed = true
				ws.log.Ack(n)
			}
			return fail(err)
		case <-ws.swapped:
			return end, errReopened
		case now := <-tick.C:
			// The ack timeout runs from when the message's bytes left,
			// not from when it was queued: a big message on a slow link
			// may take longer than the timeout to write.
			if len(s.fifo) > 0 && !s.fifo[0].done && !s.fifo[0].sent.IsZero() && now.Sub(s.fifo[0].sent) > u.ackTimeout {
				return fail(errNoPuback)
			}
			if ka > 0 && now.Sub(lastWrite) >= ka/2 {
				if _, err := (&packets.Pingreq{}).WriteTo(s.w); err != nil {
					return fail(err)
				}
				if err := s.flush(); err != nil {
					return fail(err)
				}
				lastWrite = now
			}
		}
	}
}

// stopBudget splits what is left of a stop: PUBACKs of messages in flight
// are awaited until drainBy, and no write may block past hardBy. With a
// deadline on Close's context, both fit inside it.
func (u *Uplink) stopBudget(now time.Time) (drainBy, hardBy time.Time) {
	drainBy = now.Add(u.drainWait)
	hardBy = drainBy.Add(time.Second)
	if ns := u.stopBy.Load(); ns != 0 {
		left := time.Unix(0, ns).Sub(now)
		if d := now.Add(left / 2); d.Before(drainBy) {
			drainBy = d
		}
		if d := now.Add(left * 3 / 4); d.Before(hardBy) {
			hardBy = d
		}
	}
	return drainBy, hardBy
}

// sender is the write side of one connection.
type sender struct {
	u           *Uplink
	epoch       string
	w           *bufio.Writer
	nc          net.Conn
	ka          time.Duration
	hardBy      time.Time // while stopping: no write may block past it
	maxPacket   uint32
	skip        uint64     // a seq to dead-letter instead of sending
	refused     uint64     // the seq of a transient PUBACK refusal
	fifo        []*pending // send order; done entries are popped from the front
	byPID       map[uint16]*pending
	nextPID     uint16
	outstanding int // QoS 1 messages awaiting PUBACK
	props       [4]packets.User
}

// deadline returns the write deadline for n more bytes: the ack timeout
// plus one second per 8 KiB (a slow cellular link), capped while stopping.
func (s *sender) deadline(n int) time.Time {
	d := time.Now().Add(max(s.ka, 10*time.Second) + time.Duration(n>>13)*time.Second)
	if !s.hardBy.IsZero() && d.After(s.hardBy) {
		d = s.hardBy
	}
	return d
}

// flush writes out the buffered packets, every write under a deadline,
// and stamps the messages it completed as sent.
func (s *sender) flush() error {
	if s.w.Buffered() > 0 {
		_ = s.nc.SetWriteDeadline(s.deadline(s.w.Buffered()))
		if err := s.w.Flush(); err != nil {
			return err
		}
	}
	now := time.Now()
	for i := len(s.fifo) - 1; i >= 0 && s.fifo[i].sent.IsZero(); i-- {
		s.fifo[i].sent = now
	}
	return nil
}

// send publishes one record, or dead-letters it when it cannot be sent.
func (s *sender) send(f fed) error {
	u := s.u
	p := &pending{seq: f.seq, done: true}
	s.fifo = append(s.fifo, p)
	if f.err != nil {
		u.dropBadRecord.Add(1)
		u.log.Warn("uplink: skipping a buffer record that does not decode", "seq", f.seq, "error", f.err)
		return nil
	}
	m := &f.msg
	if f.seq == s.skip {
		s.deadLetter(f.seq, m.Topic, fmt.Sprintf("the cloud refused it or ended the connection over it %d sessions in a row", s.u.poisonAfter))
		return nil
	}
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
	// A packet larger than the buffer goes straight to the socket.
	_ = s.nc.SetWriteDeadline(s.deadline(s.w.Buffered() + len(m.Payload)))
	if _, err := pub.WriteTo(s.w); err != nil {
		return err
	}
	u.sent.Add(1)
	if s.epoch == u.highEpoch && f.seq <= u.highSeq {
		u.resent.Add(1)
	} else {
		u.highSeq, u.highEpoch = f.seq, s.epoch
	}
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
		s.refused = p.seq
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
	_ = s.nc.SetWriteDeadline(s.deadline(s.w.Buffered() + len(pub.Payload)))
	if _, err := pub.WriteTo(s.w); err != nil {
		return err
	}
	return s.flush()
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
	return s.flush()
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
// declares the link dead after 1.5 keep-alives of silence. On an error it
// closes the connection, so a session blocked in a write sees it too.
func (u *Uplink) read(ctx context.Context, nc net.Conn, br *bufio.Reader, ka time.Duration, acks chan<- *packets.Puback, rerr chan<- error) {
	for {
		if ka > 0 {
			_ = nc.SetReadDeadline(time.Now().Add(ka * 3 / 2))
		}
		p, err := readPacket(br, maxIncoming)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, errPacketTooLarge) {
				err = fmt.Errorf("%w: %w", errCut, err)
			}
			nc.Close()
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
			nc.Close()
			rerr <- fmt.Errorf("%w: DISCONNECT %#x %s", errCut, c.ReasonCode, c.Reason())
			return
		}
	}
}

var errPacketTooLarge = errors.New("uplink: packet from the cloud above the maximum packet size")

// readPacket reads one packet, refusing one whose remaining length is
// above max before anything is allocated for it.
func readPacket(br *bufio.Reader, max int) (*packets.ControlPacket, error) {
	n, mul := 0, 1
	for i := 1; i <= 4; i++ {
		b, err := br.Peek(i + 1)
		if err != nil {
			if err == io.EOF && len(b) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		n += int(b[i]&0x7f) * mul
		mul <<= 7
		if b[i]&0x80 == 0 {
			break
		}
	}
	if n > max {
		return nil, fmt.Errorf("%w: %d bytes", errPacketTooLarge, n)
	}
	return packets.ReadPacket(br)
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
