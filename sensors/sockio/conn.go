package sockio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Conn is a TCP connection whose Read and Write make raw system calls
// (see the package doc). It behaves as the *net.TCPConn it wraps:
// deadlines, Close, and net.OpError values that errors.Is matches
// against os.ErrDeadlineExceeded and net.ErrClosed.
//
// It offers net.Conn's methods only. The TCPConn's others stay hidden:
// File in particular, whose descriptor's Fd makes the socket blocking,
// and a raw read of a blocking socket would hold its thread, and every
// stop-the-world of the garbage collector, until data came.
type Conn struct {
	tc  *net.TCPConn
	raw syscall.RawConn

	rmu  sync.Mutex // one Read at a time owns rb, rn and rerr
	rf   func(fd uintptr) bool
	rb   []byte
	rn   int
	rerr syscall.Errno

	wmu  sync.Mutex // one Write at a time owns wb, wn and werr
	wf   func(fd uintptr) bool
	wb   []byte
	wn   int
	werr syscall.Errno
}

var _ net.Conn = (*Conn)(nil)

// Wrap returns c as a Conn when it is a *net.TCPConn, and c itself
// otherwise (a Conn included).
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rc := &Conn{tc: tc, raw: raw}
	rc.rf, rc.wf = rc.read, rc.write // made once: a method value per call allocates
	return rc
}

// Read reads what the socket holds, waiting in the poller until it holds
// something, the peer closes (io.EOF) or the read deadline passes.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rb, c.rn, c.rerr = p, 0, 0
	err := c.raw.Read(c.rf)
	n, errno := c.rn, c.rerr
	c.rb = nil
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// read makes one attempt; false asks RawConn.Read to wait until the
// socket is readable and call it again.
func (c *Conn) read(fd uintptr) bool {
	if len(c.rb) == 0 {
		return true // as internal/poll: the socket's state, not its data
	}
	for {
		n, errno := sysRead(fd, c.rb)
		switch errno {
		case 0:
			c.rn = n
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rerr = errno
		return true
	}
}

// Write writes all of p, waiting in the poller while the socket's buffer
// is full, until the write deadline passes.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wb, c.wn, c.werr = p, 0, 0
	err := c.raw.Write(c.wf)
	n, errno := c.wn, c.werr
	c.wb = nil
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// write writes what the socket takes; false asks RawConn.Write to wait
// until it is writable and call it again.
func (c *Conn) write(fd uintptr) bool {
	for c.wn < len(c.wb) {
		n, errno := sysWrite(fd, c.wb[c.wn:])
		switch errno {
		case 0:
			c.wn += n
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.werr = errno
		return true
	}
	return true
}

// opError reports err as net.Conn's Read and Write do. RawConn reports
// the poller's errors (deadline, closed) as an OpError of its own
// ("raw-read"); the error inside is kept.
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Close closes the connection; a Read or Write waiting returns
// net.ErrClosed.
func (c *Conn) Close() error { return c.tc.Close() }

// LocalAddr returns the local address.
func (c *Conn) LocalAddr() net.Addr { return c.tc.LocalAddr() }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.tc.RemoteAddr() }

// SetDeadline sets the read and write deadlines, as net.Conn's.
func (c *Conn) SetDeadline(t time.Time) error { return c.tc.SetDeadline(t) }

// SetReadDeadline sets the deadline of a waiting and of future Reads.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.tc.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline of a waiting and of future Writes.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.tc.SetWriteDeadline(t) }
