package pipeline_test

import (
	"testing"

	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/sensors"
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
