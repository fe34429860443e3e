package sockio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a TCP connection whose Read and Write make raw system calls
// (see the package doc). It behaves as the *net.TCPConn it wraps:
// deadlines, Close, and net.OpError values that errors.Is matches
// against os.ErrDeadlineExceeded and net.ErrClosed.
type Conn struct {
	*net.TCPConn
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
	rc := &Conn{TCPConn: tc, raw: raw}
	rc.rf, rc.wf = rc.read, rc.write // made once: a method value per call allocates
	return rc
}

// Read reads what the socket holds, waiting in the poller until it holds
// something, the peer closes (io.EOF) or the read deadline passes.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
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
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read makes one attempt; false asks RawConn.Read to wait until the
// socket is readable and call it again.
func (c *Conn) read(fd uintptr) bool {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rb[0])), uintptr(len(c.rb)))
		switch errno {
		case 0:
			c.rn = int(n)
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
	if len(p) == 0 {
		return 0, nil
	}
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
		b := c.wb[c.wn:]
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch errno {
		case 0:
			c.wn += int(n)
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
