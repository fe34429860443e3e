package uplink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sockio"
	"github.com/edged/edged/uplink/wal"
)

// Reason codes of a PUBACK that no retry can fix: the message is
// dead-lettered (counted, one WARN) and the queue moves on.
var permanentPuback = map[byte]string{
	0x87: "not authorised",
	0x90: "topic name invalid",
	0x95: "packet too large",
	0x99: "payload format invalid",
}

// connectionReason holds the DISCONNECT reason codes that name a cause on
// the cloud's side (load, quotas, another client, an operator), not the
// message in flight: such a cut does not count towards dead-lettering it.
var connectionReason = map[byte]bool{
	0x89: true, // server busy
	0x8B: true, // server shutting down
	0x8E: true, // session taken over
	0x96: true, // message rate too high
	0x97: true, // quota exceeded
	0x98: true, // administrative action
	0x9C: true, // use another server
	0x9D: true, // server moved
	0x9F: true, // connection rate exceeded
	0xA0: true, // maximum connect time
}

// pubackNoSubscribers is the PUBACK reason "no matching subscribers": the
// cloud accepted the message and delivered it to nobody.
const pubackNoSubscribers = 0x10

var (
	errNoPuback = errors.New("uplink: no PUBACK in time; reconnecting to resend")
	errRefused  = errors.New("uplink: cloud refused a message for now")
	errReopened = errors.New("uplink: buffer reopened; starting over on it")
	// errCut marks a session the cloud ended (DISCONNECT, connection
	// closed or reset): with errRefused, what counts towards
	// dead-lettering a message that fails every session.
	errCut = errors.New("uplink: the cloud ended the connection")
)

// sessionEnd is how one session ended.
type sessionEnd struct {
	acked      uint64 // the new contiguous acked seq
	progressed bool   // some message was acknowledged
	culprit    uint64 // the message the cloud refused, or the first unacknowledged one when it cut the connection; 0 if none
}

// session forwards buffer records over one connection. The reader
// (readLoop) applies PUBACKs, acknowledges the buffer and sends
// keep-alives. Whoever holds fmu feeds: reads buffer records and writes
// PUBLISHes while the window has room. On a plain TCP connection that is
// mostly the goroutine that made a record readable (a capture's) or freed
// room (the reader), inline, with non-blocking writes (see signal): a
// message then leaves without waking any goroutine. The session's own
// goroutine (feed) feeds at the start, and whenever an inline feed could
// not finish without waiting: a write the socket would not take whole, a
// buffer read that failed.
type session struct {
	u         *Uplink
	ws        *walState
	nc        net.Conn
	br        *bufio.Reader
	ka        time.Duration
	maxPacket uint32
	skip      uint64 // a seq to dead-letter instead of sending
	restamped []byte // scratch for a corrected payload (appendPublish copies it)

	wmu       sync.Mutex     // one writer on the socket at a time
	torn      bool           // under wmu: a packet was written in part; the rest is first in out
	sock      *sockio.Writer // the TCP socket for inline writes; nil for TLS
	lastWrite atomic.Int64   // unix ns of the last completed write
	lastPing  time.Time      // when the reader last sent a PINGREQ; the reader's own

	mu       sync.Mutex // guards win, end, refused, err, watchdog, over
	win      *inflight
	end      sessionEnd
	refused  uint64 // the seq of a transient PUBACK refusal
	err      error  // why the session failed; the first reason wins
	watchdog *time.Timer
	over     bool

	room  chan struct{} // one slot: the reader freed room in the window
	dead  chan struct{} // closed when the session failed
	quit  context.CancelFunc
	rdone chan struct{} // closed when the reader returned

	// The feed, under fmu.
	fmu      sync.Mutex
	next     uint64       // the last seq taken into the window
	recs     []wal.Record // read buffer
	inline   bool         // the holder must not wait: non-blocking writes only
	feedOver bool         // the feed ended: nothing more is sent
	props    *props
	out      []byte // PUBLISHes encoded, not yet written
	outN     int    // how many

	pending atomic.Bool   // a record or room may be there for the feed
	kick    chan struct{} // one slot: the feed needs the session's goroutine

	// pace keeps the publishes within the preset's rate (nil: no limit);
	// under fmu, as paced: the last pump stopped for it. waitingPace is
	// set while the session's goroutine waits for it: signal then leaves
	// the record to that wait.
	pace        *pacer
	paced       bool
	waitingPace atomic.Bool
}

