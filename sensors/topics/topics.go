// Package topics owns the gateway's MQTT topic tree: every topic edged
// publishes, subscribes to or recognises under its prefix P is built or
// parsed here, so LAN apps, the access rules and the cloud rules all see
// the same names. The tree (README "Topics and payloads"):
//
//	P/status                            retained "online" or "offline"
//	P/sensor/<sensor id>/<quantity>     retained reading JSON
//	P/sensor/<sensor id>/availability   retained "online" or "offline"
//	P/control/<controller id>/set       commands (never retained, never a Will)
//	P/control/<controller id>/state     retained controller state JSON
//	P/uplink/state                      retained uplink delivery state JSON
//
// Everything under P/ belongs to the gateway: below admin, only an
// operator may publish there, and only commands (P/control/<id>/set).
//
// The package only names topics: it publishes nothing, validates no ids
// (configs checks prefixes and ids before they get here) and imports
// nothing of edged but sensors, so every room may use it. The parsers
// read hostile input (topics of LAN clients) and allocate nothing.
//
// The package is named topics, not topic, so that the many variables
// called topic keep their name.
package topics

import (
	"strings"

	"github.com/edged/edged/sensors"
)

// DefaultPrefix is the prefix of a gateway whose config names none:
// "edged/<device id>".
func DefaultPrefix(deviceID string) string { return "edged/" + deviceID }

// Tree is the topic tree under one prefix. The zero Tree is the tree at
// the root (no prefix), as New("") is.
type Tree struct {
	root string // the prefix with one trailing '/', or "" at the root
}

// New returns the tree under prefix (e.g. "edged/gh-01"); a trailing '/'
// on prefix is ignored.
func New(prefix string) Tree {
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return Tree{}
	}
	return Tree{root: prefix + "/"}
}

// Owns reports whether topic lies under the prefix (P/...), the part of
// the topic space that belongs to the gateway. At the root every topic
// does.
func (t Tree) Owns(topic string) bool { return strings.HasPrefix(topic, t.root) }

// Status returns P/status, the gateway's retained status.
func (t Tree) Status() string { return t.root + "status" }

// Sensor returns P/sensor/<id>/<quantity>, where a sensor's readings of
// q are published retained. It allocates: a publisher on the reading
// path caches it.
func (t Tree) Sensor(id string, q sensors.Quantity) string {
	return t.root + "sensor/" + id + "/" + q.String()
}

// Availability returns P/sensor/<id>/availability.
func (t Tree) Availability(id string) string { return t.root + "sensor/" + id + "/availability" }

// ControlSet returns P/control/<id>/set, where commands for controller
// id arrive.
func (t Tree) ControlSet(id string) string { return t.root + "control/" + id + "/set" }

// ControlState returns P/control/<id>/state, where controller id
// publishes its retained state.
func (t Tree) ControlState(id string) string { return t.root + "control/" + id + "/state" }

// ControlSetFilter returns P/control/+/set, the filter of every
// controller's commands. Note that '+' also matches an empty level, which
// ParseControlSet refuses.
func (t Tree) ControlSetFilter() string { return t.ControlSet("+") }

// ControlStateFilter returns P/control/+/state, the filter of every
// controller's state.
func (t Tree) ControlStateFilter() string { return t.ControlState("+") }

// UplinkState returns P/uplink/state, where the uplink's delivery state
// is published retained.
func (t Tree) UplinkState() string { return t.root + "uplink/state" }

// ParseControlSet returns the controller id of a command topic
// P/control/<id>/set. It is false ("" id) for anything else: another
// prefix, an empty, wildcard or multi-level id, a longer or shorter
// topic.
func (t Tree) ParseControlSet(topic string) (id string, ok bool) {
	return t.parseControl(topic, "set")
}

// ParseControlState returns the controller id of a state topic
// P/control/<id>/state, with the rules of ParseControlSet.
func (t Tree) ParseControlState(topic string) (id string, ok bool) {
	return t.parseControl(topic, "state")
}

// parseControl matches P/control/<id>/<leaf>. It cuts the topic step by
// step rather than comparing with a concatenated prefix, so it allocates
// nothing on the broker's publish path.
func (t Tree) parseControl(topic, leaf string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, t.root)
	if !ok {
		return "", false
	}
	if rest, ok = strings.CutPrefix(rest, "control/"); !ok {
		return "", false
	}
	id, tail, ok := strings.Cut(rest, "/")
	if !ok || tail != leaf || id == "" || strings.ContainsAny(id, "+#") {
		return "", false
	}
	return id, true
}
