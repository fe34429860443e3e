package topics_test

import (
	"fmt"
	"testing"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/topics"
)

// The expected topics are literal on purpose: they are the names LAN
// apps and cloud rules depend on (README "Topics and payloads").
func TestBuilders(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		want   []string // Status, Sensor, Availability, ControlSet, ControlState, ControlSetFilter, ControlStateFilter, UplinkState
	}{
		{"edged/gh-01", []string{
			"edged/gh-01/status",
			"edged/gh-01/sensor/air/temperature",
			"edged/gh-01/sensor/air/availability",
			"edged/gh-01/control/heat/set",
			"edged/gh-01/control/heat/state",
			"edged/gh-01/control/+/set",
			"edged/gh-01/control/+/state",
			"edged/gh-01/uplink/state",
		}},
		{"p", []string{"p/status", "p/sensor/air/temperature", "p/sensor/air/availability",
			"p/control/heat/set", "p/control/heat/state", "p/control/+/set", "p/control/+/state", "p/uplink/state"}},
		{"", []string{"status", "sensor/air/temperature", "sensor/air/availability",
			"control/heat/set", "control/heat/state", "control/+/set", "control/+/state", "uplink/state"}},
	} {
		tr := topics.New(tc.prefix)
		got := []string{
			tr.Status(),
			tr.Sensor("air", sensors.Temperature),
			tr.Availability("air"),
			tr.ControlSet("heat"),
			tr.ControlState("heat"),
			tr.ControlSetFilter(),
			tr.ControlStateFilter(),
			tr.UplinkState(),
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("New(%q): builder %d = %q, want %q", tc.prefix, i, got[i], tc.want[i])
			}
		}
	}
}

func TestPrefix(t *testing.T) {
	if topics.New("edged/gh-01/") != topics.New("edged/gh-01") || topics.New("/") != topics.New("") {
		t.Error("a trailing '/' on the prefix makes another tree")
	}
	if got := topics.DefaultPrefix("gh-01"); got != "edged/gh-01" {
		t.Errorf("DefaultPrefix = %q", got)
	}
	if (topics.Tree{}) != topics.New("") {
		t.Error("the zero Tree is not the root tree")
	}
}

func TestOwns(t *testing.T) {
	tr := topics.New("edged/gh-01")
	for topic, want := range map[string]bool{
		"edged/gh-01/status":         true,
		"edged/gh-01/":               true,
		"edged/gh-01/sensor/a/b":     true,
		"edged/gh-01":                false, // the prefix itself is not under it
		"edged/gh-010/status":        false, // a look-alike
		"edged/gh-0/status":          false,
		"edged/gh-02/status":         false,
		"Edged/gh-01/status":         false,
		"/edged/gh-01/status":        false,
		"$SYS/broker/uptime":         false,
		"home/esp-3/temperature":     false,
		"edged/gh-01/control/x/set":  true,
		"edged/gh-01x/control/x/set": false,
	} {
		if got := tr.Owns(topic); got != want {
			t.Errorf("Owns(%q) = %v, want %v", topic, got, want)
		}
	}
	if !topics.New("").Owns("anything/at/all") {
		t.Error("the root tree does not own every topic")
	}
}

func TestParseControl(t *testing.T) {
	tr := topics.New("P")
	for _, tc := range []struct {
		topic   string
		setID   string // "" when ParseControlSet must refuse
		stateID string // "" when ParseControlState must refuse
		rootSet string // ParseControlSet of the root tree
	}{
		{topic: "P/control/heat/set", setID: "heat"},
		{topic: "P/control/heat/state", stateID: "heat"},
		{topic: "P/control/x/set", setID: "x"},
		{topic: "P/control/heat-2_a/set", setID: "heat-2_a"},
		{topic: "P/control//set"},              // empty id
		{topic: "P/control//state"},            // empty id
		{topic: "P/control/a/b/set"},           // two levels
		{topic: "P/control/a/set/x"},           // longer
		{topic: "P/control/a/set/"},            // trailing empty level
		{topic: "P/control/a/"},                // no leaf
		{topic: "P/control/a"},                 // no leaf
		{topic: "P/control/"},                  // nothing
		{topic: "P/control"},                   // nothing
		{topic: "P/control/+/set"},             // a wildcard is no id
		{topic: "P/control/#/set"},             // a wildcard is no id
		{topic: "P/control/a+/set"},            // nor part of one
		{topic: "P/control/#"},                 // a filter
		{topic: "P/control/heat/Set"},          // case matters
		{topic: "P/control/heat/sets"},         // a longer leaf
		{topic: "P/control/heat/se"},           // a shorter leaf
		{topic: "P2/control/x/set"},            // a prefix look-alike
		{topic: "PP/control/x/set"},            // a prefix look-alike
		{topic: "p/control/x/set"},             // case matters in the prefix too
		{topic: "P/P/control/x/set"},           // a deeper tree
		{topic: "/P/control/x/set"},            // a leading empty level
		{topic: "P//control/x/set"},            // an empty level after P
		{topic: "control/x/set", rootSet: "x"}, // only at the root
		{topic: "Pcontrol/x/set"},              // the '/' after P is required
		{topic: "P/controls/x/set"},            // a look-alike level
		{topic: "P/sensor/x/set"},              // another branch
		{topic: "$share/g/P/control/x/set"},    // a shared subscription filter
		{topic: "P/control/x/set\x00"},         // NUL after the leaf
		{topic: "P/control/\u00e9/set", setID: "\u00e9"},
		{topic: ""},
	} {
		if id, ok := tr.ParseControlSet(tc.topic); id != tc.setID || ok != (tc.setID != "") {
			t.Errorf("ParseControlSet(%q) = %q, %v; want %q, %v", tc.topic, id, ok, tc.setID, tc.setID != "")
		}
		if id, ok := tr.ParseControlState(tc.topic); id != tc.stateID || ok != (tc.stateID != "") {
			t.Errorf("ParseControlState(%q) = %q, %v; want %q, %v", tc.topic, id, ok, tc.stateID, tc.stateID != "")
		}
		if id, ok := topics.New("").ParseControlSet(tc.topic); id != tc.rootSet || ok != (tc.rootSet != "") {
			t.Errorf("root ParseControlSet(%q) = %q, %v; want %q, %v", tc.topic, id, ok, tc.rootSet, tc.rootSet != "")
		}
	}
}

