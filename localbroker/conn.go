package localbroker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edged/edged/sensors/ratelog"
	"github.com/edged/edged/sensors/sockio"
)

// clientConn is the net.Conn mochi reads and writes for one LAN
// connection (a TCP socket, or a wsConn). It exists so that no client can
// hold the broker up.
//
// mochi writes to a client while holding that client's lock, and every
// publish to QoS 1/2 subscribers takes the lock of each of them in turn,
// so a socket write that blocks would stall every publisher. Here Write
// never waits on the socket: on a plain TCP connection whose queue is
// empty it makes one non-blocking write (the kernel takes what fits in
// the socket buffer, usually all of a PUBACK or a delivery) and queues
// the rest; otherwise it appends to this connection's queue (at most
// maxQueued bytes). One writer goroutine sends the queue, at most
// writeChunk bytes a write, each with a deadline of writeTimeout. A
// client whose queue overflows, or that takes longer than writeTimeout to
// accept a chunk, is disconnected and reported as slow. Writing inline
// spares a goroutine wake per packet (a futex and a scheduler pass, more
// than the write itself costs); bytes go out in Write order either way,
// as the inline write happens only while the writer holds none.
//
// It also keeps an MQTT 5 client's Receive Maximum [MQTT-3.3.4-9]: once
// setReceiveMaximum has been called, a QoS 1/2 PUBLISH is sent only while
// fewer than that many are unacknowledged; later ones wait here, in
// order, and go out as PUBACKs (PUBCOMPs, failing PUBRECs) come in. mochi
// writes whole packets, and Read follows the client's packets to see the
// acknowledgements.
//
// mochi's keep-alive deadline (SetDeadline) applies to reads only, and
// the first Read reports the hand-over to mochi as started (see handoff).
type clientConn struct {
	net.Conn
	started      func()
	writeTimeout time.Duration
	maxQueued    int
	onSlow       func(overflow bool) // called at most once: the queue overflowed, or a write timed out
	shutdown     *atomic.Bool        // the broker is closing: Close does not wait to send
	sock         *sockio.Writer      // the TCP socket for inline writes; nil for TLS and websockets

	slowOnce sync.Once
	kick     chan struct{} // a Write or Close has something for the writer
	done     chan struct{} // closed once the writer has closed the socket

	mu      sync.Mutex
	queue   bytes.Buffer
	err     error // the writer's failure; every later Write returns it
	closing bool  // Close was called: send what is queued, then close
	busy    bool  // the writer holds bytes taken from queue: no inline write

	// The send window, under mu: window is the client's Receive Maximum
	// (0: none), inflight the QoS 1/2 PUBLISHes sent and not yet
	// acknowledged (packet id -> QoS), held those waiting for room
	// (heldLen bytes), partial the start of a packet Write has not had
	// all of.
	window   int
	inflight map[uint16]byte
	held     [][]byte
	heldLen  int
	partial  []byte

	in    inScan // the client's packets, for their acknowledgements; only Read uses it
	inErr error  // a packet mochi must not decode came: every later Read fails

	// Acknowledgements are corked while mochi works through what the
	// last Read returned: a PUBACK, PUBREC, PUBREL or PUBCOMP written then
	// waits in queue (corked, under mu) until mochi calls Read again or
	// anything else is written, so the acks of a burst of packets go out
	// in one write, not one each. reading is set while mochi waits in Read,
	// when nothing is corked. slowCapture (mochi's reader only) says the
	// last capture of this client's messages took slowCapture or more (an
	// fsync under sync: always): corked acks are sent before the next one
	// starts, so in a run of slow captures an ack waits for one at most.
	// The first slow one after quick ones (under sync: interval, the
	// append that rotates a segment, which fsyncs it) holds the acks
	// corked before it.
	reading     atomic.Bool
	corked      bool
	slowCapture bool
}

// slowCapture is how long a capture may take and still have the acks
// corked before it wait for the next: a buffer write takes microseconds,
// an fsync hundreds of them or more.
const slowCapture = 100 * time.Microsecond

// writeChunk is the most one socket write sends, so that writeTimeout is
// a bound on a client's throughput (64 KiB in 10 s by default), not on
// the size of a backlog.
const writeChunk = 64 << 10

// errSlow is the error Write returns after a client was cut off as slow.
var errSlow = errors.New("localbroker: client not reading: disconnected")