// session sends buffer records after acked on one connection until it
// fails or ctx ends; skip is a seq to dead-letter instead of sending. A
// stop (ctx) still waits a while for PUBACKs of messages in flight.
func (u *Uplink) session(ctx context.Context, nc net.Conn, br *bufio.Reader, ca *packets.Connack, ws *walState, acked, skip uint64) (sessionEnd, error) {
	window := u.opts.MaxInflight
	s := &session{u: u, ws: ws, nc: nc, br: br, ka: u.opts.KeepAlive, skip: skip,
		end: sessionEnd{acked: acked}, room: make(chan struct{}, 1), dead: make(chan struct{}), rdone: make(chan struct{}),
		props: newProps(u.device, ws.epoch), kick: make(chan struct{}, 1)}
	s.sock = sockio.For(nc)
	if p := ca.Properties; p != nil {
		if p.ReceiveMaximum != nil && int(*p.ReceiveMaximum) < window && *p.ReceiveMaximum > 0 {
			window = int(*p.ReceiveMaximum)
		}
		if p.MaximumPacketSize != nil {
			s.maxPacket = *p.MaximumPacketSize
		}
		if p.RetainAvailable != nil && *p.RetainAvailable == 0 {
			u.retainUnavailable()
		}
		if p.ServerKeepAlive != nil {
			s.ka = time.Duration(*p.ServerKeepAlive) * time.Second
		}
	}
	s.win = newInflight(window)
	s.lastWrite.Store(time.Now().UnixNano())
	if p := u.preset; p != nil && p.MaxPublishRate > 0 {
		s.pace = newPacer(p.MaxPublishRate, u.clock.Now())
	}

	fctx, quit := context.WithCancel(ctx) // feeding ends on a stop or a failure
	s.quit = quit
	unwatch := context.AfterFunc(ctx, s.armWatchdog)
	go s.readLoop()
	defer func() {
		unwatch()
		s.mu.Lock()
		s.over = true
		if s.watchdog != nil {
			s.watchdog.Stop()
		}
		s.mu.Unlock()
		quit()
		nc.Close()
		<-s.rdone
	}()

	if err := s.writePacket(&packets.Publish{Topic: u.status, Payload: []byte("online"), Retain: !u.noRetain.Load(), Properties: &packets.Properties{}}); err != nil {
		return s.fail(err)
	}
	if err := s.feed(fctx, acked); err != nil {
		return s.fail(err)
	}
	if err := s.failed(); err != nil {
		return s.fail(err)
	}
	return s.leave()
}

// leave ends a stop: it waits for the PUBACKs of messages in flight, as
// long as the stop's budget allows, then says goodbye.
func (s *session) leave() (sessionEnd, error) {
	drainBy, _ := s.u.stopBudget(time.Now())
	t := time.NewTimer(time.Until(drainBy))
	defer t.Stop()
	for s.outstanding() > 0 {
		select {
		case <-s.room:
		case <-t.C:
			return s.result(s.goodbye())
		case <-s.dead:
			return s.fail(s.failed())
		}
	}
	return s.result(s.goodbye())
}

