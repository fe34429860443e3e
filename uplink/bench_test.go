package uplink

import (
	"context"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/uplink/wal"
)

// BenchmarkCaptureToAck is edged's side of the uplink path without the
// network: a LAN capture (rule match, cloud topic, body encoding, buffer
// append) by one producer, and a forwarder beside it that reads, decodes
// and acks, as the forwarder does before and after the MQTT session. It
// reports the process CPU time (user + system) and allocations per
// message and the latency from capture to the forwarder's read (p50,
// p99).
//
//	go test -run XXX -bench CaptureToAck -benchmem ./uplink
func BenchmarkCaptureToAck(b *testing.B) {
	for _, mode := range []wal.SyncMode{wal.SyncInterval, wal.SyncAlways, wal.SyncNone} {
		b.Run(mode.String(), func(b *testing.B) {
			o := DefaultOpts()
			o.URL = "mqtt://127.0.0.1:1"
			o.Forward = []Rule{{Local: "edged/+/sensor/#", QoS: 1}}
			o.Buffer.Sync = mode
			u, err := New(o, b.TempDir(), "gh-01", nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer u.Close(context.Background())
			lg := u.buf().log
			const topic = "edged/gh-01/sensor/t1/temperature"
			payload := []byte(`{"v":21.53,"unit":"°C","ts":"2026-12-01T20:00:00.000Z","q":"ok"}`)
			lat := make([]time.Duration, 0, b.N)
			var wg sync.WaitGroup
			wg.Add(1)
			b.ResetTimer()
			cpu0 := cpuTime(b)
			go func() {
				defer wg.Done()
				var after uint64
				buf := make([]wal.Record, 0, 256)
				for n := 0; n < b.N; {
					recs, err := lg.Read(context.Background(), after, cap(buf), buf)
					if err != nil {
						b.Error(err)
						return
					}
					now := time.Now().UnixNano()
					for _, r := range recs {
						m, err := decodeBody(r.Body)
						if err != nil {
							b.Error(err)
							return
						}
						lat = append(lat, time.Duration(now-m.Captured))
						after = r.Seq
						n++
					}
					lg.Ack(after)
					buf = recs
				}
			}()
			for range b.N {
				if _, err := u.Capture(topic, payload, 1, false); err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}

// cpuTime is the user plus system CPU time of this process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