func newClientConn(c net.Conn, started func(), writeTimeout time.Duration, maxQueued int, onSlow func(overflow bool), shutdown *atomic.Bool) *clientConn {
	cc := &clientConn{Conn: c, started: started, writeTimeout: writeTimeout, maxQueued: maxQueued, onSlow: onSlow,
		shutdown: shutdown, sock: socket(c), kick: make(chan struct{}, 1), done: make(chan struct{})}
	go cc.writer()
	return cc
}

// socket returns the socket of a plain TCP connection (as the gate
// admits it), nil for anything else (sockio.For).
func socket(c net.Conn) *sockio.Writer {
	if g, ok := c.(*gatedConn); ok {
		c = g.Conn
	}
	return sockio.For(c)
}

func (c *clientConn) Read(p []byte) (int, error) {
	c.started()
	if c.inErr != nil {
		return 0, c.inErr
	}
	c.flushAcks(true)
	n, err := c.Conn.Read(p)
	c.reading.Store(false)
	if keep, ok := c.in.scan(p[:n], c.acked); !ok {
		c.inErr = errMalformed
		return keep, errMalformed
	}
	return n, err
}

// flushAcks sends the corked acknowledgements now. reading: mochi has
// handled every packet it read and is about to wait in Read for more,
// where nothing may be corked.
func (c *clientConn) flushAcks(reading bool) {
	c.mu.Lock()
	if reading {
		c.reading.Store(true)
	}
	left := false
	if c.corked {
		c.corked = false
		left = c.sendInline()
	}
	c.mu.Unlock()
	if left {
		c.wake()
	}
}

// corks reports whether p is one acknowledgement that may wait for the
// next Read: mochi is working through packets it has read (not waiting
// in Read, which would leave it there), and p is a single PUBACK,
// PUBREC, PUBREL or PUBCOMP, which mochi writes in answer to them (or
// resends to a resumed session just before its first Read). Deliveries
// and everything else go out at once.
func (c *clientConn) corks(p []byte) bool {
	if c.reading.Load() || len(p) == 0 || packetLen(p) != len(p) {
		return false
	}
	switch p[0] >> 4 {
	case packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp:
		return true
	}
	return false
}