// armWatchdog runs when a stop begins: it closes the connection once the
// stop runs out of time, as the writer may be blocked in a write to a
// cloud that stopped reading and cannot see the stop itself.
func (s *session) armWatchdog() {
	_, hardBy := s.u.stopBudget(time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.over {
		s.watchdog = time.AfterFunc(time.Until(hardBy), func() { s.nc.Close() })
	}
}

// feed sends buffer records while the window has room until ctx ends
// (nil) or the session fails. It feeds itself when there is a backlog or
// an inline feed kicks it, and lets signal feed otherwise.
func (s *session) feed(ctx context.Context, next uint64) (err error) {
	s.mu.Lock()
	room := s.win.room()
	s.mu.Unlock()
	s.fmu.Lock()
	s.next, s.recs = next, make([]wal.Record, 0, min(room, 256))
	s.fmu.Unlock()
	s.u.feeding.Store(s)
	defer func() {
		s.u.feeding.CompareAndSwap(s, nil)
		s.fmu.Lock()
		if err == nil && len(s.out) > 0 {
			// The rest of an inline write goes before the goodbye.
			s.inline = false
			err = s.flush()
		}
		s.feedOver = true
		s.fmu.Unlock()
	}()
	for {
		s.fmu.Lock()
		s.pending.Store(false)
		s.inline = false
		err := s.pump()
		var pace sensors.Timer
		if s.paced {
			pace = s.u.clock.NewTimer(s.pace.wait())
		}
		s.fmu.Unlock()
		var retry, paceC <-chan time.Time
		if pace != nil {
			paceC = pace.C()
			s.waitingPace.Store(true)
		}
		switch {
		case errors.Is(err, wal.ErrUnavailable):
			retry = time.After(readRetry)
		case errors.Is(err, wal.ErrClosed):
			// Being reopened: wait for the new buffer.
			select {
			case <-s.ws.swapped:
				return errReopened
			case <-ctx.Done():
				return nil
			}
		case err != nil:
			return err
		}
		if s.pending.Load() && pace == nil {
			continue
		}
		stopPace := func() {
			if pace != nil {
				s.waitingPace.Store(false)
				pace.Stop()
			}
		}
		select {
		case <-s.kick:
		case <-retry:
		case <-paceC:
		case <-ctx.Done():
			stopPace()
			return nil
		case <-s.ws.swapped:
			stopPace()
			return errReopened
		}
		stopPace()
	}
}

// readRetry is how soon the feed reads again after the buffer could not
// open a segment.
const readRetry = 250 * time.Millisecond

// signal tells the feed that a record became readable or the window
// gained room. On a plain TCP connection it feeds right here if no one
// else is feeding (whoever is sees pending and looks again), never
// waiting: what cannot be sent without waiting is left to the session's
// goroutine. So a live message goes from the capture to the socket in
// the capturing goroutine, and the next one after a PUBACK in the
// reader's.
func (s *session) signal() {
	if s.waitingPace.Load() {
		s.pending.Store(true) // the paced wait sends it
		return
	}
	if s.sock == nil {
		s.wake()
		return
	}
	s.pending.Store(true)
	for s.pending.Load() && s.fmu.TryLock() {
		s.pending.Store(false)
		s.inline = true
		err := s.pump()
		handOff := err != nil || len(s.out) > 0 || s.paced
		s.fmu.Unlock()
		if handOff {
			s.wake()
			return
		}
	}
}

// wake has the session's goroutine feed.
func (s *session) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// pump sends what an inline write left, then buffer records after
// s.next while the window has room. Inline, it stops at the first write
// the socket does not take whole. Call with fmu held.
func (s *session) pump() error {
	s.paced = false
	if s.feedOver {
		return nil
	}
	if err := s.flush(); err != nil || len(s.out) > 0 {
		return err
	}
	for {
		s.mu.Lock()
		room := s.win.room()
		s.mu.Unlock()
		if room == 0 {
			return nil
		}
		if s.pace != nil {
			n := s.pace.available(s.u.clock.Now())
			if n == 0 {
				s.paced = true
				return nil
			}
			room = min(room, n)
		}
		recs, err := s.ws.log.ReadReady(s.next, min(room, cap(s.recs)), s.recs)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return nil
		}
		if s.pace != nil {
			s.pace.take(len(recs))
		}
		for i := range recs {
			if err := s.publish(&recs[i]); err != nil {
				return err
			}
			s.next = recs[i].Seq
		}
		s.recs = recs
		if err := s.flush(); err != nil || len(s.out) > 0 {
			return err
		}
	}
}

// unsyncedMark is how a payload says its stamp was taken before the wall
// clock was trusted (pipeline's readings).
var unsyncedMark = []byte(`"clock":"unsynced"`)

