package localbroker

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/edged/edged/sensors/sockio"
)

// TestGateListenerRefusesPastCap: GateListener closes a connection past
// its per-address cap at once, and counts it by that limit.
func TestGateListenerRefusesPastCap(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, refused := GateListener(raw, 10, 2, 100, slog.New(slog.DiscardHandler))
	accepted := make(chan net.Conn, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	defer func() { ln.Close(); <-done }()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	var held []net.Conn
	for range 2 {
		dial()
		held = append(held, <-accepted)
	}
	c := dial()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("third connection from one address: read %v, want EOF (closed at accept)", err)
	}
	if got, want := refused(), (AcceptRefusals{PerAddress: 1}); got != want {
		t.Errorf("refusals %+v, want %+v", got, want)
	}
	for _, h := range held {
		h.Close()
	}
}

// TestGateListenerHandsOutSockioConns: every admitted connection reads
// and writes through sockio.Conn (raw socket calls that do not wake the
// runtime's sysmon), and an inline Writer can be had for it.
func TestGateListenerHandsOutSockioConns(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := GateListener(raw, 10, 2, 100, slog.New(slog.DiscardHandler))
	defer ln.Close()
	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	g, ok := got.(*gatedConn)
	if !ok {
		t.Fatalf("Accept returned %T, want *gatedConn", got)
	}
	if _, ok := g.Conn.(*sockio.Conn); !ok {
		t.Errorf("admitted connection is %T, want *sockio.Conn", g.Conn)
	}
	if socket(got) == nil {
		t.Error("no inline Writer for an admitted TCP connection")
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = got.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 4)
	if _, err := io.ReadFull(got, b); err != nil || string(b) != "ping" {
		t.Errorf("read %q, %v", b, err)
	}
}