// setReceiveMaximum opens the send window: at most n unacknowledged QoS
// 1/2 PUBLISHes. Only the first call counts; 0 (the client gave none,
// so 65535) or at least stored (max_queued_messages: mochi never has
// more) leaves the connection without a window.
func (c *clientConn) setReceiveMaximum(n, stored int) {
	if n <= 0 || n >= stored {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.window == 0 {
		c.window, c.inflight = n, map[uint16]byte{}
	}
}

// enqueue queues whole packets from p, holding the QoS 1/2 PUBLISHes
// the window has no room for. The caller holds c.mu.
func (c *clientConn) enqueue(p []byte) {
	if c.window == 0 {
		c.queue.Write(p)
		return
	}
	buf := p
	if len(c.partial) > 0 {
		buf = append(c.partial, p...)
		c.partial = nil
	}
	for len(buf) > 0 {
		n := packetLen(buf)
		if n == 0 {
			c.partial = append([]byte(nil), buf...)
			return
		}
		pk := buf[:n]
		buf = buf[n:]
		id, qos := publishID(pk)
		if qos > 0 {
			if len(c.held) > 0 || len(c.inflight) >= c.window {
				c.held = append(c.held, append([]byte(nil), pk...))
				c.heldLen += n
				continue
			}
			c.inflight[id] = qos
		}
		c.queue.Write(pk)
	}
}

// acked is called by Read for each acknowledgement the client sends: a
// PUBACK, a PUBCOMP, or a PUBREC with a failure code ends a QoS 1/2
// delivery and frees its place in the window.
func (c *clientConn) acked(typ byte, id uint16, reason byte) {
	if typ == packets.Pubrec && reason < packets.ErrUnspecifiedError.Code {
		return
	}
	c.mu.Lock()
	if _, ok := c.inflight[id]; !ok {
		c.mu.Unlock()
		return
	}
	delete(c.inflight, id)
	released := false
	for len(c.held) > 0 && len(c.inflight) < c.window {
		pk := c.held[0]
		c.held[0] = nil
		c.held = c.held[1:]
		c.heldLen -= len(pk)
		hid, qos := publishID(pk)
		c.inflight[hid] = qos
		c.queue.Write(pk)
		released = true
	}
	if released {
		released = c.sendInline()
	}
	c.mu.Unlock()
	if released {
		c.wake()
	}
}

// packetLen returns the length of the whole MQTT packet at the start of
// b, or 0 when b does not hold all of it.
func packetLen(b []byte) int {
	n, mult := 0, 1
	for i := 1; i < len(b) && i <= 4; i++ {
		n += int(b[i]&0x7f) * mult
		mult *= 128
		if b[i]&0x80 == 0 {
			if total := 1 + i + n; total <= len(b) {
				return total
			}
			return 0
		}
	}
	return 0
}

// publishID returns the packet id and QoS of a whole PUBLISH packet, and
// QoS 0 for anything else.
func publishID(pk []byte) (uint16, byte) {
	if pk[0]>>4 != packets.Publish {
		return 0, 0
	}
	qos := pk[0] >> 1 & 3
	i := 1
	for i < len(pk) && pk[i]&0x80 != 0 {
		i++
	}
	i++ // past the remaining length
	if qos == 0 || i+2 > len(pk) {
		return 0, 0
	}
	t := int(binary.BigEndian.Uint16(pk[i:]))
	if i+2+t+2 > len(pk) {
		return 0, 0
	}
	return binary.BigEndian.Uint16(pk[i+2+t:]), qos
}

// inScan follows a client's packet stream through Read, whatever the
// read sizes, and reports each PUBACK, PUBREC and PUBCOMP.
//
// It also keeps from mochi the packets mochi's decoder would panic on
// (an MQTT 5 SUBSCRIBE cut off before a filter's options byte crashed
// mochi v2.7.9, the daemon with it: mochi-mqtt/server#501): it holds
// the body of each SUBSCRIBE, decodes it as mochi will, and when that
// panics, Read stops before the packet's last byte and fails, so mochi
// never decodes it and drops the client.
type inScan struct {
	state   byte // 0: fixed header, 1: remaining length, 2: body, 3: malformed length (mochi drops the client)
	typ     byte
	remain  int     // body bytes left
	mult    int     // weight of the next remaining-length byte: 1, 128, 128², 128³
	head    [3]byte // packet id and reason code
	got     int
	version byte   // the CONNECT's protocol version, once seen
	hold    bool   // the body is kept in body for checking
	body    []byte // the body of a packet being checked
}

// errMalformed is what Read returns for a packet mochi would crash on.
var errMalformed = errors.New("localbroker: malformed packet from client")

// scan follows p. It returns how many bytes of p may go to mochi: all of
// them, or, with ok false, those before the last byte of a packet mochi
// must not decode.
func (s *inScan) scan(p []byte, ack func(typ byte, id uint16, reason byte)) (keep int, ok bool) {
	all := len(p)
	for len(p) > 0 {
		switch s.state {
		case 0:
			s.typ, s.remain, s.mult, s.got = p[0]>>4, 0, 1, 0
			s.state = 1
			p = p[1:]
		case 1:
			b := p[0]
			p = p[1:]
			s.remain += int(b&0x7f) * s.mult
			s.mult *= 128
			if b&0x80 != 0 && s.mult > 128*128*128 {
				// A fifth length byte [MQTT-1.5.5]: mochi refuses the
				// packet; summing on would overflow int into a negative
				// length and a panic.
				s.state = 3
				return all, true
			}
			if b&0x80 == 0 {
				s.state = 2
				s.hold = s.typ == packets.Subscribe || (s.typ == packets.Connect && s.version == 0)
				s.body = s.body[:0]
				if s.remain == 0 && !s.end(ack) {
					return all - len(p) - 1, false
				}
			}
		case 2:
			take := min(s.remain, len(p))
			for i := 0; s.got < len(s.head) && i < take; i++ {
				s.head[s.got] = p[i]
				s.got++
			}
			if s.hold {
				s.body = append(s.body, p[:take]...)
			}
			s.remain -= take
			p = p[take:]
			if s.remain == 0 && !s.end(ack) {
				return all - len(p) - 1, false
			}
		case 3:
			return all, true
		}
	}
	return all, true
}

// end handles a whole packet; false when mochi must not see its last
// byte.
func (s *inScan) end(ack func(typ byte, id uint16, reason byte)) bool {
	s.state = 0
	switch s.typ {
	case packets.Puback, packets.Pubrec, packets.Pubcomp:
		if s.got >= 2 {
			var reason byte
			if s.got == 3 {
				reason = s.head[2]
			}
			ack(s.typ, binary.BigEndian.Uint16(s.head[:2]), reason)
		}
	case packets.Connect:
		if s.hold && len(s.body) >= 2 { // protocol name, then the version
			if i := 2 + int(binary.BigEndian.Uint16(s.body)); i < len(s.body) {
				s.version = s.body[i]
			}
		}
	case packets.Subscribe:
		if !decodes(s.version, s.body) {
			return false
		}
	}
	if cap(s.body) > 4<<10 {
		s.body = nil // a large SUBSCRIBE's buffer is not kept for the connection's life
	}
	return true
}

// decodes reports whether mochi decodes a SUBSCRIBE body without a
// panic (an error is mochi's to report).
func decodes(version byte, body []byte) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1, Remaining: len(body)}, ProtocolVersion: version}
	_ = pk.SubscribeDecode(body)
	return true
}

