package pipeline_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
	"github.com/edged/edged/sensors/wallclock"
)

var bootA = wallclock.BootID{0xd7, 0x5d, 0xff, 0xaf, 0x26, 0xb7, 0x4b, 0x68, 0xa3, 0x7a, 0xb0, 0xe3, 0xf6, 0x53, 0x10, 0xcb}

// TestReadingsMarkedThenRestamped: readings sampled in 1970 are published
// marked with their boot id and time since boot; once NTP has stepped the
// clock and it is trusted, the restamper gives them the wall time they
// were sampled at; readings sampled after trust are plain.
func TestReadingsMarkedThenRestamped(t *testing.T) {
	clk := sensorstest.NewClock(time.Unix(0, 0).UTC())
	synced := false
	kern := wallclock.KernelFunc(func() (bool, error) { return synced, nil })
	wc, err := wallclock.New(clk, kern, wallclock.Opts{Boot: bootA, BootOffset: 2 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := &fakePub{}
	p := pipeline.New("edged/gh-01", pub, nil)
	p.SetTrust(wc)
	wc.Check()

	clk.Advance(1500 * time.Millisecond)
	p.Reading(sensors.Reading{Sensor: "air", Quantity: sensors.Temperature, Value: 21.5, Time: clk.Now(), Mono: clk.Mono()})
	want := `{"value":21.5,"unit":"°C","ts":"1970-01-01T00:00:01.500Z","clock":"unsynced","boot":"d75dffaf-26b7-4b68-a37a-b0e3f65310cb","since_boot":3.500}`
	if got := pub.msgs[0].payload; got != want {
		t.Fatalf("unsynced payload\n got %s\nwant %s", got, want)
	}
	restamp := pipeline.Restamper(wc)
	if _, ok := restamp(nil, []byte(want)); ok {
		t.Fatal("restamped before the clock is trusted")
	}

	// NTP: at Mono 10s the truth is 2026-12-01T12:00:00Z.
	clk.Advance(8500 * time.Millisecond)
	truth := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clk.Step(truth.Sub(clk.Now()))
	synced = true
	wc.Check()
	clk.Advance(5 * time.Second)
	wc.Check()
	if !wc.Synced() {
		t.Fatalf("not trusted: %s", wc.Reason())
	}
	got, ok := restamp(nil, []byte(want))
	if wantFixed := `{"value":21.5,"unit":"°C","ts":"2026-12-01T11:59:51.500Z","clock":"corrected"}`; !ok || string(got) != wantFixed {
		t.Fatalf("restamped\n got %s, %v\nwant %s", got, ok, wantFixed)
	}
	p.Reading(sensors.Reading{Sensor: "air", Quantity: sensors.Temperature, Value: 21.6, Time: clk.Now(), Mono: clk.Mono()})
	if got := pub.msgs[1].payload; got != `{"value":21.6,"unit":"°C","ts":"2026-12-01T12:00:05.000Z"}` {
		t.Fatalf("payload after trust: %s", got)
	}
	for _, other := range []string{
		pub.msgs[1].payload, // not marked
		strings.Replace(want, "d75dffaf", "00000000", 1), // another boot
		strings.Replace(want, `3.500}`, `x}`, 1),         // damaged
		strings.Replace(want, `"ts":"`, `"ts": "`, 1),    // not ours
		`{"clock":"unsynced","boot":"d75dffaf-26b7-4b68-a37a-b0e3f65310cb","since_boot":3.500}`,
	} {
		if got, ok := restamp(nil, []byte(other)); ok {
			t.Errorf("restamped %s to %s", other, got)
		}
	}
}

// FuzzRestamper: the restamper parses payloads from the uplink's buffer,
// which LAN clients may have filled with anything: it never panics, and
// what it rewrites is JSON marked corrected.
func FuzzRestamper(f *testing.F) {
	clk := sensorstest.NewClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	wc, err := wallclock.New(clk, nil, wallclock.Opts{Boot: bootA}, nil)
	if err != nil {
		f.Fatal(err)
	}
	wc.Check()
	restamp := pipeline.Restamper(wc)
	f.Add([]byte(`{"value":21.5,"unit":"°C","ts":"1970-01-01T00:00:01.500Z","clock":"unsynced","boot":"d75dffaf-26b7-4b68-a37a-b0e3f65310cb","since_boot":3.500}`))
	f.Add([]byte(`,"clock":"unsynced","boot":"`))
	f.Add([]byte(`"ts":"","clock":"unsynced","boot":"d75dffaf-26b7-4b68-a37a-b0e3f65310cb","since_boot":-1}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		out, ok := restamp(nil, payload)
		if !ok {
			return
		}
		if !json.Valid(out) && json.Valid(payload) {
			t.Fatalf("restamped valid JSON %q into invalid %q", payload, out)
		}
		if !strings.HasSuffix(string(out), `,"clock":"corrected"}`) {
			t.Fatalf("restamped %q into %q", payload, out)
		}
	})
}
