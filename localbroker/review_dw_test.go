package localbroker

import (
	"bufio"
	"net"
	"sync"
	"testing"
	"time"
)

// TestReconnectGetsConnackFirst (review of DirectWrites): a client
// resuming a session (Clean Session 0) is put in mochi's client table,
// with its inherited subscriptions live, before its CONNACK is written
// (server.go attachClient: Clients.Add, then SendConnack). A publisher
// writing the delivery itself (DirectWrites) can write a PUBLISH into
// the connection in between, and the client then sees a PUBLISH as the
// first packet, which MQTT forbids [MQTT-3.2.0-1] (paho drops the
// connection). 300 resumptions while the gateway publishes flat out: the
// first packet back must be the CONNACK every time.
func TestReconnectGetsConnackFirst(t *testing.T) {
	b := startBroker(t, func(o *Opts) {
		o.MaxConnectsPerMinute, o.MaxClientsPerAddress = 100000, 64
	})
	// CONNECT, MQTT 3.1.1, Clean Session 0, keep-alive 0, id "resume".
	connect := []byte{0x10, 18, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x00, 0, 0, 0, 6, 'r', 'e', 's', 'u', 'm', 'e'}
	subscribe := []byte{0x82, 11, 0, 1, 0, 6, 'l', 'a', 'n', '/', 'r', 'x', 0}
	dial := func() (net.Conn, *bufio.Reader, []byte) {
		conn, err := net.Dial("tcp", b.MQTTAddr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(connect); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(conn)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		return conn, r, readPkt(r)
	}
	conn, r, ack := dial()
	if len(ack) < 1 || ack[0] != 0x20 {
		t.Fatalf("first CONNACK % x", ack)
	}
	if _, err := conn.Write(subscribe); err != nil {
		t.Fatal(err)
	}
	for pk := readPkt(r); len(pk) == 0 || pk[0] != 0x90; pk = readPkt(r) {
		if pk == nil {
			t.Fatal("no SUBACK")
		}
	}
	conn.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 10_000_000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = b.Publish("lan/rx", []byte("x"), false)
			if i%64 == 0 {
				time.Sleep(50 * time.Microsecond) // let the fan-out keep up
			}
		}
	}()
	bad := 0
	var first []byte
	for range 300 {
		conn, _, ack := dial()
		conn.Close()
		if len(ack) == 0 {
			t.Fatal("no packet back after a CONNECT")
		}
		if ack[0] != 0x20 {
			bad++
			if first == nil {
				first = ack
			}
		}
	}
	close(stop)
	wg.Wait()
	if bad > 0 {
		t.Fatalf("%d of 300 resumed sessions got another packet before the CONNACK (first: % x)", bad, first[:min(len(first), 16)])
	}
}
