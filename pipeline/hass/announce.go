package hass

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/statefile"
)

// Publisher takes a message for the local broker. Discovery configs are
// retained, and a retained empty payload removes an entity.
type Publisher interface {
	Publish(topic string, payload []byte, retain bool) error
}

// StateFile is the file in state_dir that lists the config topics edged
// announced and those it still has to clear.
const StateFile = "homeassistant.json"

// BirthGap is the least time between two announcements that birth
// messages ask for: Home Assistant sends one per (re)connect, and a LAN
// client that repeats it must not make the gateway publish every config
// over and over. A birth inside the gap is served when the gap ends.
const BirthGap = 10 * time.Second

// record is the state file.
type record struct {
	// Announced are the config topics of the last announcement.
	Announced []string `json:"announced"`
	// Removed are config topics announced once and no longer in the
	// config: each is cleared (an empty retained config) at every start
	// and at Home Assistant's next birth message, then forgotten.
	Removed []string `json:"removed,omitempty"`
}

// Announcer publishes the discovery configs at start and whenever Home
// Assistant's birth message arrives, and removes the entities an earlier
// run announced that the config no longer has.
type Announcer struct {
	opts     Opts
	entities []Entity
	pub      Publisher
	path     string
	clock    sensors.Clock
	log      *slog.Logger
	birth    chan struct{}

	// removed is what the next birth clears; Run's goroutine only.
	removed []string
}

// New returns an announcer for g. The state file lives in stateDir.
// Nothing is published before Run.
func New(o Opts, g Gateway, pub Publisher, stateDir string, clock sensors.Clock, log *slog.Logger) (*Announcer, error) {
	log = sensors.LogOrDiscard(log)
	a := &Announcer{
		opts:  o,
		pub:   pub,
		path:  filepath.Join(stateDir, StateFile),
		clock: clock,
		log:   log.With("component", "homeassistant"),
		birth: make(chan struct{}, 1),
	}
	if o.Enabled {
		var err error
		if a.entities, err = Entities(o, g); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Entities returns what the announcer announces (none when disabled).
func (a *Announcer) Entities() []Entity { return a.entities }

// Birth tells the announcer a message arrived on Home Assistant's birth
// topic; "online" asks for an announcement. It never blocks: it may be
// called from the broker's delivery to an in-process subscription.
func (a *Announcer) Birth(payload []byte) {
	if string(payload) != "online" {
		return
	}
	select {
	case a.birth <- struct{}{}:
	default: // one is pending; it announces everything
	}
}

// Run announces again after each birth message (at most once per
// BirthGap), until ctx is done. Call Start first.
func (a *Announcer) Run(ctx context.Context) {
	if !a.opts.Enabled && len(a.removed) == 0 {
		return // nothing to announce, nothing left to remove
	}
	timer := a.clock.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var last time.Time
	armed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.birth:
			if armed {
				continue
			}
			if now := a.clock.Now(); !last.IsZero() && now.Sub(last) < BirthGap {
				timer.Reset(last.Add(BirthGap).Sub(now))
				armed = true
				continue
			}
		case <-timer.C():
			armed = false
			select {
			case <-a.birth: // came while armed: this announcement serves it
			default:
			}
		}
		last = a.clock.Now()
		a.onBirth()
	}
}

// Start reads what the last run announced, records what this run
// announces, clears what left the config and announces: the retained
// configs are in the broker when it returns.
func (a *Announcer) Start() {
	old := a.load()
	current := a.topics()
	var removed []string
	for _, t := range append(old.Announced, old.Removed...) {
		if !slices.Contains(current, t) && !slices.Contains(removed, t) && configTopic(t) {
			removed = append(removed, t)
		}
	}
	a.removed = removed
	a.save(record{Announced: current, Removed: removed}, old)
	if len(removed) > 0 {
		a.log.Info("removing entities that left the config from Home Assistant (now and at its next birth message)", "topics", removed)
	}
	a.clear(removed)
	a.announce("started")
}

// onBirth clears what is left to remove and announces everything again.
func (a *Announcer) onBirth() {
	removed := a.removed
	a.clear(removed)
	a.announce("home assistant online")
	if len(removed) == 0 {
		return
	}
	a.removed = nil
	cur := record{Announced: a.topics()}
	a.save(cur, record{Announced: cur.Announced, Removed: removed})
	a.log.Info("removed entities from Home Assistant", "topics", removed)
}

func (a *Announcer) topics() []string {
	ts := make([]string, len(a.entities))
	for i, e := range a.entities {
		ts[i] = e.Topic
	}
	return ts
}

// configTopic reports whether t, read from the state file, looks like a
// discovery config topic: only those are ever cleared, whatever the file
// says.
func configTopic(t string) bool {
	return strings.HasSuffix(t, "/config") && strings.Count(t, "/") >= 3 &&
		!strings.HasPrefix(t, "$") && !strings.HasPrefix(t, "/") && !strings.ContainsAny(t, "+#\x00")
}

// clear publishes an empty retained config on each topic: Home Assistant
// removes the entity, and the broker drops the retained config.
func (a *Announcer) clear(ts []string) {
	for _, t := range ts {
		if err := a.pub.Publish(t, nil, true); err != nil {
			a.log.Warn("cannot remove an entity from Home Assistant", "topic", t, "error", err)
		}
	}
}

func (a *Announcer) announce(why string) {
	if len(a.entities) == 0 {
		return
	}
	var bytes, failed int
	var firstErr error
	for _, e := range a.entities {
		bytes += len(e.Topic) + len(e.Payload)
		if err := a.pub.Publish(e.Topic, e.Payload, true); err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if failed > 0 {
		a.log.Warn("announcement to Home Assistant incomplete", "failed", failed, "of", len(a.entities), "error", firstErr)
		return
	}
	a.log.Debug("announced to Home Assistant", "why", why, "entities", len(a.entities), "bytes", bytes)
}

// load reads the state file; a missing file is an empty record, and an
// unreadable or corrupt one is logged and taken as empty (nothing can be
// removed then: the entities stay in Home Assistant until deleted there).
func (a *Announcer) load() record {
	var r record
	b, err := os.ReadFile(a.path)
	if errors.Is(err, fs.ErrNotExist) {
		return r
	}
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil {
		a.log.Warn("ignoring unreadable state file: entities removed from the config since the last run stay in Home Assistant", "path", a.path, "error", err)
		return record{}
	}
	return r
}

// save writes r unless it equals old, the file's content: the file is
// rewritten only when the announced set changes.
func (a *Announcer) save(r, old record) {
	if slices.Equal(r.Announced, old.Announced) && slices.Equal(r.Removed, old.Removed) {
		return
	}
	if len(r.Announced) == 0 && len(r.Removed) == 0 {
		if err := os.Remove(a.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			a.log.Warn("cannot remove state file", "path", a.path, "error", err)
		}
		return
	}
	b, _ := json.MarshalIndent(r, "", "  ") // strings only: cannot fail
	if err := statefile.Write(a.path, append(b, '\n')); err != nil {
		a.log.Warn("cannot write state file: an entity removed from the config later may stay in Home Assistant", "path", a.path, "error", err)
	}
}
