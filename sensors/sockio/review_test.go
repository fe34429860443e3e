package sockio

// Hostile-review tests of Conn against the *net.TCPConn it claims to
// behave as. Each test runs the same scenario on a plain TCPConn and on
// a Conn and compares.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tcpPair is a loopback TCP pair; wrap selects which ends are Conns.
func tcpPair(t *testing.T, wrapDial, wrapAccept bool) (d, a net.Conn) {
	t.Helper()
	d, a, err := loopback()
	if err != nil {
		t.Fatal(err)
	}
	if wrapDial {
		d = Wrap(d)
	}
	if wrapAccept {
		a = Wrap(a)
	}
	t.Cleanup(func() { d.Close(); a.Close() })
	return d, a
}

func shape(err error) string {
	if err == nil {
		return "<nil>"
	}
	s := fmt.Sprintf("%T", err)
	var oe *net.OpError
	if errors.As(err, &oe) {
		s += fmt.Sprintf(" op=%s net=%s inner=%T(%v)", oe.Op, oe.Net, oe.Err, oe.Err)
	}
	s += fmt.Sprintf(" closed=%v deadline=%v eof=%v epipe=%v reset=%v",
		errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrDeadlineExceeded), err == io.EOF,
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNRESET))
	return s
}

// A zero-length Read or Write on a closed *net.TCPConn reports
// net.ErrClosed (internal/poll takes the fd lock first); Conn returns
// (0, nil) before looking at the socket.
func TestReviewZeroLengthIOAfterClose(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		d, _ := tcpPair(t, wrap, false)
		d.Close()
		_, rerr := d.Read(nil)
		_, werr := d.Write(nil)
		t.Logf("wrapped=%v: Read(nil) -> %v; Write(nil) -> %v", wrap, rerr, werr)
		if !errors.Is(rerr, net.ErrClosed) || !errors.Is(werr, net.ErrClosed) {
			t.Errorf("wrapped=%v: zero-length I/O after Close: read %v, write %v; *net.TCPConn gives net.ErrClosed", wrap, rerr, werr)
		}
	}
}

// Error shapes of the kernel's errors: EPIPE after CloseWrite, ECONNRESET
// on a read after the peer's RST, EOF, deadline and close.
func TestReviewErrorShapesMatchTCPConn(t *testing.T) {
	scen := map[string]func(t *testing.T, wrap bool) error{
		"epipe": func(t *testing.T, wrap bool) error {
			d, _ := tcpPair(t, wrap, false)
			tcpOf(d).CloseWrite()
			_, err := d.Write([]byte("x"))
			return err
		},
		"reset-read": func(t *testing.T, wrap bool) error {
			d, a := tcpPair(t, wrap, false)
			a.(*net.TCPConn).SetLinger(0)
			a.Close()
			time.Sleep(50 * time.Millisecond)
			_, err := d.Read(make([]byte, 8))
			return err
		},
		"eof": func(t *testing.T, wrap bool) error {
			d, a := tcpPair(t, wrap, false)
			a.Close()
			_, err := d.Read(make([]byte, 8))
			return err
		},
		"deadline-write": func(t *testing.T, wrap bool) error {
			d, _ := tcpPair(t, wrap, false)
			d.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			big := make([]byte, 1<<20)
			for {
				if _, err := d.Write(big); err != nil {
					return err
				}
			}
		},
		"close-during-read": func(t *testing.T, wrap bool) error {
			d, _ := tcpPair(t, wrap, false)
			go func() { time.Sleep(50 * time.Millisecond); d.Close() }()
			_, err := d.Read(make([]byte, 8))
			return err
		},
		"deadline-set-while-reading": func(t *testing.T, wrap bool) error {
			d, _ := tcpPair(t, wrap, false)
			go func() { time.Sleep(50 * time.Millisecond); d.SetReadDeadline(time.Now()) }()
			_, err := d.Read(make([]byte, 8))
			return err
		},
	}
	for name, f := range scen {
		t.Run(name, func(t *testing.T) {
			plain, wrapped := shape(f(t, false)), shape(f(t, true))
			t.Logf("plain:   %s\nwrapped: %s", plain, wrapped)
			if plain != wrapped {
				t.Errorf("error shapes differ")
			}
		})
	}
}

