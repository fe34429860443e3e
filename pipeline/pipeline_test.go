package pipeline_test

import (
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/sensors"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))

func TestAppendPayload(t *testing.T) {
	tests := []struct {
		r    sensors.Reading
		want string
	}{
		{sensors.Reading{Quantity: sensors.Temperature, Value: 21.369999999999997, Time: t0},
			`{"value":21.37,"unit":"°C","ts":"2026-11-22T09:00:00.123Z"}`},
		{sensors.Reading{Quantity: sensors.Humidity, Value: 55, Time: t0},
			`{"value":55,"unit":"%","ts":"2026-11-22T09:00:00.123Z"}`},
		{sensors.Reading{Quantity: sensors.Temperature, Value: -12.34567, Time: t0},
			`{"value":-12.3457,"unit":"°C","ts":"2026-11-22T09:00:00.123Z"}`},
		{sensors.Reading{Quantity: sensors.Illuminance, Value: 54612.5, Time: t0.Add(-123456789)},
			`{"value":54612.5,"unit":"lx","ts":"2026-11-22T09:00:00.000Z"}`},
		{sensors.Reading{Quantity: sensors.Pressure, Value: 101325, Time: t0},
			`{"value":101325,"unit":"Pa","ts":"2026-11-22T09:00:00.123Z"}`},
		{sensors.Reading{Quantity: sensors.Level, Value: 0.25, Time: t0},
			`{"value":0.25,"unit":"","ts":"2026-11-22T09:00:00.123Z"}`},
	}
	for _, tt := range tests {
		if got := string(pipeline.AppendPayload(nil, tt.r)); got != tt.want {
			t.Errorf("%v %v:\n got %s\nwant %s", tt.r.Quantity, tt.r.Value, got, tt.want)
		}
	}
}

// fakePub records publishes and can fail; the broker round trip is
// tested against the real broker below.
type fakePub struct {
	mu   sync.Mutex
	msgs []msg
	err  error
}

type msg struct {
	topic, payload string
	retain         bool
}

func (f *fakePub) Publish(topic string, payload []byte, retain bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.msgs = append(f.msgs, msg{topic, string(payload), retain})
	return nil
}

type obs struct {
	got   []sensors.Reading
	avail []string
}

func (o *obs) Input(r sensors.Reading) { o.got = append(o.got, r) }
func (o *obs) Availability(sensor string, online bool) {
	o.avail = append(o.avail, sensor+"="+map[bool]string{true: "online", false: "offline"}[online])
}

func TestTopicsAndObservers(t *testing.T) {
	pub := &fakePub{}
	p := pipeline.New("edged/gh-01", pub, nil)
	o := &obs{}
	p.Observe(o)
	r := sensors.Reading{Sensor: "air", Quantity: sensors.Humidity, Value: 40, Time: t0}
	p.Reading(r)
	p.Availability("air", false)
	p.Availability("air", true)
	if err := p.Status(true); err != nil {
		t.Fatal(err)
	}
	want := []msg{
		{"edged/gh-01/sensor/air/humidity", `{"value":40,"unit":"%","ts":"2026-11-22T09:00:00.123Z"}`, true},
		{"edged/gh-01/sensor/air/availability", "offline", true},
		{"edged/gh-01/sensor/air/availability", "online", true},
		{"edged/gh-01/status", "online", true},
	}
	if len(pub.msgs) != len(want) {
		t.Fatalf("got %v", pub.msgs)
	}
	for i := range want {
		if pub.msgs[i] != want[i] {
			t.Errorf("message %d: got %+v, want %+v", i, pub.msgs[i], want[i])
		}
	}
	if len(o.got) != 1 || o.got[0] != r {
		t.Errorf("observer got %v", o.got)
	}
	if len(o.avail) != 2 || o.avail[0] != "air=offline" || o.avail[1] != "air=online" {
		t.Errorf("observer got availability %v", o.avail)
	}
}

func TestPublishFailureIsCountedAndControlStillSeesReadings(t *testing.T) {
	pub := &fakePub{err: errors.New("buffer full")}
	p := pipeline.New("p", pub, nil)
	o := &obs{}
	p.Observe(o)
	for range 3 {
		p.Reading(sensors.Reading{Sensor: "a", Quantity: sensors.Temperature, Value: 1, Time: t0})
	}
	p.Reading(sensors.Reading{Sensor: "a", Quantity: sensors.Temperature, Value: math.NaN(), Time: t0})
	if pubd, failed := p.Stats(); pubd != 0 || failed != 4 {
		t.Fatalf("published %d failed %d, want 0 and 4", pubd, failed)
	}
	if len(o.got) != 3 {
		t.Fatalf("observer got %d readings, want 3 (NaN is dropped)", len(o.got))
	}
}

func startBroker(tb testing.TB) *localbroker.Broker {
	o := localbroker.DefaultOpts()
	o.MQTT, o.WebSocket = "127.0.0.1:0", ""
	b, err := localbroker.New(o, "edged/t", nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := b.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}

func TestReadingReachesBrokerSubscriber(t *testing.T) {
	b := startBroker(t)
	got := make(chan msg, 4)
	if err := b.Subscribe("edged/t/#", 1, func(m localbroker.Inbound) {
		got <- msg{topic: m.Topic, payload: string(m.Payload)}
	}); err != nil {
		t.Fatal(err)
	}
	p := pipeline.New("edged/t", b, nil)
	p.Reading(sensors.Reading{Sensor: "soil", Quantity: sensors.Temperature, Value: 18.0625, Time: t0})
	select {
	case m := <-got:
		if m.topic != "edged/t/sensor/soil/temperature" || m.payload != `{"value":18.0625,"unit":"°C","ts":"2026-11-22T09:00:00.123Z"}` {
			t.Fatalf("got %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
	}
}

// BenchmarkReadingToBroker measures the path reading -> topic + payload
// -> embedded broker publish (retained, one inline subscriber).
func BenchmarkReadingToBroker(b *testing.B) {
	br := startBroker(b)
	var n sync.WaitGroup
	if err := br.Subscribe("edged/t/sensor/#", 1, func(localbroker.Inbound) { n.Done() }); err != nil {
		b.Fatal(err)
	}
	p := pipeline.New("edged/t", br, nil)
	r := sensors.Reading{Sensor: "air", Quantity: sensors.Temperature, Value: 21.5, Time: t0}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r.Value = float64(i % 100)
		n.Add(1)
		p.Reading(r)
	}
	n.Wait()
}

func BenchmarkAppendPayload(b *testing.B) {
	r := sensors.Reading{Sensor: "air", Quantity: sensors.Temperature, Value: 21.5, Time: t0}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for range b.N {
		buf = pipeline.AppendPayload(buf[:0], r)
	}
}
