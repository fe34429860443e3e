package web

import (
	"bufio"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkReadingToSSE measures the latency from Server.Reading to the
// event's arrival at an SSE client over loopback HTTP, one reading at a
// time, and reports p50 and p99. The reading carries its send time in
// nanoseconds as the value.
func BenchmarkReadingToSSE(b *testing.B) {
	opts := DefaultOpts()
	opts.UplinkEvery = time.Hour
	s, base := serve(b, testDeps(RoleViewer), opts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for i := 0; s.hub.streams() != 1; i++ {
		if i > 5000 {
			b.Fatal("the event stream never registered")
		}
		time.Sleep(time.Millisecond)
	}
	lat := make([]time.Duration, 0, b.N)
	t0 := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sent := time.Since(t0)
		s.Reading("air", "temperature", "°C", float64(i), time.Now())
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"value":`+strconv.Itoa(i)+`,`) {
				break
			}
		}
		lat = append(lat, time.Since(t0)-sent)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