// publish encodes one buffer record into s.out, or dead-letters it when
// it cannot be sent.
func (s *session) publish(r *wal.Record) error {
	u := s.u
	b, err := parseBody(r.Body)
	if err != nil {
		u.dropBadRecord.Add(1)
		u.log.Warn("skipping a buffer record that does not decode", "seq", r.Seq, "error", err)
		s.addDone(r.Seq)
		return nil
	}
	if r.Seq == s.skip {
		s.addDone(r.Seq)
		s.deadLetter(r.Seq, string(b.topic), fmt.Sprintf("the cloud refused it or ended the connection over it %d sessions in a row", u.poisonAfter))
		return nil
	}
	captured, unsynced := b.captured, b.unsynced
	if unsynced && u.trust != nil {
		// Captured before the wall clock was trusted: map the stamp to
		// wall time now, if the clock is trusted and the stamp is of
		// this boot (README "Clock"). The buffer keeps the record as it
		// was: correcting on the way out needs no rewrite of the disk.
		if t, ok := u.trust.Correct(b.boot, b.sinceBoot); ok {
			captured, unsynced = t.UnixNano(), false
			if u.restamp != nil {
				if p, ok := u.restamp(s.restamped[:0], b.payload); ok {
					s.restamped, b.payload = p, p
				}
			}
		}
	}
	if !b.unsynced && u.restamp != nil && bytes.Contains(b.payload, unsyncedMark) {
		// A reading sampled before the clock was trusted and captured
		// after: its payload carries the reading's stamp, the record
		// none (README "Clock").
		if p, ok := u.restamp(s.restamped[:0], b.payload); ok {
			s.restamped, b.payload = p, p
		}
	}
	props := s.props.forMessage(r.Seq, captured, unsynced)
	if n := publishLen(len(b.topic), len(b.payload), len(props), b.qos); s.maxPacket > 0 && uint64(n) > uint64(s.maxPacket) {
		s.addDone(r.Seq)
		s.deadLetter(r.Seq, string(b.topic), fmt.Sprintf("%d bytes is above the cloud's maximum packet size %d", n, s.maxPacket))
		return nil
	}
	// Resent: a seq at or below the highest sent in this epoch goes out
	// again (after a reconnect or a reopened buffer).
	// It carries DUP: the cloud keeps our session (Clean Start 0), and
	// MQTT 5 (3.3.1.1) asks for DUP on a PUBLISH sent again.
	dup := s.ws.epoch == u.highEpoch && r.Seq <= u.highSeq
	if dup {
		u.resent.Add(1)
	} else {
		u.highSeq, u.highEpoch = r.Seq, s.ws.epoch
	}
	var pid uint16
	s.mu.Lock()
	if b.qos > 0 {
		pid = s.win.add(r.Seq)
	} else {
		s.win.addDone(r.Seq)
	}
	s.mu.Unlock()
	s.out = appendPublish(s.out, b.topic, b.payload, props, b.qos, b.retain && !u.noRetain.Load(), dup, pid)
	s.outN++
	if len(s.out) >= 32<<10 {
		return s.flush()
	}
	return nil
}

// addDone adds a record that needs no PUBACK and acknowledges the buffer
// past it if it is at the front.
func (s *session) addDone(seq uint64) {
	s.mu.Lock()
	s.win.addDone(seq)
	s.mu.Unlock()
}

// flush writes the encoded PUBLISHes, stamps them as sent and
// acknowledges the buffer for QoS 0 and dead-lettered records at the
// front. Inline, what the socket does not take stays in out, and nothing
// is stamped until all of it has left.
func (s *session) flush() error {
	if len(s.out) > 0 {
		if s.inline {
			if n := s.writeInline(s.out); n < len(s.out) {
				s.out = s.out[:copy(s.out, s.out[n:])]
				return nil
			}
		} else if err := s.write(s.out); err != nil {
			return err
		}
		if cap(s.out) > 256<<10 {
			s.out = nil // a large message passed; do not keep its buffer
		}
		s.out = s.out[:0]
		s.u.sent.Add(uint64(s.outN))
		s.outN = 0
	}
	now := time.Now()
	s.mu.Lock()
	s.win.sent(now)
	if n := s.win.popDone(); n != 0 {
		s.end.acked = n
		s.end.progressed = s.end.progressed || s.win.answered // PUBACKs that came before the stamp
		s.ws.log.Ack(n)
	}
	s.mu.Unlock()
	return nil
}

