package hass

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

type msg struct {
	topic   string
	payload string
	retain  bool
}

// recorder is a Publisher that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []msg
}

func (r *recorder) Publish(topic string, payload []byte, retain bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msg{topic, string(payload), retain})
	return nil
}

// waitN waits until n messages have been published (a hang guard of 5 s
// real time, not a measurement) and returns them, emptying the record.
func (r *recorder) waitN(t *testing.T, n int) []msg {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		if len(r.msgs) >= n {
			got := r.msgs
			r.msgs = nil
			r.mu.Unlock()
			if len(got) > n {
				t.Fatalf("published %d messages, want %d: %v", len(got), n, got)
			}
			return got
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("published %d messages after 5 s, want %d", len(r.msgs), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (r *recorder) none(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) != 0 {
		t.Fatalf("published %v, want nothing", r.msgs)
	}
}

// run starts an announcer (Start, then Run in a goroutine) and returns
// it and a stop function that waits for Run to end.
func run(t *testing.T, o Opts, g Gateway, pub Publisher, dir string, clock sensors.Clock) (*Announcer, func()) {
	t.Helper()
	a, err := New(o, g, pub, dir, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return a, stop
}

func readRecord(t *testing.T, dir string) (record, bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if os.IsNotExist(err) {
		return record{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("state file: %v\n%s", err, b)
	}
	return r, true
}

// split separates clears (empty payloads) from configs, and checks that
// every message is retained and clears come first.
func split(t *testing.T, ms []msg) (clears, configs []string) {
	t.Helper()
	for _, m := range ms {
		if !m.retain {
			t.Errorf("%s published without retain", m.topic)
		}
		if m.payload == "" {
			if len(configs) > 0 {
				t.Errorf("%s cleared after configs were announced", m.topic)
			}
			clears = append(clears, m.topic)
		} else {
			configs = append(configs, m.topic)
		}
	}
	return clears, configs
}

func topicsOf(es []Entity) []string {
	var ts []string
	for _, e := range es {
		ts = append(ts, e.Topic)
	}
	return ts
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestRemovalAcrossRestart: an entity announced by one run and gone from
// the next run's config is cleared (empty retained config) at that start
// and at Home Assistant's next birth message, then forgotten; turning
// discovery off clears everything.
func TestRemovalAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	clock := sensorstest.NewClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	g1 := testGateway()
	pub := &recorder{}

	a, stop := run(t, DefaultOpts(), g1, pub, dir, clock)
	all := topicsOf(a.Entities())
	clears, configs := split(t, pub.waitN(t, len(all)))
	if len(clears) != 0 || !sameSet(configs, all) {
		t.Fatalf("first run: clears %v, configs %v", clears, configs)
	}
	stop()
	if r, ok := readRecord(t, dir); !ok || !sameSet(r.Announced, all) || len(r.Removed) != 0 {
		t.Fatalf("state after the first run: %+v (file: %v)", r, ok)
	}

	// The barometer and the uplink leave the config.
	g2 := testGateway()
	g2.Sensors = slices.DeleteFunc(g2.Sensors, func(s Sensor) bool { return s.ID == "baro" })
	g2.Uplink = false
	gone := []string{
		"homeassistant/sensor/gh-01/baro_pressure/config",
		"homeassistant/binary_sensor/gh-01/uplink_connected/config",
		"homeassistant/sensor/gh-01/uplink_backlog/config",
	}
	a, stop = run(t, DefaultOpts(), g2, pub, dir, clock)
	kept := topicsOf(a.Entities())
	clears, configs = split(t, pub.waitN(t, len(gone)+len(kept)))
	if !sameSet(clears, gone) || !sameSet(configs, kept) {
		t.Fatalf("second run's start: clears %v (want %v), configs %v", clears, gone, configs)
	}
	if r, _ := readRecord(t, dir); !sameSet(r.Announced, kept) || !sameSet(r.Removed, gone) {
		t.Fatalf("state after the second start: %+v", r)
	}
	// Home Assistant was not listening at the start (the broker had just
	// started): its birth message gets the clears again, then the
	// configs. Anything but "online" is ignored.
	a.Birth([]byte("offline"))
	a.Birth([]byte("online"))
	clears, configs = split(t, pub.waitN(t, len(gone)+len(kept)))
	if !sameSet(clears, gone) || !sameSet(configs, kept) {
		t.Fatalf("birth: clears %v, configs %v", clears, configs)
	}
	stop()
	if r, _ := readRecord(t, dir); !sameSet(r.Announced, kept) || len(r.Removed) != 0 {
		t.Fatalf("state after the birth: %+v, want the removed topics forgotten", r)
	}

	// The same config again: nothing to clear.
	_, stop = run(t, DefaultOpts(), g2, pub, dir, clock)
	clears, _ = split(t, pub.waitN(t, len(kept)))
	if len(clears) != 0 {
		t.Fatalf("third run cleared %v", clears)
	}
	stop()

	// Discovery turned off: everything announced is cleared, at the start
	// and at the next birth, and the state file goes.
	off := DefaultOpts()
	off.Enabled = false
	a, stop = run(t, off, g2, pub, dir, clock)
	clears, configs = split(t, pub.waitN(t, len(kept)))
	if !sameSet(clears, kept) || len(configs) != 0 {
		t.Fatalf("disabled start: clears %v, configs %v", clears, configs)
	}
	a.Birth([]byte("online"))
	clears, _ = split(t, pub.waitN(t, len(kept)))
	if !sameSet(clears, kept) {
		t.Fatalf("disabled birth: clears %v", clears)
	}
	stop()
	if r, ok := readRecord(t, dir); ok {
		t.Fatalf("state file still there when nothing is announced or left to remove: %+v", r)
	}
	// Off, with nothing left: Run returns at once and publishes nothing.
	a, stop = run(t, off, g2, pub, dir, clock)
	a.Birth([]byte("online"))
	stop()
	pub.none(t)
}

// TestCorruptStateFileIsIgnored: a torn state file costs the removal of
// old entities, never the announcement.
func TestCorruptStateFileIsIgnored(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte(`{"announced": ["homeassistant/sensor/x/y/config"`), 0o644); err != nil {
		t.Fatal(err)
	}
	pub := &recorder{}
	a, _ := run(t, DefaultOpts(), testGateway(), pub, dir, sensors.SystemClock)
	clears, configs := split(t, pub.waitN(t, len(a.Entities())))
	if len(clears) != 0 || len(configs) != len(a.Entities()) {
		t.Fatalf("clears %v, configs %v", clears, configs)
	}
}

// TestStateFileCannotClearOtherTopics: only discovery config topics are
// ever cleared, whatever the state file says.
func TestStateFileCannotClearOtherTopics(t *testing.T) {
	dir := t.TempDir()
	b, _ := json.Marshal(record{Announced: []string{"edged/gh-01/status", "homeassistant/#", "$SYS/x/y/config", "homeassistant/sensor/old/x/config"}})
	if err := os.WriteFile(filepath.Join(dir, StateFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	pub := &recorder{}
	a, _ := run(t, DefaultOpts(), testGateway(), pub, dir, sensors.SystemClock)
	clears, _ := split(t, pub.waitN(t, 1+len(a.Entities())))
	if !slices.Equal(clears, []string{"homeassistant/sensor/old/x/config"}) {
		t.Fatalf("cleared %v", clears)
	}
}

// TestBirthsAreSpaced: births in a burst (a client repeating Home
// Assistant's birth) cost one announcement per BirthGap, and the last
// one is never lost.
func TestBirthsAreSpaced(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clock := sensorstest.NewClock(t0)
	pub := &recorder{}
	a, _ := run(t, DefaultOpts(), testGateway(), pub, t.TempDir(), clock)
	n := len(a.Entities())
	pub.waitN(t, n) // the start
	a.Birth([]byte("online"))
	pub.waitN(t, n) // the first birth is served at once
	for range 5 {
		a.Birth([]byte("online"))
	}
	if err := clock.WaitTimerAt(t0.Add(BirthGap), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	pub.none(t)
	clock.Advance(BirthGap)
	pub.waitN(t, n) // the burst, once
	if p := clock.Pending(); p != 0 {
		t.Fatalf("%d timers armed after the burst was served", p)
	}
	clock.Advance(time.Hour)
	pub.none(t)
}