// SetDeadline is how mochi applies the keep-alive (1.5 times it) before
// each read; writes keep their own deadline.
func (c *clientConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// Write queues p for the writer; it never waits on the client.
func (c *clientConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	switch {
	case c.err != nil:
		err := c.err
		c.mu.Unlock()
		return 0, err
	case c.closing:
		c.mu.Unlock()
		return 0, net.ErrClosed
	case c.queue.Len()+c.heldLen+len(p) > c.maxQueued:
		c.err = errSlow
		c.mu.Unlock()
		c.slow(true)
		// The writer's blocked write ends; it sees err and stops. Not on
		// this goroutine, a publisher's: closing a TLS connection with
		// no write in flight first sends close_notify, which waits up to
		// 5 s on a client that does not read.
		go c.Conn.Close()
		return 0, errSlow
	}
	c.enqueue(p)
	if c.corks(p) {
		c.corked = true
		c.mu.Unlock()
		return len(p), nil
	}
	c.corked = false
	left := c.sendInline()
	c.mu.Unlock()
	if left {
		c.wake()
	}
	return len(p), nil
}

// sendInline writes what is queued to the socket with one non-blocking
// write when that keeps the order: the writer holds no bytes. It reports
// whether bytes are left for the writer. A write the socket refuses
// (EAGAIN: the client is not reading fast enough) or fails leaves them
// queued: the writer waits for room under its deadline, or meets the
// error and ends the connection. The caller holds c.mu.
func (c *clientConn) sendInline() (left bool) {
	if c.sock == nil || c.busy || c.queue.Len() == 0 {
		return c.queue.Len() > 0
	}
	c.queue.Next(c.sock.Try(c.queue.Bytes()))
	return c.queue.Len() > 0
}

// Close lets the writer send what is queued (a refusing CONNACK, a
// DISCONNECT) within writeTimeout, then close the socket; reads end at
// once. While the broker shuts down it closes the socket at once, after
// one non-blocking write of what is queued (corked acknowledgements: an
// MQTT 3.1.1 client is sent no DISCONNECT that would carry them out).
func (c *clientConn) Close() error {
	c.mu.Lock()
	c.closing = true
	if c.shutdown.Load() {
		c.sendInline()
	}
	c.mu.Unlock()
	c.wake()
	if c.shutdown.Load() {
		return c.Conn.Close()
	}
	return c.Conn.SetReadDeadline(time.Now())
}

func (c *clientConn) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *clientConn) slow(overflow bool) { c.slowOnce.Do(func() { c.onSlow(overflow) }) }

// writer sends the queue to the socket until Close has been called and
// the queue is empty, or a write fails.
func (c *clientConn) writer() {
	defer close(c.done)
	defer c.Conn.Close()
	chunk := make([]byte, writeChunk)
	deadline := true // a write deadline may be set: the accept's connect timeout
	for {
		c.mu.Lock()
		if c.err != nil || (c.queue.Len() == 0 && c.closing) {
			c.mu.Unlock()
			return
		}
		n := copy(chunk, c.queue.Next(writeChunk))
		c.busy = n > 0
		c.mu.Unlock()
		if n == 0 {
			if deadline {
				// Inline writes fail once a deadline has passed.
				if err := c.Conn.SetWriteDeadline(time.Time{}); err != nil {
					c.fail(err)
					return
				}
				deadline = false
			}
			<-c.kick
			continue
		}
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
			c.fail(err)
			return
		}
		deadline = true
		if _, err := c.Conn.Write(chunk[:n]); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.slow(false)
				err = errSlow
			}
			c.fail(err)
			return
		}
	}
}