// write writes b under a deadline: the ack timeout plus one second per
// 8 KiB (a slow cellular link). A stop's watchdog closes the connection
// if that is too long.
func (s *session) write(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(b)
}

// writeLocked is write with wmu held.
func (s *session) writeLocked(b []byte) error {
	_ = s.nc.SetWriteDeadline(time.Now().Add(max(s.ka, 10*time.Second) + time.Duration(len(b)>>13)*time.Second))
	if _, err := s.nc.Write(b); err != nil {
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			// Reset or closed: the writer may see the cloud's cut
			// before the reader does, and it counts the same.
			err = fmt.Errorf("%w: %w", errCut, err)
		}
		return err
	}
	s.torn = false
	if s.sock != nil {
		_ = s.nc.SetWriteDeadline(time.Time{}) // a deadline past fails inline writes
	}
	s.lastWrite.Store(time.Now().UnixNano())
	return nil
}

// writeInline writes what the socket takes of b at once, without
// waiting, and returns how much that was: 0 when another writer holds
// the socket or the write failed (the session's goroutine then writes
// the rest under a deadline, or meets the error).
func (s *session) writeInline(b []byte) int {
	if !s.wmu.TryLock() {
		return 0
	}
	defer s.wmu.Unlock()
	n := s.sock.Try(b)
	if n > 0 {
		s.torn = n < len(b)
		s.lastWrite.Store(time.Now().UnixNano())
	}
	return n
}

type writerTo interface {
	WriteTo(w io.Writer) (int64, error)
}

// writePacket writes one packet encoded by paho.
func (s *session) writePacket(p writerTo) error {
	var b bytes.Buffer
	if _, err := p.WriteTo(&b); err != nil {
		return err
	}
	return s.write(b.Bytes())
}

// goodbye ends a clean stop: status offline, then a normal DISCONNECT,
// which tells the broker not to publish the will. The status is QoS 0:
// the will covers the case that matters, a lost connection.
func (s *session) goodbye() error {
	if err := s.paceGoodbye(); err != nil {
		return err
	}
	if err := s.writePacket(&packets.Publish{Topic: s.u.status, Payload: []byte("offline"), Retain: !s.u.noRetain.Load(), Properties: &packets.Properties{}}); err != nil {
		return err
	}
	return s.writePacket(&packets.Disconnect{ReasonCode: 0, Properties: &packets.Properties{}})
}

// paceGoodbye waits, under a preset's rate limit, until the "offline"
// status may go: it counts like any publish ("online" is budgeted in
// newPacer). At most one publish's worth; the stop's watchdog ends the
// connection, and the wait, if the stop runs out of time.
func (s *session) paceGoodbye() error {
	if s.pace == nil {
		return nil
	}
	s.fmu.Lock() // the feed is over; an inline signal may still look
	var d time.Duration
	if s.pace.available(s.u.clock.Now()) == 0 {
		d = s.pace.per - s.pace.credit
	}
	s.fmu.Unlock()
	if d <= 0 {
		return nil
	}
	t := s.u.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-s.dead:
		return s.failed()
	}
}

func (s *session) outstanding() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.win.outstanding
}

// fail ends the session with err (the first reason given wins): the
// writer stops feeding and a blocked read or write returns.
func (s *session) fail(err error) (sessionEnd, error) {
	s.mu.Lock()
	if s.err == nil && err != nil {
		s.err = err
		close(s.dead)
	}
	err = s.err
	s.mu.Unlock()
	s.quit()
	s.nc.Close()
	return s.result(err)
}

func (s *session) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// result returns how the session ended: err, and the message to blame
// for it if the cloud refused one or cut the connection.
func (s *session) result(err error) (sessionEnd, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	end := s.end
	if err == nil {
		return end, nil
	}
	if errors.Is(err, errRefused) {
		end.culprit = s.refused
	} else if p, ok := s.win.first(); ok && !p.sent.IsZero() {
		end.culprit = p.seq
	}
	return end, err
}

