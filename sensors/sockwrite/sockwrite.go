// Package sockwrite writes to a TCP socket without waiting and without
// allocating: one write(2) on the non-blocking descriptor under a
// *net.TCPConn, for the broker's and the uplink's inline writes (a
// delivery or a message written by the goroutine that has it, instead of
// a hand-off to a writer goroutine). What the socket does not take at
// once is the caller's to queue; the package never waits for the
// poller, and it owns no goroutine.
package sockwrite

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
// *net.TCPConn: a TLS connection must encrypt through its own Write, a
// websocket frame through its library's.
func For(c net.Conn) *Writer {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &Writer{raw: raw}
	w.f = w.write
	return w
}

// Try writes what the socket takes of b at once and returns how much
// that was: 0 when it took nothing (its buffer is full) or the write
// failed, which the caller's next blocking write meets.
func (w *Writer) Try(b []byte) int {
	w.b, w.n = b, 0
	_ = w.raw.Write(w.f)
	w.b = nil
	return w.n
}

// write makes the one attempt; true tells RawConn.Write not to wait for
// the poller.
func (w *Writer) write(fd uintptr) bool {
	k, err := syscall.Write(int(fd), w.b)
	if err == nil && k > 0 {
		w.n = k
	}
	return true
}
