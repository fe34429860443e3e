package localbroker

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
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
		o.MaxConnectsPerMinute, o.MaxClientsPerAddress, o.MaxClients = 100000, 1000, 1000
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

// selfSigned returns a throwaway certificate for 127.0.0.1.
// tlsPair runs a TLS handshake over the two ends of a connection and
// returns the server's and the client's side.
func tlsPair(t *testing.T, server, client net.Conn) (*tls.Conn, *tls.Conn) {
	t.Helper()
	srv := tls.Server(server, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	cli := tls.Client(client, &tls.Config{InsecureSkipVerify: true})
	hs := make(chan error, 1)
	go func() { hs <- cli.Handshake() }()
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-hs; err != nil {
		t.Fatal(err)
	}
	return srv, cli
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTLSWriteNeverWaitsOnClose (review of DirectWrites): with
// DirectWrites, clientConn.Write runs on the publisher's goroutine (the
// fan-out carrying sensor readings, another client's read loop), under
// mochi's lock of the subscriber. When a client's queue overflows, Write
// closes the connection itself (conn.go Write: c.Conn.Close()); on an
// mqtts or wss connection that is tls.Conn.Close, which, when the writer
// goroutine is not inside a Write at that moment, sends a close_notify
// alert with a 5 s deadline: to a client that does not read, Write then
// blocks 5 s. Here the writer is idle because the client's Receive
// Maximum (1) holds every later QoS 1 message in the connection; the
// client read the first and nothing after (net.Pipe stands for a full
// socket buffer). Every Write must return at once, the overflowing one
// included.
func TestTLSWriteNeverWaitsOnClose(t *testing.T) {
	sp, cp := net.Pipe()
	srv, cli := tlsPair(t, sp, cp)
	var shut atomic.Bool // a normal close: send what is queued first
	c := newClientConn(srv, func() {}, time.Minute, 4<<10, func(bool) {}, &shut)
	defer func() { cli.Close(); c.Close(); c.wait() }() // mochi closes the conn when its read fails
	c.setReceiveMaximum(1, DefaultOpts().MaxQueuedMessages)
	first := pubPkt(t, 1, 1, "first")
	read := make(chan error, 1)
	go func() {
		buf := make([]byte, len(first))
		_, err := io.ReadFull(cli, buf)
		read <- err // and read nothing more
	}()
	if _, err := c.Write(first); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	idle := false
	for range 500 { // the writer is back waiting for work
		c.mu.Lock()
		idle = !c.busy && c.queue.Len() == 0
		c.mu.Unlock()
		if idle {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !idle {
		t.Fatal("the writer did not become idle")
	}
	var worst time.Duration
	overflowed := false
	for i := uint16(2); i < 1000 && !overflowed; i++ {
		start := time.Now()
		_, err := c.Write(pubPkt(t, i, 1, strings.Repeat("x", 200)))
		worst = max(worst, time.Since(start))
		overflowed = err != nil
	}
	if !overflowed {
		t.Fatal("the queue never overflowed")
	}
	if worst > 2*time.Second {
		t.Fatalf("a Write to a TLS client that stopped reading took %v (the publisher waited on the close_notify alert)", worst.Round(time.Millisecond))
	}
}
