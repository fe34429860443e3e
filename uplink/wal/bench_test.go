package wal

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchDir returns a fresh directory under $WAL_BENCH_DIR (so the same
// benchmarks run on tmpfs and on the real disk) or the test temp dir.
func benchDir(b *testing.B) string {
	base := os.Getenv("WAL_BENCH_DIR")
	if base == "" {
		return b.TempDir()
	}
	if err := os.MkdirAll(base, 0o750); err != nil {
		b.Fatal(err)
	}
	d, err := os.MkdirTemp(base, "wal-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// BenchmarkAppend reports msgs/s, fsyncs per 1,000 appends and bytes
// written per payload byte for each sync mode, producer count and size.
//
//	WAL_BENCH_DIR=/dev/shm/walbench go test -run XXX -bench Append ./uplink/wal
func BenchmarkAppend(b *testing.B) {
	type mode struct {
		name string
		sync SyncMode
	}
	modes := []mode{
		{"always", SyncAlways},
		{"interval", SyncInterval},
		{"none", SyncNone},
	}
	for _, m := range modes {
		for _, producers := range []int{1, 8, 64} {
			for _, size := range []int{64, 1024} {
				name := fmt.Sprintf("%s/p%d/%dB", m.name, producers, size)
				b.Run(name, func(b *testing.B) {
					l, err := Open(benchDir(b), Opts{Sync: m.sync})
					if err != nil {
						b.Fatal(err)
					}
					defer l.Close()
					payload := make([]byte, size)
					before := l.Stats()
					var next atomic.Int64
					var wg sync.WaitGroup
					b.SetBytes(int64(size))
					b.ResetTimer()
					start := time.Now()
					for range producers {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for next.Add(1) <= int64(b.N) {
								if _, err := l.Append(payload); err != nil {
									b.Error(err)
									return
								}
							}
						}()
					}
					wg.Wait()
					el := time.Since(start)
					b.StopTimer()
					after := l.Stats()
					b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
					b.ReportMetric(float64(after.Fsyncs-before.Fsyncs)*1000/float64(b.N), "fsyncs/1k")
					b.ReportMetric(float64(after.BytesWritten-before.BytesWritten)/float64(b.N*size), "wbytes/pbyte")
				})
			}
		}
	}
}

// BenchmarkAckBacklog fills a 20 MB backlog, then reads and acks all of
// it, and reports the bytes written while acking (the marker; reclaim
// deletes files, it never rewrites data).
//
//	go test -run XXX -bench AckBacklog -benchtime 1x ./uplink/wal
func BenchmarkAckBacklog(b *testing.B) {
	const payload, records = 1024, 20 << 10 // 20 MiB of bodies
	for range b.N {
		b.StopTimer()
		l, err := Open(benchDir(b), Opts{Sync: SyncNone})
		if err != nil {
			b.Fatal(err)
		}
		body := make([]byte, payload)
		for range records {
			if _, err := l.Append(body); err != nil {
				b.Fatal(err)
			}
		}
		before := l.Stats()
		b.StartTimer()
		var dst []Record
		var after uint64
		for after < before.LastSeq {
			dst, err = l.Read(context.Background(), after, 64, dst)
			if err != nil {
				b.Fatal(err)
			}
			after = dst[len(dst)-1].Seq
			l.Ack(after)
		}
		b.StopTimer()
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		st := l.Stats()
		b.ReportMetric(float64(st.BytesWritten-before.BytesWritten), "rewritten-bytes")
		b.ReportMetric(float64(st.DiskBytes), "disk-bytes-after")
		b.ReportMetric(float64(records)/b.Elapsed().Seconds()*float64(b.N), "acked-msgs/s")
	}
}

// BenchmarkAppendToRead is the latency from Append to the forwarder's
// Read, one record at a time (the forwarder blocks in Read, as it does
// while the backlog is empty): ns/op is the round trip.
//
//	go test -run XXX -bench AppendToRead ./uplink/wal
func BenchmarkAppendToRead(b *testing.B) {
	for _, mode := range []SyncMode{SyncAlways, SyncInterval, SyncNone} {
		b.Run(mode.String(), func(b *testing.B) {
			l, err := Open(benchDir(b), Opts{Sync: mode})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			body := make([]byte, 100)
			got := make(chan uint64)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				var after uint64
				var dst []Record
				for {
					recs, err := l.Read(ctx, after, 1, dst)
					if err != nil {
						close(got)
						return
					}
					after = recs[0].Seq
					l.Ack(after)
					got <- after
					dst = recs
				}
			}()
			b.ResetTimer()
			for range b.N {
				s, err := l.Append(body)
				if err != nil {
					b.Fatal(err)
				}
				if r := <-got; r != s {
					b.Fatalf("read seq %d, appended %d", r, s)
				}
			}
			b.StopTimer()
			cancel()
			for range got {
			}
		})
	}
}

// slowSyncFS models an SD card's fsync on the real disk: each fsync, of a
// file or the directory, first sleeps delay (a card's fsync takes
// milliseconds to tens of milliseconds, more while it is busy).
type slowSyncFS struct {
	FS
	delay time.Duration
}

type slowSyncFile struct {
	File
	delay time.Duration
}

func (s slowSyncFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := s.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return slowSyncFile{f, s.delay}, nil
}

func (s slowSyncFS) SyncDir(dir string) error {
	time.Sleep(s.delay)
	return s.FS.SyncDir(dir)
}

func (f slowSyncFile) Sync() error {
	time.Sleep(f.delay)
	return f.File.Sync()
}

// BenchmarkAppendLatency appends 64-byte records at 1,000 a second, as a
// LAN publisher at 1,000 msg/s does, under the default sync: interval
// (1 s), and acknowledges each, as the forwarder does once the cloud has
// it (so the ack marker is written every 2 s). It reports how long Appends
// took: the median, the 99th percentile, the longest and how many of each
// 1,000 took over 1 ms. An Append is what a capture waits for before the
// publisher's PUBACK. On the disk as it is, and with every fsync 20 ms
// slower (an SD card); the last case also rotates the segment every 64
// KiB (about 800 records), as the 4 MiB default does every 52,000.
//
//	go test -run XXX -bench AppendLatency -benchtime 5000x ./uplink/wal
func BenchmarkAppendLatency(b *testing.B) {
	for _, c := range []struct {
		name     string
		delay    time.Duration
		segBytes int64
	}{{"disk", 0, 0}, {"card20ms", 20 * time.Millisecond, 0}, {"card20ms-rotating", 20 * time.Millisecond, 64 << 10}} {
		b.Run(c.name, func(b *testing.B) {
			l, err := Open(benchDir(b), Opts{Sync: SyncInterval, FS: slowSyncFS{OSFS, c.delay}, SegmentBytes: c.segBytes})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			payload := make([]byte, 64)
			took := make([]time.Duration, b.N)
			b.ResetTimer()
			next := time.Now()
			for i := range b.N {
				next = next.Add(time.Millisecond)
				time.Sleep(time.Until(next))
				t0 := time.Now()
				seq, err := l.Append(payload)
				if err != nil {
					b.Fatal(err)
				}
				took[i] = time.Since(t0)
				l.Ack(seq)
			}
			b.StopTimer()
			slices.Sort(took)
			over := len(took) - sort.Search(len(took), func(i int) bool { return took[i] > time.Millisecond })
			us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
			b.ReportMetric(us(took[len(took)/2]), "p50-µs")
			b.ReportMetric(us(took[len(took)*99/100]), "p99-µs")
			b.ReportMetric(us(took[len(took)-1]), "max-µs")
			b.ReportMetric(float64(over)*1000/float64(len(took)), "over1ms/1k")
			b.ReportMetric(0, "ns/op")
		})
	}
}
