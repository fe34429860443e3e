package uplink

import (
	"errors"
	"strings"
)

// MatchFilter reports whether the topic name matches the MQTT topic filter
// f: '+' matches exactly one level (an empty one too), '#' the parent level
// and everything below it. As in MQTT, wildcards at the first level do not
// match topics that start with '$' (broker internals such as $SYS).
func MatchFilter(f, topic string) bool {
	if f == "" || topic == "" {
		return false
	}
	if topic[0] == '$' && (f[0] == '+' || f[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(f, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			// "a/#" matches "a": the parent level.
			return frest == "#"
		case !fmore:
			return false
		}
		f, topic = frest, trest
	}
}

// errRemoteTopic is returned when a template yields an unusable topic name.
var errRemoteTopic = errors.New("uplink: remote topic template gives an invalid topic")

// remoteTopic maps a local topic through rule r: Strip is removed from the
// front of the local topic, then {topic} and {device} are substituted into
// the Remote template (an empty template means the stripped topic).
func (r *Rule) remoteTopic(local, device string) (string, error) {
	t := local
	if r.Strip != "" {
		t = strings.TrimPrefix(t, r.Strip)
	}
	out := t
	if r.Remote != "" {
		out = strings.NewReplacer("{topic}", t, "{device}", device).Replace(r.Remote)
	}
	if out == "" || strings.ContainsAny(out, "+#\x00") {
		return "", errRemoteTopic
	}
	return out, nil
}

// match returns the first rule whose Local filter matches topic, or nil.
// First match wins, so a specific rule listed before a broad one takes
// precedence and a message is forwarded at most once.
func match(rules []Rule, topic string) *Rule {
	for i := range rules {
		if MatchFilter(rules[i].Local, topic) {
			return &rules[i]
		}
	}
	return nil
}
