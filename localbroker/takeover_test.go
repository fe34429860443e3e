package localbroker

import (
	"bufio"
	"encoding/binary"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestTakeoverKeepsQoS1: a persistent session (Clean Session 0) taken
// over by a new connection again and again while the gateway publishes
// at QoS 1 must get every message, on one connection or the next
// [MQTT-3.1.2-5]. mochi cloned the old client's inflight messages, then
// put the new client in its table: a delivery in between went to the old
// client, whose inflight messages are then cleared, and was lost.
func TestTakeoverKeepsQoS1(t *testing.T) {
	b := startBroker(t, func(o *Opts) {
		o.MaxConnectsPerMinute, o.MaxClientsPerAddress = 100000, 64
	})
	// CONNECT, MQTT 3.1.1, Clean Session 0, keep-alive 0, id "takeover".
	connect := []byte{0x10, 20, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x00, 0, 0, 0, 8, 't', 'a', 'k', 'e', 'o', 'v', 'e', 'r'}
	subscribe := []byte{0x82, 11, 0, 1, 0, 6, 'l', 'a', 'n', '/', 't', 'k', 1}

	var mu sync.Mutex
	got := map[int]bool{}
	// session reads one connection until it ends, PUBACKing every QoS 1
	// PUBLISH and noting its sequence number.
	session := func(conn net.Conn, r *bufio.Reader) {
		for {
			pk := readPkt(r)
			if pk == nil {
				return
			}
			if pk[0]>>4 != 3 {
				continue
			}
			qos := pk[0] >> 1 & 3
			n := int(binary.BigEndian.Uint16(pk[1:3]))
			body := pk[3+n:]
			if qos > 0 {
				_, _ = conn.Write([]byte{0x40, 2, body[0], body[1]})
				body = body[2:]
			}
			seq, err := strconv.Atoi(string(body))
			if err != nil {
				t.Errorf("payload %q", body)
				return
			}
			mu.Lock()
			got[seq] = true
			mu.Unlock()
		}
	}
	dial := func() (net.Conn, *bufio.Reader) {
		conn, err := net.Dial("tcp", b.MQTTAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := conn.Write(connect); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(conn)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if ack := readPkt(r); len(ack) < 1 || ack[0] != 0x20 {
			t.Fatalf("CONNACK % x", ack)
		}
		_ = conn.SetReadDeadline(time.Time{})
		return conn, r
	}
	conn, r := dial()
	if _, err := conn.Write(subscribe); err != nil {
		t.Fatal(err)
	}
	if pk := readPkt(r); len(pk) == 0 || pk[0] != 0x90 {
		t.Fatalf("SUBACK % x", pk)
	}

	const n = 20000
	var published atomic.Int64
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; i < n; i++ {
			if err := b.Publish("lan/tk", []byte(strconv.Itoa(i)), false); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
			published.Add(1)
			if i%8 == 0 {
				time.Sleep(time.Millisecond) // let the fan-out and the subscriber keep up
			}
		}
	}()
	var wg sync.WaitGroup
	wg.Add(1)
	go func(conn net.Conn, r *bufio.Reader) { defer wg.Done(); session(conn, r) }(conn, r)
	takeovers := 0
	for published.Load() < n && takeovers < 2000 {
		// The new connection takes the session over from the open one.
		next, nr := dial()
		takeovers++
		conn.Close()
		conn = next
		wg.Add(1)
		go func(conn net.Conn, r *bufio.Reader) { defer wg.Done(); session(conn, r) }(next, nr)
		time.Sleep(time.Millisecond)
	}
	<-pubDone
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		k := len(got)
		mu.Unlock()
		if k == n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	conn.Close()
	wg.Wait()
	var missing []int
	for i := 0; i < n; i++ {
		if !got[i] {
			missing = append(missing, i)
		}
	}
	st := b.Stats()
	t.Logf("%d takeovers, %d of %d received", takeovers, n-len(missing), n)
	if len(missing) > 0 {
		t.Errorf("%d QoS 1 messages lost across %d takeovers (first: %v; stats %+v)", len(missing), takeovers, missing[:min(10, len(missing))], st)
	}
}