// TestParseRoundTrip: what a builder makes, its parser reads back.
func TestParseRoundTrip(t *testing.T) {
	for _, prefix := range []string{"edged/gh-01", "p", "", "a/b/c/d"} {
		tr := topics.New(prefix)
		for _, id := range []string{"heat", "vent", "x", "a_b-c"} {
			if got, ok := tr.ParseControlSet(tr.ControlSet(id)); !ok || got != id {
				t.Errorf("%q: ParseControlSet(ControlSet(%q)) = %q, %v", prefix, id, got, ok)
			}
			if got, ok := tr.ParseControlState(tr.ControlState(id)); !ok || got != id {
				t.Errorf("%q: ParseControlState(ControlState(%q)) = %q, %v", prefix, id, got, ok)
			}
			if _, ok := tr.ParseControlSet(tr.ControlState(id)); ok {
				t.Errorf("%q: ParseControlSet took a state topic", prefix)
			}
			if _, ok := tr.ParseControlState(tr.ControlSet(id)); ok {
				t.Errorf("%q: ParseControlState took a command topic", prefix)
			}
			if !tr.Owns(tr.ControlSet(id)) || !tr.Owns(tr.Sensor(id, sensors.Humidity)) {
				t.Errorf("%q: a built topic is not owned", prefix)
			}
		}
		if _, ok := tr.ParseControlSet(tr.ControlSetFilter()); ok {
			t.Errorf("%q: ParseControlSet took its own filter", prefix)
		}
	}
}

// TestParseAllocs pins what the broker relies on: deciding whether a
// publish is a command allocates nothing.
func TestParseAllocs(t *testing.T) {
	tr := topics.New("edged/a-long-gateway-prefix-of-more-than-32-bytes")
	topic := tr.ControlSet("heat")
	var hits int
	if n := testing.AllocsPerRun(100, func() {
		for _, ok := range []bool{
			tr.Owns(topic),
			second(tr.ParseControlSet(topic)),
			second(tr.ParseControlState(topic)),
			second(tr.ParseControlSet("elsewhere/control/heat/set")),
		} {
			if ok {
				hits++
			}
		}
	}); n != 0 {
		t.Errorf("parsing allocates %v times", n)
	}
	if hits != 2*101 { // AllocsPerRun runs the function once more to warm up
		t.Errorf("%d hits", hits)
	}
}

func second(_ string, ok bool) bool { return ok }

func FuzzParseControlSet(f *testing.F) {
	for _, s := range []string{"P/control/heat/set", "P/control//set", "P/control/a/b/set", "P2/control/x/set", "P/control/+/set", "P/control/heat/state"} {
		f.Add(s)
	}
	tr := topics.New("P")
	f.Fuzz(func(t *testing.T, topic string) {
		id, ok := tr.ParseControlSet(topic)
		if !ok {
			if id != "" {
				t.Fatalf("refused %q with id %q", topic, id)
			}
			return
		}
		if tr.ControlSet(id) != topic {
			t.Fatalf("ParseControlSet(%q) = %q, which builds %q", topic, id, tr.ControlSet(id))
		}
		if id == "" || len(id) != len(topic)-len("P/control//set") {
			t.Fatalf("ParseControlSet(%q) = %q", topic, id)
		}
	})
}

func ExampleTree() {
	tr := topics.New("edged/gh-01")
	fmt.Println(tr.Sensor("air", sensors.Temperature))
	fmt.Println(tr.ControlSetFilter())
	id, ok := tr.ParseControlSet("edged/gh-01/control/heat/set")
	fmt.Println(id, ok)
	_, ok = tr.ParseControlSet("edged/gh-01/control/a/b/set")
	fmt.Println(ok)
	// Output:
	// edged/gh-01/sensor/air/temperature
	// edged/gh-01/control/+/set
	// heat true
	// false
}
