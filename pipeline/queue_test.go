package pipeline_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/sensors"
)

// gateSink records what it is given in a channel, and blocks in each call
// until gate lets it go, like a publish waiting on a stalled disk.
type gateSink struct {
	gate chan struct{}
	got  chan string
}

func (s *gateSink) Reading(r sensors.Reading) {
	<-s.gate
	s.got <- fmt.Sprintf("%s=%v", r.Sensor, r.Value)
}

func (s *gateSink) Availability(id string, online bool) {
	<-s.gate
	s.got <- fmt.Sprintf("%s:%v", id, online)
}

func queueReading(id string, v float64) sensors.Reading {
	return sensors.Reading{Sensor: id, Quantity: sensors.Temperature, Value: v, Time: t0}
}

// TestQueueNeverBlocksIssue9: a Sink stuck in a publish does not hold
// the Poller; the queue delivers everything in order once it is free, and
// when it overflows it drops the oldest readings, never an availability
// change.
func TestQueueNeverBlocksIssue9(t *testing.T) {
	sink := &gateSink{gate: make(chan struct{}), got: make(chan string, 16)}
	q := pipeline.NewQueue(sink, 4, nil)
	done := make(chan struct{})
	go func() { defer close(done); q.Run() }()

	// The first item goes to the sink, which blocks; five more queue up
	// behind it in a queue of four, without blocking the caller.
	q.Availability("a", true)
	q.Reading(queueReading("a", 1))
	q.Availability("a", false)
	q.Reading(queueReading("a", 2))
	q.Reading(queueReading("a", 3))
	q.Reading(queueReading("a", 4))
	// Whether the first item was taken off the queue before the others
	// came decides which readings were dropped; count instead of guessing.
	close(sink.gate)
	q.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	close(sink.got)
	var got []string
	for s := range sink.got {
		got = append(got, s)
	}
	if n := uint64(len(got)) + q.Dropped(); n != 6 {
		t.Errorf("delivered %v and dropped %d, want 6 in all", got, q.Dropped())
	}
	want := []string{"a:true", "a=1", "a:false", "a=2", "a=3", "a=4"}
	j := 0
	for _, g := range got { // got must be want with some readings left out
		for j < len(want) && want[j] != g {
			if want[j][1] == ':' {
				t.Fatalf("availability %s was dropped: got %v", want[j], got)
			}
			j++
		}
		if j == len(want) {
			t.Fatalf("delivered %v, out of order or unknown; want a subsequence of %v", got, want)
		}
		j++
	}
	if got[len(got)-1] != "a=4" {
		t.Errorf("delivered %v: the newest reading must be there", got)
	}
	q.Reading(queueReading("a", 5)) // after Close: dropped, never blocks
}

func TestQueueDoesNotAllocate(t *testing.T) {
	q := pipeline.NewQueue(&gateSink{}, 2000, nil) // nobody runs it
	r := queueReading("a", 1)
	if n := testing.AllocsPerRun(1000, func() { q.Reading(r) }); n != 0 {
		t.Errorf("Reading allocates %v times", n)
	}
}
