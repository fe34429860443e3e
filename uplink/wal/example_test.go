package wal_test

import (
	"context"
	"fmt"
	"os"

	"github.com/edged/edged/uplink/wal"
)

// The forwarder's loop: read in seq order, publish, ack the contiguous
// PUBACKed prefix.
func Example() {
	dir, _ := os.MkdirTemp("", "wal-example")
	defer os.RemoveAll(dir)

	l, err := wal.Open(dir, wal.Opts{Sync: wal.SyncAlways})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	for _, m := range []string{"21.4", "21.5", "21.7"} {
		if _, err := l.Append([]byte(m)); err != nil {
			fmt.Println(err)
			return
		}
	}
	recs, err := l.Read(context.Background(), 0, 10, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range recs {
		fmt.Printf("seq %d: %s\n", r.Seq, r.Body) // publish (gw, epoch, seq) upstream here
	}
	l.Ack(recs[len(recs)-1].Seq)
	fmt.Println("backlog:", l.Stats().Backlog)
	// Output:
	// seq 1: 21.4
	// seq 2: 21.5
	// seq 3: 21.7
	// backlog: 0
}
