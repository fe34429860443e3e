package configs

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/edged/edged/pipeline/control"
	"github.com/edged/edged/sensors/topics"
)

// idPattern is what ids may look like: they become MQTT topic levels.
var idPattern = `^[a-z0-9][a-z0-9_-]*$`

func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// locate finds the node at path under n (string keys for mappings, int
// indexes for lists) and returns the deepest node it reached, so a problem
// is blamed on the most precise place that exists in the file.
func locate(n *yaml.Node, path ...any) *yaml.Node {
	for _, step := range path {
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		var next *yaml.Node
		switch s := step.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == s {
						next = n.Content[i+1]
						if isNull(next) {
							next = n.Content[i]
						}
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && s < len(n.Content) {
				next = n.Content[s]
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// check runs the cross-section checks and fills the defaults that depend
// on other keys. Every problem is blamed on the node at fault.
func (l *loader) check(c *Config, root *yaml.Node) {
	d := l.d
	switch dev := locate(root, "device"); {
	case dev != root && dev.Kind != yaml.MappingNode:
		// Already reported: device is not a mapping.
	case c.Device.ID == "":
		d.errorf(locate(root, "device", "id"), "device: id: missing: name this gateway, e.g. gh-01 (it becomes part of every topic)")
	case !validID(c.Device.ID):
		d.errorf(locate(root, "device", "id"), "device: id: %q is not a valid id (want %s: lower case, digits, _ and -, at most 64)", c.Device.ID, idPattern)
	}
	if c.Device.TopicPrefix == "" {
		if c.Device.ID != "" {
			c.Device.TopicPrefix = topics.DefaultPrefix(c.Device.ID)
		}
	} else if err := checkPrefix(c.Device.TopicPrefix); err != nil {
		d.errorf(locate(root, "device", "topic_prefix"), "device: topic_prefix: %v", err)
	}
	l.checkHomeAssistant(c, root)
	if c.StateDir == "" {
		d.errorf(locate(root, "state_dir"), "state_dir: must not be empty (the uplink buffer lives there; default %s)", DefaultStateDir)
	}

	sensorAt := map[string]int{}
	for i, s := range c.Sensors {
		l.checkID(root, "sensors", i, s.ID, sensorAt)
	}
	actuatorAt := map[string]int{}
	for i, a := range c.Actuators {
		l.checkID(root, "actuators", i, a.ID, actuatorAt)
	}
	l.checkI2C(c, root)
	l.checkSharedChips(c, root)
	l.checkControllers(c, root, sensorAt, actuatorAt)
	if c.Uplink != nil && c.Uplink.ClientID == "" {
		c.Uplink.ClientID = c.Device.ID
	}
	l.checkUsers(c, root)
}

// checkUsers reports a user name or token hash used twice, and hands
// the users to the broker.
func (l *loader) checkUsers(c *Config, root *yaml.Node) {
	names := map[string]int{}
	tokens := map[string]string{}
	for i, u := range c.Users {
		if prev, dup := names[u.Name]; dup && u.Name != "" {
			l.d.errorf(locate(root, "users", i, "name"), "users: name: user %q is already defined (users[%d], line %d)", u.Name, prev, locate(root, "users", prev, "name").Line)
			continue
		}
		names[u.Name] = i
		for j, t := range u.Tokens {
			if other, dup := tokens[t]; dup {
				l.d.errorf(locate(root, "users", i, "tokens", j), "users: tokens: this token hash is also one of user %q: make a new token for each", other)
			}
			tokens[t] = u.Name
		}
	}
	c.Broker.Users = c.Users
}

// checkHomeAssistant checks the discovery prefix as a topic prefix, and
// that it stays clear of the gateway's own topics: Home Assistant
// publishes its birth message under it, which no LAN client may do under
// device.topic_prefix.
func (l *loader) checkHomeAssistant(c *Config, root *yaml.Node) {
	p := c.HomeAssistant.Prefix
	if p == "" {
		return // already reported by hass.Opts.Validate
	}
	at := locate(root, "homeassistant", "prefix")
	if err := checkPrefix(p); err != nil {
		l.d.errorf(at, "homeassistant: prefix: %v", err)
		return
	}
	dev := c.Device.TopicPrefix
	if dev == "" {
		return // no device id: already reported
	}
	if p == dev || strings.HasPrefix(p, dev+"/") || strings.HasPrefix(dev, p+"/") {
		l.d.errorf(at, "homeassistant: prefix: %q overlaps device.topic_prefix %q: the gateway's topics and Home Assistant's discovery topics must not be one inside the other", p, dev)
	}
}

// checkPrefix reports why p cannot start topic names.
func checkPrefix(p string) error {
	switch {
	case strings.ContainsAny(p, "+#"):
		return fmt.Errorf("%q contains a wildcard (+ or #)", p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q starts with '/' (an empty first level)", p)
	case strings.HasPrefix(p, "$"):
		return fmt.Errorf("%q starts with '$' (reserved for broker topics such as $SYS)", p)
	case strings.HasSuffix(p, "/") || strings.Contains(p, "//"):
		return fmt.Errorf("%q has an empty level", p)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%q contains a NUL character", p)
	}
	return nil
}

// checkID checks the id of item i of section and records it in seen.
func (l *loader) checkID(root *yaml.Node, section string, i int, id string, seen map[string]int) {
	if locate(root, section, i).Kind != yaml.MappingNode {
		return // already reported: the entry is not a mapping
	}
	at := locate(root, section, i, "id")
	kind := strings.TrimSuffix(section, "s")
	switch {
	case id == "":
		l.d.errorf(at, "id: missing: every %s needs an id", kind)
		return
	case !validID(id):
		l.d.errorf(at, "id: %q is not a valid id (want %s: lower case, digits, _ and -, at most 64)", id, idPattern)
		return
	}
	if first, dup := seen[id]; dup {
		l.d.errorf(at, "id: duplicate %s id %q (first defined on line %d)", kind, id, locate(root, section, first, "id").Line)
		return
	}
	seen[id] = i
}

// checkI2C refuses two devices at one bus and address.
func (l *loader) checkI2C(c *Config, root *yaml.Node) {
	type where struct {
		section string
		i       int
		id      string
	}
	type busAddr struct {
		bus  string
		addr uint16
	}
	used := map[busAddr]where{}
	visit := func(section string, i int, id string, opts any) {
		a, ok := opts.(i2cAddresser)
		if !ok {
			return
		}
		bus, addr := a.I2CAddr()
		k := busAddr{bus, addr}
		if first, dup := used[k]; dup {
			at := locate(root, section, i, "address")
			firstAt := locate(root, first.section, first.i, "id")
			l.d.errorf(at, "address: I2C bus %q address %#02x is already used by %s %q (line %d)",
				bus, addr, strings.TrimSuffix(first.section, "s"), first.id, firstAt.Line)
			return
		}
		used[k] = where{section, i, id}
	}
	for i, s := range c.Sensors {
		visit("sensors", i, s.ID, s.Opts)
	}
	for i, a := range c.Actuators {
		visit("actuators", i, a.ID, a.Opts)
	}
}

// checkSharedChips refuses channels of one chip that ask for different
// chip-wide settings: the chip can run at one only, so such a file would
// fail when the chip starts (and a reload could not apply it).
func (l *loader) checkSharedChips(c *Config, root *yaml.Node) {
	type first struct {
		i, value int
		id       string
	}
	seen := map[string]first{}
	for i, a := range c.Actuators {
		s, ok := a.Opts.(chipSharer)
		if !ok {
			continue
		}
		chip, key, value := s.ChipSetting()
		f, dup := seen[chip]
		if !dup {
			seen[chip] = first{i, value, a.ID}
			continue
		}
		if f.value != value {
			l.d.errorf(locate(root, "actuators", i, key), "%s: %s is shared by every channel of %s, and actuator %q (line %d) asks for another; set one %s for all of them",
				key, key, chip, f.id, locate(root, "actuators", f.i, "id").Line, key)
		}
	}
}

// checkControllers checks ids, inputs and outputs of the control loops.
func (l *loader) checkControllers(c *Config, root *yaml.Node, sensorAt, actuatorAt map[string]int) {
	d := l.d
	seen := map[string]int{}
	drivenBy := map[string]int{}
	for i := range c.Controllers {
		ctl := &c.Controllers[i]
		l.checkID(root, "controllers", i, ctl.ID, seen)
		if id, q, err := ctl.InputRef(); err == nil {
			at := locate(root, "controllers", i, "input")
			si, ok := sensorAt[id]
			if ok {
				l.checkStaleAfter(root, i, ctl, &c.Sensors[si])
			}
			if !ok {
				d.errorf(at, "input: no sensor %q (sensors: %s)", id, strings.Join(sortedKeys(sensorAt), ", "))
			} else if qs, ok := c.Sensors[si].Opts.(quantitier); ok {
				have := qs.Quantities()
				if !slices.Contains(have, q) {
					names := make([]string, len(have))
					for j, h := range have {
						names[j] = h.String()
					}
					d.errorf(at, "input: sensor %q does not measure %s (it measures %s)", id, q, strings.Join(names, ", "))
				}
			}
		}
		if ctl.Output == "" {
			continue
		}
		at := locate(root, "controllers", i, "output")
		ai, ok := actuatorAt[ctl.Output]
		if !ok {
			d.errorf(at, "output: no actuator %q (actuators: %s)", ctl.Output, strings.Join(sortedKeys(actuatorAt), ", "))
			continue
		}
		l.checkOnOff(root, i, ctl, c.Actuators[ai].Driver)
		if first, dup := drivenBy[ctl.Output]; dup {
			d.errorf(at, "output: actuator %q is already driven by controller %q (line %d); one loop per actuator",
				ctl.Output, c.Controllers[first].ID, locate(root, "controllers", first, "output").Line)
			continue
		}
		drivenBy[ctl.Output] = i
	}
}

// checkStaleAfter refuses a controller that would call its input stale
// while the Poller still calls the sensor online. The loop takes every
// good sample (sensors.SampleObserver); the sensor goes offline, which
// the loop also obeys, after offline_after failed samples in a row. So
// while it is online the longest wait between two good samples is
// offline_after intervals (offline_after-1 slots fail, the next one
// works) plus that sample's sense time, at most its timeout. A shorter
// stale_after turns the output off on every short run of failures, and
// shorter than one interval, between any two samples.
func (l *loader) checkStaleAfter(root *yaml.Node, i int, ctl *control.Opts, s *Sensor) {
	p := &s.PollOpts
	if p.Interval <= 0 || p.OfflineAfter < 1 || ctl.StaleAfter <= 0 {
		return // reported elsewhere
	}
	need := time.Duration(p.OfflineAfter)*p.Interval + p.EffectiveTimeout()
	if ctl.StaleAfter > need {
		return
	}
	l.d.errorf(locate(root, "controllers", i, "stale_after"),
		"stale_after: %v is not longer than input sensor %q's interval %v × offline_after %d + timeout %v = %v: the loop would turn its output off on failures the sensor is allowed before it counts as offline; set stale_after above %v (or shorten interval or offline_after)",
		ctl.StaleAfter, s.ID, p.Interval, p.OfflineAfter, p.EffectiveTimeout(), need, need)
}

// checkOnOff refuses a PID loop with cycle 0 on an actuator that only
// switches on and off: it would bang-bang at an output of 0.5 with no
// hysteresis and no relay protection.
func (l *loader) checkOnOff(root *yaml.Node, i int, ctl *control.Opts, driver string) {
	oo, ok := l.drv.(onOffDrivers)
	if !ok || !oo.OnOff(driver) || ctl.Cycle > 0 || ctl.Hysteresis != nil {
		return
	}
	entry := locate(root, "controllers", i)
	at := locate(root, "controllers", i, "cycle")
	if at == entry {
		at = locate(root, "controllers", i, "pid")
	}
	l.d.errorf(at, "cycle: actuator %q (%s) only switches on and off: set cycle (e.g. 60s) for time-proportioning PID, or replace pid with hysteresis: {below: 0.3, above: 0.3} for on/off control",
		ctl.Output, driver)
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}
