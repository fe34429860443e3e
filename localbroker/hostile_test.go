package localbroker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

func (c *client) publishRetained(topic, payload string) (byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(payload)})
	if r != nil {
		return r.ReasonCode, err
	}
	return 0, err
}

// TestSysPublishGetsNotAuthorized pins issue 7: a QoS 1 publish to $SYS
// by a publisher got no PUBACK at all, so the client waited for ever.
func TestSysPublishGetsNotAuthorized(t *testing.T) {
	b := startBroker(t, func(o *Opts) { o.AnonymousRole = RoleAdmin })
	pub := connect(t, dialTCP(t, b), "pub")
	code, err := pub.publish("$SYS/broker/uptime", "forged")
	if code != 0x87 {
		t.Fatalf("QoS 1 publish to $SYS: reason %#x, err %v; want 0x87", code, err)
	}
	// The session goes on: a publish it may make still works.
	if code, err := pub.publish("lan/x", "ok"); err != nil || code != 0 {
		t.Fatalf("publish after the refusal: %#x %v", code, err)
	}
}

// TestRetainedCommandRefused pins issue 7: an operator could store a
// retained message on P/control/<id>/set, replayed to the loop on every
// restart. Refused for every role; a plain command still goes through.
func TestRetainedCommandRefused(t *testing.T) {
	for _, role := range []string{RoleOperator, RoleAdmin} {
		b := startBroker(t, func(o *Opts) { o.AnonymousRole = role })
		pub := connect(t, dialTCP(t, b), "pub")
		if code, _ := pub.publishRetained(prefix+"/control/heat/set", `{"setpoint":30}`); code != 0x87 {
			t.Errorf("%s: retained command: reason %#x, want 0x87", role, code)
		}
		if code, err := pub.publish(prefix+"/control/heat/set", `{"setpoint":30}`); code != 0 || err != nil {
			t.Errorf("%s: command: reason %#x %v, want accepted", role, code, err)
		}
		if n, _ := b.retained.usage(); n != 0 {
			t.Errorf("%s: %d retained messages after the refusal", role, n)
		}
	}
}

// TestRetainedStoreBounded pins issue 7: 300 retained Wills of 64 KiB
// grew RSS by 52 MB in 3.5 s. The store holds max_retained messages and
// max_retained_bytes; past them a new topic is refused (0x97) while
// replacing or clearing a held one still works, and the gateway's own
// retained messages are never refused.
func TestRetainedStoreBounded(t *testing.T) {
	b := startBroker(t, func(o *Opts) {
		o.AnonymousRole = RolePublisher
		o.MaxRetained = 3
		o.MaxRetainedBytes = 64 << 10
	})
	pub := connect(t, dialTCP(t, b), "pub")
	for i := range 3 {
		if code, err := pub.publishRetained(fmt.Sprint("lan/r", i), "v"); code != 0 || err != nil {
			t.Fatalf("retained %d: %#x %v", i, code, err)
		}
	}
	if code, _ := pub.publishRetained("lan/r3", "v"); code != 0x97 {
		t.Errorf("a fourth retained topic at max_retained 3: reason %#x, want 0x97", code)
	}
	if code, err := pub.publishRetained("lan/r0", "replaced"); code != 0 || err != nil {
		t.Errorf("replacing a held topic when full: %#x %v", code, err)
	}
	if code, err := pub.publishRetained("lan/r1", ""); code != 0 || err != nil {
		t.Errorf("clearing a held topic when full: %#x %v", code, err)
	}
	if code, err := pub.publishRetained("lan/r3", "v"); code != 0 || err != nil {
		t.Errorf("a new topic once one was cleared: %#x %v", code, err)
	}
	big := strings.Repeat("x", 40<<10)
	if code, err := pub.publishRetained("lan/r0", big); code != 0 || err != nil {
		t.Errorf("40 KiB within max_retained_bytes 64KiB: %#x %v", code, err)
	}
	if code, _ := pub.publishRetained("lan/r2", big); code != 0x97 {
		t.Errorf("another 40 KiB past max_retained_bytes 64KiB: reason %#x, want 0x97", code)
	}
	if err := b.Publish(prefix+"/status", []byte("online"), true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n, _ := b.retained.usage(); n != 4 && time.Now().Before(deadline); n, _ = b.retained.usage() {
		time.Sleep(10 * time.Millisecond) // the fan-out goroutine retains it
	}
	if n, size := b.retained.usage(); n != 4 {
		t.Errorf("after the gateway's own retained status: %d messages (%d bytes), want 4 (over max_retained: the gateway is never refused)", n, size)
	}
	if s := b.Stats(); s.RetainedRefused != 2 {
		t.Errorf("retained_refused = %d, want 2", s.RetainedRefused)
	}
}

// rawStuck subscribes to # at QoS 1 over MQTT 3.1.1 with keep-alive 0
// and a tiny receive buffer, then never reads: a phone app put in the
// background with its socket open.
func rawStuck(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	connect := []byte{0x10, 17, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, 0, 5, 's', 't', 'u', 'c', 'k'}
	subscribe := []byte{0x82, 6, 0, 1, 0, 1, '#', 1}
	if _, err := conn.Write(append(connect, subscribe...)); err != nil {
		t.Fatal(err)
	}
	acks := make([]byte, 4+5) // CONNACK, SUBACK
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(conn, acks); err != nil || acks[0] != 0x20 || acks[3] != 0 || acks[4] != 0x90 || acks[8] != 1 {
		t.Fatalf("CONNACK and SUBACK: % x %v", acks, err)
	}
	return conn
}

// TestPublishNeverWaitsOnAClient pins issue 7's stall: Broker.Publish
// (the Poller's, the control loop's and the stop path's) waited on the
// lock mochi holds while a write to a client that stopped reading is
// blocked. 2,000 publishes of 8 KiB must all return while a subscriber
// never reads, the subscriber is disconnected by write_timeout, and a
// healthy subscriber gets the messages that follow.
func TestPublishNeverWaitsOnAClient(t *testing.T) {
	b := startBroker(t, func(o *Opts) { o.WriteTimeout = 200 * time.Millisecond })
	conn := rawStuck(t, b.MQTTAddr())
	done := make(chan struct{})
	payload := make([]byte, 8<<10)
	go func() {
		defer close(done)
		for range 2000 {
			if err := b.Publish("lan/bulk", payload, false); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Broker.Publish blocked behind a client that does not read")
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().SlowClientsDisconnected == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := b.Stats().SlowClientsDisconnected; n != 1 {
		t.Fatalf("slow_clients_disconnected = %d, want 1", n)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64<<10)
	for {
		if _, err := conn.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the stuck client was counted but its connection is still open")
			}
			break // closed by the broker
		}
	}
	healthy := connect(t, dialTCP(t, b), "healthy")
	healthy.subscribe(t, "lan/after")
	if err := b.Publish("lan/after", []byte("x"), false); err != nil {
		t.Fatal(err)
	}
	if m := healthy.next(t); string(m.Payload) != "x" {
		t.Fatalf("healthy subscriber got %q", m.Payload)
	}
}
