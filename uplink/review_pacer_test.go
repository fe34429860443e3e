package uplink

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/uplink/wal"
)

// TestPacedFeedNeverStalls (review of 1ace6df): captures from several
// goroutines at once, on the real clock, through a paced session whose
// window is smaller and larger than the pacer's batch, all reach the
// cloud exactly once: no wake-up is lost between a capture's signal and
// the paced wait, whatever the interleaving. Then a stop with a paced
// backlog left ends at once. Bounded: 20 s hang guard per case.
func TestPacedFeedNeverStalls(t *testing.T) {
	for _, window := range []int{1, 3, 64} {
		t.Run(fmt.Sprint("window ", window), func(t *testing.T) {
			f := newFakeCloud(t, "")
			o := testOpts(f.addr())
			o.Buffer.Sync = wal.SyncNone
			o.MaxInflight = window
			u, err := New(o, t.TempDir(), "gh-01", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			u.preset = &Preset{Name: "paced", MaxPublishRate: 400}
			u.Start()
			const writers, each = 4, 100
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						if _, err := u.Capture(fmt.Sprintf("t/%d", w), []byte("x"), 1, false); err != nil {
							t.Error(err)
							return
						}
						if i%7 == 0 {
							time.Sleep(time.Duration(i%5) * time.Millisecond)
						}
					}
				}()
			}
			wg.Wait()
			deadline := time.Now().Add(20 * time.Second)
			for len(f.received()) < writers*each {
				if time.Now().After(deadline) {
					t.Fatalf("stalled: the cloud got %d of %d", len(f.received()), writers*each)
				}
				time.Sleep(5 * time.Millisecond)
			}
			seen := map[uint64]bool{}
			for _, g := range f.received() {
				if seen[g.seq] {
					t.Errorf("seq %d sent twice", g.seq)
				}
				seen[g.seq] = true
			}
			// A backlog the pacer holds back, then a stop.
			for range 400 {
				if _, err := u.Capture("t/late", []byte("x"), 1, false); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- u.Close(ctx) }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Close: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Close with a paced backlog did not return")
			}
		})
	}
}