func (c *clientConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

// wait returns once the socket is closed: after Close, within
// writeTimeout.
func (c *clientConn) wait() { <-c.done }

// connPolicy is what every listener applies to its connections; one is
// shared by all listeners of a broker, so the limits are over all of them.
type connPolicy struct {
	gate           *gate
	connectTimeout time.Duration
	writeTimeout   time.Duration
	maxQueued      int // bytes queued for one client before it counts as slow
	shutdown       atomic.Bool
	stats          *counters
	warn           func(kind, remote, msg string, args ...any) // rate limited per kind and address
	// disconnect ends the sessions of one listener's clients when it
	// closes (Broker.disconnectListener).
	disconnect func(listener string)
}

// wrap gives mochi its view of an admitted connection.
func (p *connPolicy) wrap(c net.Conn, started func()) *clientConn {
	remote := c.RemoteAddr().String()
	return newClientConn(c, started, p.writeTimeout, p.maxQueued, func(overflow bool) {
		p.stats.slowClients.Add(1)
		reason := "write_timeout"
		if overflow {
			p.stats.slowOverflow.Add(1)
			reason = "queue_overflow"
		} else {
			p.stats.slowTimeout.Add(1)
		}
		p.warn("slow", hostOf(c.RemoteAddr()), "disconnected a client that stopped reading", "remote", remote, "reason", reason, "write_timeout", p.writeTimeout)
	}, &p.shutdown)
}

// gatedListener admits connections through the gate at accept. It keeps
// accepting through transient errors (out of file descriptors) instead of
// ending the listener, as net/http does.
type gatedListener struct {
	net.Listener
	p *connPolicy
}

func (l *gatedListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.p.warn("accept", "", "accepting a connection failed; retrying", "error", err)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		release, refused := l.p.gate.admit(c.RemoteAddr())
		if refused != "" {
			l.p.stats.refused.Add(1)
			switch refused {
			case refusedTotal:
				l.p.stats.refusedTotal.Add(1)
			case refusedPerAddr:
				l.p.stats.refusedPerAddr.Add(1)
			default:
				l.p.stats.refusedRate.Add(1)
			}
			l.p.warn("refused", hostOf(c.RemoteAddr()), "refused a connection", "remote", c.RemoteAddr().String(), "reason", refused)
			_ = c.Close()
			continue
		}
		return &gatedConn{Conn: sockio.Wrap(c), release: release}, nil
	}
}

// gatedConn gives its gate slot back when closed.
type gatedConn struct {
	net.Conn
	release func() // idempotent
}

// Close frees the slot before the socket closes, so a client that has
// seen its connection end can count on the slot being free.
func (c *gatedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// GateListener admits ln's connections as the broker's own listeners do
// at accept: at most maxTotal open at once, perAddr from one source
// address, and perMinute new ones a minute from one address. A refused
// connection is closed at once, before a byte is read, logged to log
// at most once a minute per address, and counted in what refused
// returns.
func GateListener(ln net.Listener, maxTotal, perAddr, perMinute int, log *slog.Logger) (gated net.Listener, refused func() AcceptRefusals) {
	limiter := ratelog.New(warnEvery, warnBurst, nil)
	stats := &counters{}
	return &gatedListener{Listener: ln, p: &connPolicy{
			gate:  newGate(maxTotal, perAddr, perMinute, time.Now),
			stats: stats,
			warn: func(kind, key, msg string, args ...any) {
				limiter.Log(log, slog.LevelWarn, kind+"|"+key, msg, args...)
			},
		}}, func() AcceptRefusals {
			return AcceptRefusals{MaxConnections: stats.refusedTotal.Load(), PerAddress: stats.refusedPerAddr.Load(), PerMinute: stats.refusedRate.Load()}
		}
}

// AcceptRefusals counts the connections a gated listener closed at
// accept, by the limit that refused them.
type AcceptRefusals struct {
	MaxConnections uint64 `json:"max_connections"`
	PerAddress     uint64 `json:"max_connections_per_address"`
	PerMinute      uint64 `json:"max_connects_per_minute"`
}

// Add returns the sum of r and o.
func (r AcceptRefusals) Add(o AcceptRefusals) AcceptRefusals {
	return AcceptRefusals{r.MaxConnections + o.MaxConnections, r.PerAddress + o.PerAddress, r.PerMinute + o.PerMinute}
}