// readLoop reads packets from the cloud and applies PUBACKs until the
// connection fails or closes. Between packets it checks, at least once a
// tick, the ack timeout (from when the oldest awaited message's last byte
// left, not from when it was queued: a big message on a slow link may
// take longer than the timeout to write), the keep-alive (a PINGREQ after
// half of it without a write or without a read) and a dead link (1.5
// keep-alives without a packet).
func (s *session) readLoop() {
	defer close(s.rdone)
	tick := time.Second
	if s.ka > 0 {
		tick = min(tick, max(s.ka/2, 10*time.Millisecond))
	}
	lastRead := time.Now()
	seen := 0 // bytes buffered at the last tick: a packet arriving slowly is not silence
	warned := false
	lastTick := lastRead
	for {
		// The reader comes round every tick; a PINGREQ it writes may
		// block for its write deadline (a minute at most).
		s.u.beat.Expect(s.u.ackTimeout + time.Minute + sensors.BeatSlack)
		// A cloud that sends packets more often than the tick must not
		// keep the checks from running.
		if now := time.Now(); now.Sub(lastTick) >= tick {
			if err := s.onTick(now, lastRead); err != nil {
				s.fail(err)
				return
			}
			lastTick = now
		}
		if s.br.Buffered() == 0 {
			_ = s.nc.SetReadDeadline(time.Now().Add(tick))
		}
		n, err := packetLen(s.br, maxIncoming)
		if err == nil && n <= s.br.Size() {
			_, err = s.br.Peek(n) // a timeout leaves a partial packet in place
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			now := time.Now()
			if k := s.br.Buffered(); k != seen {
				lastRead, seen = now, k
			}
			_ = s.nc.SetReadDeadline(now.Add(tick)) // part of a packet may be buffered
			if err := s.onTick(now, lastRead); err != nil {
				s.fail(err)
				return
			}
			lastTick = now
			continue
		}
		if err != nil {
			if !errors.Is(err, errPacketTooLarge) {
				err = fmt.Errorf("%w: %w", errCut, err)
			}
			s.fail(fmt.Errorf("uplink: read: %w", err))
			return
		}
		lastRead, seen = time.Now(), 0
		b, _ := s.br.Peek(1)
		isPuback := b[0] == 0x40
		if isPuback && n <= s.br.Size() {
			if err := s.onPubacks(nil, n, &warned); err != nil {
				s.fail(err)
				return
			}
			continue
		}
		if n > s.br.Size() {
			_ = s.nc.SetReadDeadline(time.Now().Add(max(s.ka*3/2, 10*time.Second)))
		}
		if isPuback { // longer than the read buffer: a long reason string or user properties
			big := make([]byte, n)
			if _, err := io.ReadFull(s.br, big); err != nil {
				s.fail(fmt.Errorf("uplink: read: %w: %w", errCut, err))
				return
			}
			if err := s.onPubacks(big, 0, &warned); err != nil {
				s.fail(err)
				return
			}
			continue
		}
		p, err := packets.ReadPacket(s.br)
		if err != nil {
			s.fail(fmt.Errorf("uplink: read: %w: %w", errCut, err))
			return
		}
		if d, ok := p.Content.(*packets.Disconnect); ok {
			if connectionReason[d.ReasonCode] {
				s.fail(fmt.Errorf("uplink: the cloud ended the connection: DISCONNECT %#x %s", d.ReasonCode, d.Reason()))
				return
			}
			s.fail(fmt.Errorf("%w: DISCONNECT %#x %s", errCut, d.ReasonCode, d.Reason()))
			return
		}
	}
}

