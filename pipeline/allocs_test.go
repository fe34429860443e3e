package pipeline_test

import (
	"testing"

	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
	"github.com/edged/edged/sensors/wallclock"
)

type nopPublisher struct{}

func (nopPublisher) Publish(string, []byte, bool) error { return nil }

// TestReadingAllocs pins the reading path's allocations: the payload,
// which the broker may keep, and nothing else (the sensor topic is built
// once and cached).
func TestReadingAllocs(t *testing.T) {
	p := pipeline.New("edged/a-gateway-prefix-longer-than-32-bytes", nopPublisher{}, nil)
	r := sensors.Reading{Sensor: "air", Quantity: sensors.Temperature, Value: 21.5, Time: t0}
	p.Reading(r)
	if n := testing.AllocsPerRun(1000, func() { p.Reading(r) }); n != 1 {
		t.Errorf("Reading allocates %v times, want 1 (the payload)", n)
	}
}

// TestReadingAllocsWithClock: judging the clock costs a reading no
// allocation, trusted or not (one atomic load; the stamp is appended
// into the payload's own buffer).
func TestReadingAllocsWithClock(t *testing.T) {
	clk := sensorstest.NewClock(t0)
	synced := false
	wc, err := wallclock.New(clk, wallclock.KernelFunc(func() (bool, error) { return synced, nil }), wallclock.Opts{Boot: bootA}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wc.Check()
	p := pipeline.New("edged/a-gateway-prefix-longer-than-32-bytes", nopPublisher{}, nil)
	p.SetTrust(wc)
	r := sensors.Reading{Sensor: "air", Quantity: sensors.Temperature, Value: 21.5, Time: t0, Mono: clk.Mono()}
	p.Reading(r)
	if n := testing.AllocsPerRun(1000, func() { p.Reading(r) }); n != 1 {
		t.Errorf("an unsynced Reading allocates %v times, want 1 (the payload)", n)
	}
	synced = true
	wc.Check()
	r.Mono = clk.Mono()
	if n := testing.AllocsPerRun(1000, func() { p.Reading(r) }); n != 1 {
		t.Errorf("a synced Reading allocates %v times, want 1 (the payload)", n)
	}
}
