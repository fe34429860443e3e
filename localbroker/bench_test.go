package localbroker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkBrokerFanout is one LAN publisher sending QoS 1 sensor-sized
// messages through a real broker to three QoS 1 TCP subscribers, which
// acknowledge each: the broker's CPU per message (issue 11 item 6). One
// op is one message published and delivered to all three.
//
//	go test -run '^$' -bench BrokerFanout -benchmem -cpuprofile cpu.out ./localbroker
func BenchmarkBrokerFanout(b *testing.B) {
	br, err := New(func() Opts {
		o := DefaultOpts()
		o.MQTT, o.WebSocket, o.AnonymousRole = "127.0.0.1:0", "", RolePublisher
		return o
	}(), prefix, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := br.Start(); err != nil {
		b.Fatal(err)
	}
	defer br.Close()

	const subs = 3
	var delivered atomic.Int64
	counts := make(chan int, subs)
	var wg sync.WaitGroup
	var conns []net.Conn
	for i := range subs {
		conn, r := benchSession(b, br.MQTTAddr(), fmt.Sprint("sub-", i))
		conns = append(conns, conn)
		if _, err := conn.Write([]byte{0x82, 12, 0, 1, 0, 7, 'b', 'e', 'n', 'c', 'h', '/', '#', 1}); err != nil {
			b.Fatal(err)
		}
		if pk := readPkt(r); pk == nil || pk[0] != 0x90 {
			b.Fatalf("SUBACK: % x", pk)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			w := bufio.NewWriter(conn)
			for {
				pk := readPkt(r)
				if pk == nil {
					counts <- n
					return
				}
				if pk[0]&0xf0 != 0x30 {
					continue
				}
				n++
				delivered.Add(1)
				tl := int(binary.BigEndian.Uint16(pk[1:]))
				_, _ = w.Write(append([]byte{0x40, 2}, pk[3+tl:5+tl]...))
				if r.Buffered() == 0 {
					_ = w.Flush()
				}
			}
		}()
	}
	pub, pr := benchSession(b, br.MQTTAddr(), "pub")
	conns = append(conns, pub)
	go func() {
		for readPkt(pr) != nil {
		}
	}()
	payload := []byte(`{"value":21.37,"unit":"°C","ts":"2026-11-22T10:00:00.123Z"}`)
	topic := "bench/sim-01/sensor/air/temperature"
	var msg bytes.Buffer
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	cpu0 := ru0.Utime.Nano() + ru0.Stime.Nano()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		msg.Reset()
		id := uint16(i%65535 + 1)
		body := append(append(binary.BigEndian.AppendUint16(nil, uint16(len(topic))), topic...), byte(id>>8), byte(id))
		body = append(body, payload...)
		msg.WriteByte(0x32)
		msg.WriteByte(byte(len(body)))
		msg.Write(body)
		if _, err := pub.Write(msg.Bytes()); err != nil {
			b.Fatal(err)
		}
		for int64(i+1)*subs-delivered.Load() > 256*subs { // stay well within 1,024 in flight
			wait(b, br)
		}
	}
	for delivered.Load() < int64(b.N)*subs {
		wait(b, br)
	}
	b.StopTimer()
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := ru.Utime.Nano() + ru.Stime.Nano() - cpu0
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/msg")
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	total := 0
	for range subs {
		total += <-counts
	}
	if s := br.Stats(); total != b.N*subs {
		b.Fatalf("delivered %d of %d (dropped %+v)", total, b.N*subs, s.Dropped)
	}
}

// wait sleeps a moment, and ends the benchmark if messages were lost:
// then the subscribers would never catch up.
func wait(b *testing.B, br *Broker) {
	time.Sleep(100 * time.Microsecond)
	if s := br.Stats(); s.Dropped != (Drops{}) {
		b.Fatalf("messages dropped: %+v", s.Dropped)
	}
}

func benchSession(b *testing.B, addr, id string) (net.Conn, *bufio.Reader) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60}, byte(len(id)>>8), byte(len(id)))
	body = append(body, id...)
	if _, err := conn.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		b.Fatal(err)
	}
	r := bufio.NewReader(conn)
	if pk := readPkt(r); len(pk) != 3 || pk[2] != 0 {
		b.Fatalf("CONNACK % x", pk)
	}
	return conn, r
}