// onTick checks the ack timeout, the keep-alive and the link.
func (s *session) onTick(now, lastRead time.Time) error {
	s.mu.Lock()
	p, ok := s.win.first()
	late := ok && !p.done && !p.sent.IsZero() && now.Sub(p.sent) > s.u.ackTimeout
	s.mu.Unlock()
	if late {
		return errNoPuback
	}
	if s.ka <= 0 {
		return nil
	}
	if now.Sub(lastRead) >= s.ka*3/2 {
		return fmt.Errorf("uplink: read: nothing from the cloud for %v: %w", s.ka*3/2, os.ErrDeadlineExceeded)
	}
	// A PINGREQ after half a keep-alive without a write, for the cloud,
	// or without a read, for the dead-link check: QoS 0 messages get no
	// answer however many are written. A writer holding the lock is
	// writing: the check comes round at the next tick.
	quietW := now.Sub(time.Unix(0, s.lastWrite.Load())) >= s.ka/2
	quietR := now.Sub(lastRead) >= s.ka/2 && now.Sub(s.lastPing) >= s.ka/2
	if (quietW || quietR) && s.wmu.TryLock() {
		defer s.wmu.Unlock()
		if s.torn { // the rest of a packet must go first; its writer will
			return nil
		}
		s.lastPing = now
		return s.writeLocked(pingreq)
	}
	return nil
}

// pingreq is a PINGREQ packet.
var pingreq = []byte{0xC0, 0x00}

// onPubacks applies the PUBACK first, if not nil, else the one of n bytes
// at the front of the reader, and every further one already buffered,
// then acknowledges the buffer once.
func (s *session) onPubacks(first []byte, n int, warned *bool) error {
	u := s.u
	var err error
	acked, matched := 0, false
	s.mu.Lock()
	for {
		b := first
		if b == nil {
			b, _ = s.br.Peek(n)
		}
		pid, reason, perr := parsePuback(b)
		if first == nil {
			_, _ = s.br.Discard(n)
		}
		first = nil
		if perr != nil {
			err = perr
			break
		}
		if p, ok := s.win.ack(pid); ok { // else: a PUBACK for nothing we sent: ignore, as the spec allows
			matched = true
			why, permanent := permanentPuback[reason]
			switch {
			case reason < 0x80:
				p.done = true
				acked++
				if reason == pubackNoSubscribers {
					u.noSubscribers.Add(1)
					if !*warned {
						*warned = true
						u.log.Warn("the cloud accepted a message but no one subscribes to its topic (PUBACK 0x10); it is lost unless a subscriber's session keeps it (later ones are counted in no_subscribers)", "seq", p.seq)
					}
				}
			case permanent:
				p.done = true
				s.deadLetter(p.seq, "", fmt.Sprintf("PUBACK %#x %s", reason, why))
			default:
				s.refused = p.seq
				err = fmt.Errorf("%w: seq %d: PUBACK %#x %s", errRefused, p.seq, reason, (&packets.Puback{ReasonCode: reason}).Reason())
			}
		}
		if err != nil {
			break
		}
		// Another whole PUBACK already read? Peek only at what is
		// buffered: a read that waits on the network must not hold mu.
		if n = s.bufferedPuback(); n == 0 {
			break
		}
	}
	if last := s.win.popDone(); last != 0 {
		s.end.acked = last
		s.end.progressed = s.end.progressed || s.win.answered
		s.ws.log.Ack(last)
	}
	s.mu.Unlock()
	if matched {
		u.acked.Add(uint64(acked))
		u.lastPuback.Store(u.clock.Now().UnixNano())
	}
	select {
	case s.room <- struct{}{}:
	default:
	}
	if err == nil {
		s.signal() // the room may take the next records, sent from here
	}
	return err
}

// bufferedPuback returns the length of the PUBACK wholly in the read
// buffer at its front, 0 if there is none.
func (s *session) bufferedPuback() int {
	k := s.br.Buffered()
	if k < 2 {
		return 0
	}
	b, _ := s.br.Peek(2)
	if b[0] != 0x40 || b[1] >= 0x80 || 2+int(b[1]) > k {
		return 0
	}
	return 2 + int(b[1])
}

func (s *session) deadLetter(seq uint64, topic, why string) {
	u := s.u
	n := u.deadLetters.Add(1)
	if u.deadWarned.CompareAndSwap(false, true) {
		u.log.Warn("the cloud cannot take a message; dead-lettered it and moved on (later ones are counted in dead_letters)", "seq", seq, "topic", topic, "why", why)
	} else {
		u.log.Debug("dead-lettered", "seq", seq, "why", why, "dead_letters", n)
	}
}
