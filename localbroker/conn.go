package localbroker

import (
	"errors"
	"net"
	"sync"
	"time"
)

// clientConn is the net.Conn mochi reads and writes for one LAN
// connection (a TCP socket, or a wsConn). It exists so that no client can
// hold the broker up:
//
//   - every Write has its own deadline, whatever the client's keep-alive:
//     mochi writes to a client while holding that client's lock, and the
//     fan-out to every other subscriber waits for that lock, so a client
//     that stops reading must not be able to block a write for long. A
//     write that times out closes the connection (the stream may hold half
//     a packet) and reports the client as slow;
//   - mochi's keep-alive deadline (SetDeadline) applies to reads only;
//   - the first Read reports the hand-over to mochi as started (see
//     handoff).
type clientConn struct {
	net.Conn
	started      func()
	writeTimeout time.Duration
	onSlow       func() // called once, when a write times out

	slowOnce sync.Once
}

func (c *clientConn) Read(p []byte) (int, error) {
	c.started()
	return c.Conn.Read(p)
}

// SetDeadline is how mochi applies the keep-alive (1.5 times it, or none
// for keep-alive 0) before each read; writes keep their own deadline.
func (c *clientConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

func (c *clientConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		c.slowOnce.Do(c.onSlow)
		_ = c.Conn.Close()
	}
	return n, err
}

// connPolicy is what every listener applies to its connections; one is
// shared by all listeners of a broker, so the limits are over all of them.
type connPolicy struct {
	gate           *gate
	connectTimeout time.Duration
	writeTimeout   time.Duration
	stats          *counters
	warn           func(kind, remote, msg string, args ...any) // rate limited per kind and address
}

// wrap gives mochi its view of an admitted connection.
func (p *connPolicy) wrap(c net.Conn, started func()) *clientConn {
	remote := c.RemoteAddr().String()
	return &clientConn{Conn: c, started: started, writeTimeout: p.writeTimeout, onSlow: func() {
		p.stats.slowClients.Add(1)
		p.warn("slow", remote, "disconnected a client that stopped reading", "remote", remote, "write_timeout", p.writeTimeout)
	}}
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
			l.p.warn("refused", hostOf(c.RemoteAddr()), "refused a connection", "remote", c.RemoteAddr().String(), "reason", refused)
			_ = c.Close()
			continue
		}
		return &gatedConn{Conn: c, release: release}, nil
	}
}

// gatedConn gives its gate slot back when closed.
type gatedConn struct {
	net.Conn
	release func() // idempotent
}

func (c *gatedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
