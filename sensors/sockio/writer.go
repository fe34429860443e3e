package sockio

import (
	"net"
	"syscall"
)

// Writer makes the attempts on one socket. It is not safe for
// concurrent use: its callers hold their connection's write lock.
type Writer struct {
	raw syscall.RawConn
	f   func(fd uintptr) bool // w.write, made once: a closure per call would be two allocations
	b   []byte
	n   int
}

// For returns a Writer for c's socket, nil when c is not a
// *net.TCPConn or a Conn: a TLS connection must encrypt through its own
// Write, a websocket frame through its library's. What is written goes
// out in order with c's own writes only while its caller holds the lock
// that orders them.
func For(c net.Conn) *Writer {
	if rc, ok := Wrap(c).(*Conn); ok {
		return newWriter(rc.raw)
	}
	return nil
}

func newWriter(raw syscall.RawConn) *Writer {
	w := &Writer{raw: raw}
	w.f = w.write
	return w
}

// Try writes what the socket takes of b at once and returns how much
// that was: 0 when it took nothing (its buffer is full) or the write
// failed, which the caller's next blocking write meets.
func (w *Writer) Try(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	w.b, w.n = b, 0
	_ = w.raw.Write(w.f)
	w.b = nil
	return w.n
}

// write makes the one attempt; true tells RawConn.Write not to wait for
// the poller.
func (w *Writer) write(fd uintptr) bool {
	k, errno := sysWrite(fd, w.b)
	if errno == 0 && k > 0 {
		w.n = k
	}
	return true
}
