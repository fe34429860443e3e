package wal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestResumedReaderMatchesModel (review of frameReader.resume): appends
// of random sizes (some failing and taken back), reads from random
// points with random batch sizes (backwards, forwards, from the writer's
// tail and from the file), acks and reopens, over 1 KiB segments; every
// record read must be the one appended under its seq, with no gap.
func TestResumedReaderMatchesModel(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			m := newMemFS(seed)
			failNext := false
			written := map[string]bool{} // fail appends only, not a new segment's header
			m.failWrite = func(name string) error {
				if failNext && written[name] {
					failNext = false
					return errors.New("injected write failure")
				}
				written[name] = true
				return nil
			}
			lg, _ := newLogger()
			opts := Opts{Sync: SyncAlways, FS: m, Log: lg, SegmentBytes: 1 << 10}
			l, err := Open("/buf", opts)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { l.Close() }()
			model := map[uint64][]byte{}
			var last, acked uint64
			var recs []Record
			for step := range 3000 {
				switch op := rng.IntN(10); {
				case op < 4:
					b := bytes.Repeat([]byte{byte('a' + step%26)}, 1+rng.IntN(300))
					b = fmt.Appendf(b, "#%d", step)
					failNext = rng.IntN(20) == 0
					seq, err := l.Append(b)
					failNext = false
					if err == nil {
						if seq != last+1 {
							t.Fatalf("step %d: append got seq %d after %d", step, seq, last)
						}
						model[seq], last = b, seq
					}
				case op < 9:
					if last == acked {
						continue
					}
					after := acked + uint64(rng.IntN(int(last-acked)))
					max := 1 + rng.IntN(4)
					recs, err = l.ReadReady(after, max, recs)
					if err != nil {
						t.Fatalf("step %d: ReadReady(%d, %d): %v", step, after, max, err)
					}
					if len(recs) == 0 {
						t.Fatalf("step %d: ReadReady(%d, %d) read nothing, last %d", step, after, max, last)
					}
					for i, r := range recs {
						if r.Seq != after+1+uint64(i) || !bytes.Equal(r.Body, model[r.Seq]) {
							t.Fatalf("step %d: ReadReady(%d, %d)[%d] = seq %d %q, want seq %d %q",
								step, after, max, i, r.Seq, r.Body, after+1+uint64(i), model[after+1+uint64(i)])
						}
					}
				default:
					if rng.IntN(4) == 0 {
						if err := l.Close(); err != nil {
							t.Fatal(err)
						}
						if l, err = Open("/buf", opts); err != nil {
							t.Fatal(err)
						}
					} else if last > acked {
						acked += uint64(rng.IntN(int(last-acked) + 1))
						l.Ack(acked)
					}
				}
			}
		})
	}
}
