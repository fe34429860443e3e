package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/sensors"
)

type reviewAvail struct {
	mu  sync.Mutex
	log []bool // "air" availability, in order
}

func (s *reviewAvail) Reading(sensors.Reading) {}
func (s *reviewAvail) Availability(id string, online bool) {
	if id != "air" {
		return
	}
	s.mu.Lock()
	s.log = append(s.log, online)
	s.mu.Unlock()
}
func (s *reviewAvail) last() (bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.log) == 0 {
		return false, 0
	}
	return s.log[len(s.log)-1], len(s.log)
}

// reviewSensor: stuck != nil makes Sense ignore its context and wait for it.
type reviewSensor struct {
	stuck   chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (s *reviewSensor) String() string { return "review" }
func (s *reviewSensor) Quantities() []sensors.Quantity {
	return []sensors.Quantity{sensors.Temperature}
}
func (s *reviewSensor) Halt() error { return nil }
func (s *reviewSensor) Sense(_ context.Context, dst []float64) error {
	if s.stuck != nil {
		s.once.Do(func() { close(s.entered) })
		<-s.stuck
	}
	dst[0] = 20
	return nil
}

// TestReloadStuckSensorLateOffline: a changed sensor whose old driver
// ignores its read timeout is halted late by stopSensor's goroutine,
// which then publishes availability offline under the id that the new,
// running and online sensor now has: the new sensor shows offline
// (MQTT retained, Home Assistant unavailable) while it samples.
func TestReloadStuckSensorLateOffline(t *testing.T) {
	sink := &reviewAvail{}
	q := pipeline.NewQueue(sink, 64, nil)
	go q.Run()
	defer q.Close()
	p := sensors.NewPoller(sensors.SystemClock, q, nil)
	opts := sensors.PollOpts{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond, OfflineAfter: 3, RetryBackoff: 10 * time.Millisecond}
	old := &reviewSensor{stuck: make(chan struct{}), entered: make(chan struct{})}
	if err := p.Add("air", old, opts); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = p.Run(ctx) }()
	defer func() { cancel(); <-ran }()
	<-old.entered

	d := &daemon{log: slog.New(slog.NewTextHandler(io.Discard, nil)), sensors: map[string]sensors.Sensor{"air": old}, poller: p, queue: q}
	d.stopSensor(configs.Sensor{ID: "air", PollOpts: opts}) // reload: "air" changed
	if err := p.Add("air", &reviewSensor{}, opts); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for on, _ := sink.last(); !on; on, _ = sink.last() {
		if time.Now().After(deadline) {
			t.Fatal("the new sensor never went online")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(old.stuck) // the old driver's read finally returns
	time.Sleep(500 * time.Millisecond)
	if on, n := sink.last(); !on {
		t.Errorf("the new, sampling sensor %q is published offline (%d availability changes): the old one's late halt said offline under its id", "air", n)
	}
	d.wg.Wait()
}
