package uplink

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sockio"
	"github.com/edged/edged/uplink/wal"
)

// inlineRig is a session over a real loopback TCP connection, fed by
// nothing but signal: no session goroutine runs.
func inlineRig(t *testing.T, window int) (*session, *wal.Log, net.Conn) {
	t.Helper()
	lg, err := wal.Open(t.TempDir(), wal.Opts{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cloud, err := ln.Accept()
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); cloud.Close() })
	u := &Uplink{device: "gh-01", log: slog.New(slog.DiscardHandler), clock: sensors.SystemClock, ackTimeout: time.Minute}
	ws := u.newWalState(lg)
	s := &session{u: u, ws: ws, nc: nc, br: bufio.NewReader(nc), ka: time.Minute,
		win: newInflight(window), room: make(chan struct{}, 1), dead: make(chan struct{}), rdone: make(chan struct{}), quit: func() {},
		props: newProps("gh-01", ws.epoch), kick: make(chan struct{}, 1), recs: make([]wal.Record, 0, window)}
	s.sock = sockio.For(nc)
	u.feeding.Store(s)
	return s, lg, cloud
}

// readPublishes reads n packets from the cloud's end and returns their
// payloads; each must be a whole PUBLISH.
func readPublishes(t *testing.T, cloud net.Conn, n int) []string {
	t.Helper()
	_ = cloud.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(cloud)
	var got []string
	for range n {
		p, err := packets.ReadPacket(br)
		if err != nil {
			t.Fatalf("after %d PUBLISHes: %v", len(got), err)
		}
		pub, ok := p.Content.(*packets.Publish)
		if !ok {
			t.Fatalf("after %d PUBLISHes: a %T", len(got), p.Content)
		}
		got = append(got, string(pub.Payload))
	}
	return got
}

// TestCaptureSendsInline: a record appended while the feed is idle and
// the window has room is on the wire when Append returns, written by the
// appending goroutine: no other goroutine runs here, and none was asked
// to.
func TestCaptureSendsInline(t *testing.T) {
	s, lg, cloud := inlineRig(t, 4)
	for i := range 3 {
		if _, err := lg.Append(appendBody(nil, &Message{Topic: "c/a", Payload: fmt.Appendf(nil, "m%d", i), QoS: 1})); err != nil {
			t.Fatal(err)
		}
	}
	if got := readPublishes(t, cloud, 3); fmt.Sprint(got) != "[m0 m1 m2]" {
		t.Fatalf("cloud got %v", got)
	}
	select {
	case <-s.kick:
		t.Fatal("the feed handed the records to the session's goroutine")
	default:
	}
	if s.outstanding() != 3 {
		t.Fatalf("%d in flight, want 3", s.outstanding())
	}
}

// TestInlineFeedNeverWaits: a cloud that stops reading fills its socket;
// Append keeps returning (the rest waits in out for the session's
// goroutine, which is kicked), no PINGREQ is cut into a half-written
// PUBLISH, and once the session's goroutine writes, the cloud gets every
// message whole and in order.
func TestInlineFeedNeverWaits(t *testing.T) {
	s, lg, cloud := inlineRig(t, 8)
	big := bytes.Repeat([]byte("x"), 512<<10) // 8 of them: far more than the socket buffers hold
	for i := range 8 {
		p := append(fmt.Appendf(nil, "%d:", i), big...)
		if _, err := lg.Append(appendBody(nil, &Message{Topic: "c/a", Payload: p, QoS: 1})); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-s.kick:
	default:
		t.Fatal("the session's goroutine was not asked to write the rest")
	}
	s.fmu.Lock()
	left := len(s.out)
	s.fmu.Unlock()
	if left == 0 {
		t.Fatal("nothing left to write: the socket took 4 MiB without a reader?")
	}
	if err := s.onTick(time.Now().Add(40*time.Second), time.Now()); err != nil { // a PINGREQ is due
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { // as feed does when kicked
		s.fmu.Lock()
		defer s.fmu.Unlock()
		s.inline = false
		done <- s.pump()
	}()
	got := readPublishes(t, cloud, 8)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, p := range got {
		if want := fmt.Sprintf("%d:", i); len(p) != len(want)+len(big) || p[:len(want)] != want {
			t.Fatalf("PUBLISH %d is %q...", i, p[:min(len(p), 10)])
		}
	}
	_ = cloud.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _ := io.ReadFull(cloud, make([]byte, 1)); n != 0 {
		t.Fatal("bytes after the last PUBLISH")
	}
}

// TestDialUsesSockio: the cloud connection reads and writes through
// sockio.Conn (raw socket calls that do not wake the runtime's sysmon),
// and the session's inline Writer can be had for it.
func TestDialUsesSockio(t *testing.T) {
	f := newFakeCloud(t, "")
	u := startFake(t, f, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, _, _, err := u.dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, ok := nc.(*sockio.Conn); !ok {
		t.Errorf("cloud connection is %T, want *sockio.Conn", nc)
	}
	if sockio.For(nc) == nil {
		t.Error("no inline Writer for the cloud connection")
	}
}
