package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// loopback is a connected pair of plain TCP connections on 127.0.0.1.
func loopback() (d, a net.Conn, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	type result struct {
		c   net.Conn
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		accepted <- result{c, err}
	}()
	d, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	r := <-accepted
	if r.err != nil {
		d.Close()
		return nil, nil, r.err
	}
	return d, r.c, nil
}

// wrappedPipe is a loopback TCP pair, each end a Conn.
func wrappedPipe() (c1, c2 net.Conn, stop func(), err error) {
	d, a, err := loopback()
	if err != nil {
		return nil, nil, nil, err
	}
	c1, c2 = Wrap(d), Wrap(a)
	if _, ok := c1.(*Conn); !ok {
		return nil, nil, nil, errors.New("Wrap did not wrap a TCP connection")
	}
	return c1, c2, func() { c1.Close(); c2.Close() }, nil
}

// Conn passes x/net's conformance suite for net.Conn: basic I/O,
// ping-pong, concurrent reads, writes and Close, and past, future and
// changing deadlines.
func TestConnConformance(t *testing.T) {
	nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) { return wrappedPipe() })
}

func TestConnErrors(t *testing.T) {
	c1, c2, stop, err := wrappedPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	buf := make([]byte, 16)

	_ = c1.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err = c1.Read(buf)
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("read past the deadline: %v, want a timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" || oe.Addr == nil || oe.Source == nil {
		t.Errorf("read past the deadline: %#v, want a *net.OpError naming read and both ends", err)
	}
	_ = c1.SetReadDeadline(time.Time{})

	if n, err := c2.Write([]byte("last")); n != 4 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	c2.Close()
	got, err := io.ReadAll(c1)
	if err != nil || string(got) != "last" {
		t.Errorf("read to the peer's close: %q, %v; want \"last\" then io.EOF", got, err)
	}

	c1.Close()
	if _, err := c1.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after Close: %v, want net.ErrClosed", err)
	}
	if _, err := c1.Write(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %v, want net.ErrClosed", err)
	}
}

// A write to a peer that has gone reports the kernel's error, not a hang.
func TestConnWriteToResetPeer(t *testing.T) {
	c1, c2, stop, err := wrappedPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	_ = c2.(*Conn).tc.SetLinger(0) // close with RST
	c2.Close()
	_ = c1.SetWriteDeadline(time.Now().Add(10 * time.Second))
	big := make([]byte, 64<<10)
	for range 100 {
		if _, err = c1.Write(big); err != nil {
			break
		}
	}
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("writes to a reset peer: %v, want the kernel's error", err)
	}
}

// Read and Write allocate nothing: they run for every packet.
func TestConnDoesNotAllocate(t *testing.T) {
	c1, c2, stop, err := wrappedPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	msg := []byte("0123456789abcdef")
	buf := make([]byte, len(msg))
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := c1.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c2, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a Write and a Read allocate %.1f times", allocs)
	}
}

func TestWrapLeavesOthersAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Error("Wrap changed a connection that is not TCP")
	}
}

// A write larger than the socket's buffers waits in the poller for the
// peer to read, and returns only once all of it is written.
func TestConnWriteWaitsForRoom(t *testing.T) {
	c1, c2, stop, err := wrappedPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	big := make([]byte, 8<<20) // more than loopback's send and receive buffers hold
	for i := range big {
		big[i] = byte(i % 251)
	}
	got := make(chan []byte, 1)
	go func() {
		_ = c2.SetReadDeadline(time.Now().Add(30 * time.Second))
		b := make([]byte, len(big))
		n, _ := io.ReadFull(c2, b)
		got <- b[:n]
	}()
	_ = c1.SetWriteDeadline(time.Now().Add(30 * time.Second))
	n, err := c1.Write(big)
	if n != len(big) || err != nil {
		t.Fatalf("Write: %d of %d, %v", n, len(big), err)
	}
	if b := <-got; !bytes.Equal(b, big) {
		t.Errorf("the peer read %d bytes, not the %d written", len(b), len(big))
	}
}