// A SIGPIPE raised by a raw write to a socket whose write side is shut
// is ignored as the net package's own write is (runtime sigtable: SIGPIPE
// is _SigNotify only), and delivered to a Notify channel as theirs is.
func TestReviewSIGPIPE(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		sig := make(chan os.Signal, 4)
		signal.Notify(sig, syscall.SIGPIPE)
		d, _ := tcpPair(t, wrap, false)
		tcpOf(d).CloseWrite()
		_, err := d.Write([]byte("x"))
		var got bool
		select {
		case <-sig:
			got = true
		case <-time.After(time.Second):
		}
		signal.Stop(sig)
		t.Logf("wrapped=%v: write %v; SIGPIPE delivered to Notify: %v", wrap, err, got)
		if !errors.Is(err, syscall.EPIPE) {
			t.Errorf("wrapped=%v: want EPIPE, got %v", wrap, err)
		}
	}
	// And without Notify, the process survives (we are still here).
	d, _ := tcpPair(t, true, false)
	tcpOf(d).CloseWrite()
	for range 3 {
		d.Write([]byte("x"))
	}
}

// Under -race, syscall.Write and syscall.Read make a happens-before edge
// through the socket (race.ReleaseMerge/Acquire on syscall's ioSync),
// and record the kernel's write into the read buffer (race.WriteRange).
// RawSyscall does neither. Goroutine A sets x then writes a byte through
// a plain TCPConn; B reads it through a Conn, then reads x. With plain
// TCPConns at both ends the race detector is silent; with a Conn as the
// reader it reports a race that is not there.
func TestReviewRaceDetectorSeesSocketSync(t *testing.T) {
	for _, c := range []struct{ wrapW, wrapR bool }{{false, false}, {false, true}, {true, false}} {
		t.Run(fmt.Sprintf("writerWrapped=%v/readerWrapped=%v", c.wrapW, c.wrapR), func(t *testing.T) {
			w, r := tcpPair(t, c.wrapW, c.wrapR)
			x := new(int)
			done := make(chan struct{})
			go func() {
				defer close(done)
				*x = 1
				w.Write([]byte{1})
			}()
			if _, err := io.ReadFull(r, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			if *x != 1 {
				t.Error("x not set")
			}
			<-done
		})
	}
}

// A raw read assumes the descriptor is non-blocking. (*TCPConn).File's
// descriptor, once its Fd is called, makes the shared socket blocking;
// a raw Read then blocks in a call that holds its P, and the next
// stop-the-world (a GC) waits on it for good: the whole process froze
// in the review's run (a plain TCPConn's GC finished). So Conn must not
// offer File, nor anything else of the TCPConn beyond net.Conn.
func TestReviewConnHidesFile(t *testing.T) {
	d, _ := tcpPair(t, true, false)
	if _, ok := d.(interface{ File() (*os.File, error) }); ok {
		t.Error("Conn offers File: its Fd makes the socket blocking under raw reads")
	}
	if _, ok := d.(io.ReaderFrom); ok {
		t.Error("Conn offers ReadFrom, a write path around its own")
	}
}

// net.Buffers' writev path (and ReadFrom, WriteTo) are promoted from
// the embedded *net.TCPConn and bypass Conn's wmu and raw path. writev
// takes internal/poll's fd write lock for the whole call, as Conn.Write
// (RawConn.Write) does, so bytes of concurrent calls do not interleave.
// (ReadFrom's generic fallback writes 32 KiB at a time on a plain
// TCPConn as well: not a change.)
func TestReviewPromotedWritersDoNotInterleave(t *testing.T) {
	d, a := tcpPair(t, true, false)
	const chunk = 4 << 20
	mk := func(b byte) []byte { return bytes.Repeat([]byte{b}, chunk) }
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); d.Write(mk('A')) }()
	go func() { defer wg.Done(); bufs := net.Buffers{mk('B')[:chunk/2], mk('B')[:chunk/2]}; bufs.WriteTo(d) }()
	got := make([]byte, 2*chunk)
	if _, err := io.ReadFull(a, got); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	runs := 0
	for i := range got {
		if i == 0 || got[i] != got[i-1] {
			runs++
		}
	}
	if runs != 2 {
		t.Errorf("%d runs of bytes, want 2: concurrent writes interleaved", runs)
	}
}

// The other direction, in its own function (the race detector reports
// one race per pair of code locations): B writes through a Conn, A
// reads through a plain TCPConn.
func TestReviewRaceDetectorSeesSocketSyncRawWriter(t *testing.T) {
	w, r := tcpPair(t, true, false)
	y := new(int)
	done := make(chan struct{})
	go func() {
		defer close(done)
		*y = 1
		w.Write([]byte{1})
	}()
	if _, err := io.ReadFull(r, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if *y != 1 {
		t.Error("y not set")
	}
	<-done
}

// tcpOf is the TCPConn under c, for the half-close and linger set-ups
// that Conn (net.Conn's methods only) does not offer.
func tcpOf(c net.Conn) *net.TCPConn {
	if rc, ok := c.(*Conn); ok {
		return rc.tc
	}
	return c.(*net.TCPConn)
}
