package main

import (
	"net"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestHostileRemainingLengthIntegration: a client that sends a packet
// whose Remaining Length runs past MQTT's four bytes [MQTT-1.5.5], over
// TCP or WebSocket, before or after CONNECT, is disconnected and edged
// keeps running. Before the fix the send window's scan of the client's
// bytes made the length negative and panicked the read goroutine: one
// unauthenticated packet ended the daemon (sampling, control, uplink).
func TestHostileRemainingLengthIntegration(t *testing.T) {
	bin := edgedBinary(t)
	d, _, mqttAddr, wsAddr, httpAddr := startHostile(t, bin, "admin", "", "")
	// A PUBACK whose length is ten continuation bytes and then 1 (a
	// negative int64), then bytes to skip; and one whose length is
	// negative in a 32-bit int (the Pi's).
	bad := [][]byte{
		{0x40, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00, 0x07, 0x00},
		{0x40, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00, 0x07, 0x00},
	}
	send := func(name string, conn net.Conn, afterConnect bool, b []byte) {
		t.Helper()
		defer conn.Close()
		if afterConnect {
			if _, code := rawConnect(t, conn, 5, name, 30, nil); code != 0 {
				t.Fatalf("%s: CONNACK %#x", name, code)
			}
		}
		if _, err := conn.Write(b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, ok := closedBy(conn, 10*time.Second); !ok {
			t.Errorf("%s: still connected after a malformed packet", name)
		}
	}
	for i, b := range bad {
		send("tcp-before-connect", dialFrom(t, "127.0.0.2", mqttAddr), false, b)
		send("tcp-after-connect", dialFrom(t, "127.0.0.3", mqttAddr), true, b)
		dialer := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
		ws, _, err := dialer.Dial("ws://"+wsAddr+"/mqtt", nil)
		if err != nil {
			t.Fatal(err)
		}
		send("ws-after-connect", &wsNetConn{Conn: ws.UnderlyingConn(), ws: ws}, true, b)
		select {
		case <-d.done:
			t.Fatalf("edged exited after malformed packet %d: %v\n%s", i, d.err, d.logs.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	getHealth(t, httpAddr) // still serving
}

// TestHostileTruncatedSubscribeIntegration: an MQTT 5 SUBSCRIBE that
// ends before its filter's options byte, over TCP or WebSocket, gets the
// client disconnected and edged keeps running. mochi v2.7.9 indexes past
// the packet and panics (mochi-mqtt/server#501, no release fixes it):
// before the fix one such packet from any client that may connect
// (anonymous ones by default) ended the daemon.
func TestHostileTruncatedSubscribeIntegration(t *testing.T) {
	bin := edgedBinary(t)
	d, _, mqttAddr, wsAddr, httpAddr := startHostile(t, bin, "viewer", "", "")
	truncated := packet(0x82, append(append(u16(1), 0), mqttString("lan/")...)) // id, no properties, filter, no options
	dialer := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	ws, _, err := dialer.Dial("ws://"+wsAddr+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		conn net.Conn
	}{
		{"tcp", dialFrom(t, "127.0.0.2", mqttAddr)},
		{"ws", &wsNetConn{Conn: ws.UnderlyingConn(), ws: ws}},
	} {
		if _, code := rawConnect(t, tc.conn, 5, "trunc-"+tc.name, 30, nil); code != 0 {
			t.Fatalf("%s: CONNACK %#x", tc.name, code)
		}
		if _, err := tc.conn.Write(truncated); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if _, ok := closedBy(tc.conn, 10*time.Second); !ok {
			t.Errorf("%s: still connected after a truncated SUBSCRIBE", tc.name)
		}
		tc.conn.Close()
		select {
		case <-d.done:
			t.Fatalf("edged exited after a truncated SUBSCRIBE over %s: %v\n%s", tc.name, d.err, d.logs.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	getHealth(t, httpAddr) // still serving
}
