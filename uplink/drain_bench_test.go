package uplink

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/edged/edged/uplink/uplinktest"
)

// BenchmarkDrainIntegration forwards a backlog of b.N 64-byte QoS 1
// messages into a real Mosquitto with a window of 32: the forwarder's
// whole per-message path (buffer read, PUBLISH encoding, socket, PUBACK,
// buffer ack) without the capture; then a plain paho QoS 1 publisher
// sends as many with the same window into the same broker, and ratio is
// drain / paho. For profiles:
//
//	go test -run XXX -bench DrainIntegration -benchtime 50000x -cpuprofile cpu.out ./uplink
func BenchmarkDrainIntegration(b *testing.B) {
	bin := "mosquitto"
	if testing.Short() {
		b.Skip("integration benchmark: skipped under -short")
	}
	dir := b.TempDir()
	mq, err := uplinktest.StartMosquitto(bin, dir, "")
	if err != nil {
		b.Skip("mosquitto:", err)
	}
	defer mq.Stop()
	o := DefaultOpts()
	o.URL = "mqtt://" + mq.Addr
	o.ClientID = fmt.Sprintf("bench-%d", os.Getpid())
	o.MaxInflight = 32
	o.Forward = []Rule{{Local: "bench/#", QoS: 1}}
	o.Buffer.MaxBytes = 1 << 30
	u, err := New(o, dir+"/buf", "bench", nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer u.Close(context.Background())
	payload := make([]byte, 64)
	for i := range b.N {
		if _, err := u.Capture("bench/"+fmt.Sprint(i%8), payload, 1, false); err != nil {
			b.Fatal(err)
		}
	}
	// Under sync: interval a record is readable once an fsync covers
	// it: sync now, or the first up to 1 s of the drain is waiting.
	if err := u.buf().log.Sync(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	start := time.Now()
	u.Start()
	for u.acked.Load() < uint64(b.N) { // not Stats: it costs more than the forwarder at this rate
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	rate := float64(b.N) / time.Since(start).Seconds()
	b.ReportMetric(rate, "msg/s")
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")

	// The ceiling: a plain paho QoS 1 publisher with the same window
	// into the same broker, right after.
	p, err := uplinktest.Connect(mq.Addr, fmt.Sprintf("paho-%d", os.Getpid()))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	start = time.Now()
	if err := p.Window("bench/paho", b.N, len(payload), o.MaxInflight); err != nil {
		b.Fatal(err)
	}
	paho := float64(b.N) / time.Since(start).Seconds()
	b.ReportMetric(paho, "paho-msg/s")
	b.ReportMetric(rate/paho, "ratio")
}
