// Package hass announces the gateway to Home Assistant by MQTT discovery:
// one device per gateway, a sensor per quantity of each sensor, a climate
// entity per temperature controller, and the uplink's connection and
// backlog. Each entity is one retained JSON config on
// <prefix>/<component>/<device id>/<object id>/config that points Home
// Assistant at the topics edged already publishes (sensors/topics), with
// templates that read edged's payloads and write edged's JSON commands.
//
// It keeps what it announced in <state_dir>/homeassistant.json, so an
// entity that leaves the config is removed from Home Assistant (an empty
// retained config) on the next run, and it announces again when Home
// Assistant's birth message arrives. It publishes through a Publisher
// (the local broker) and must not import the broker, the uplink or
// configs: cmd/edged describes the gateway to it.
package hass

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/edged/edged/pipeline/control"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/topics"
)

// Opts is the `homeassistant:` section of the config.
type Opts struct {
	// Enabled announces the gateway; false announces nothing and removes
	// what an earlier run announced.
	Enabled bool `yaml:"enabled"`
	// Prefix is Home Assistant's discovery prefix (its MQTT option
	// "discovery prefix"); Home Assistant's birth message is
	// <Prefix>/status.
	Prefix string `yaml:"prefix"`
	// ConfigurationURL is the device's link to the dashboard in Home
	// Assistant; "" derives it from http.listen_tls or http.listen.
	ConfigurationURL string `yaml:"configuration_url"`
}

// DefaultPrefix is Home Assistant's default discovery prefix.
const DefaultPrefix = "homeassistant"

// DefaultOpts are the defaults of Opts: on, under Home Assistant's
// default prefix.
func DefaultOpts() Opts { return Opts{Enabled: true, Prefix: DefaultPrefix} }

// Validate checks the prefix's form and the URL; the config loader checks
// that the prefix does not overlap the gateway's own topics.
func (o *Opts) Validate() error {
	if o.Prefix == "" {
		return sensors.FieldErrorf("prefix", "must not be empty (Home Assistant's default is %q)", DefaultPrefix)
	}
	if o.ConfigurationURL != "" {
		u, err := url.Parse(o.ConfigurationURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return sensors.FieldErrorf("configuration_url", "%q is not an http:// or https:// URL with a host (e.g. http://greenhouse.local:8080/)", o.ConfigurationURL)
		}
	}
	return nil
}

// BirthTopic returns <prefix>/status, where Home Assistant says "online"
// when it (re)connects.
func (o *Opts) BirthTopic() string { return o.Prefix + "/status" }

// Gateway describes what is announced. cmd/edged fills it from the
// config and the opened devices.
type Gateway struct {
	ID          string // device id: the node id of every config topic
	Name        string // display name; "" uses ID
	TopicPrefix string // device.topic_prefix
	Version     string // edged's version, the device's sw_version
	// ConfigurationURL is the dashboard's URL, "" when unknown.
	ConfigurationURL string
	Sensors          []Sensor
	Controllers      []control.Opts
	// Uplink announces the uplink's connection and backlog.
	Uplink bool
}

// Sensor is one configured sensor.
type Sensor struct {
	ID, Name   string
	Quantities []sensors.Quantity
	Poll       sensors.PollOpts
}

// Entity is one discovery config: its retained topic and JSON payload.
type Entity struct {
	Component string // sensor, binary_sensor or climate
	Topic     string // <prefix>/<component>/<device id>/<object id>/config
	Payload   []byte
}

// Home Assistant's names for what edged announces.
const (
	componentSensor       = "sensor"
	componentBinarySensor = "binary_sensor"
	componentClimate      = "climate"
)

// Entities returns the configs of every entity of g under o's prefix, in
// a stable order: sensors, controllers, uplink. Controllers whose input
// is not a temperature are not announced (a climate entity holds a
// temperature).
func Entities(o Opts, g Gateway) ([]Entity, error) {
	b := builder{o: o, g: g, tree: topics.New(g.TopicPrefix)}
	name := g.Name
	if name == "" {
		name = g.ID
	}
	b.dev = device{
		Identifiers:      []string{"edged_" + g.ID},
		Name:             name,
		Manufacturer:     "edged",
		Model:            "edged gateway",
		SWVersion:        g.Version,
		ConfigurationURL: g.ConfigurationURL,
	}
	b.org = origin{Name: "edged", SWVersion: g.Version}
	for _, s := range g.Sensors {
		for _, q := range s.Quantities {
			if err := b.sensor(s, q); err != nil {
				return nil, err
			}
		}
	}
	for _, c := range g.Controllers {
		if err := b.climate(c); err != nil {
			return nil, err
		}
	}
	if g.Uplink {
		if err := b.uplink(); err != nil {
			return nil, err
		}
	}
	return b.out, nil
}

type builder struct {
	o    Opts
	g    Gateway
	tree topics.Tree
	dev  device
	org  origin
	out  []Entity
}

// The keys below are Home Assistant's full names (not the abbreviations),
// so a person reading `mosquitto_sub -t 'homeassistant/#'` can follow
// them; the schema test holds them against Home Assistant's documentation.

type device struct {
	Identifiers      []string `json:"identifiers"`
	Name             string   `json:"name"`
	Manufacturer     string   `json:"manufacturer"`
	Model            string   `json:"model"`
	SWVersion        string   `json:"sw_version,omitempty"`
	ConfigurationURL string   `json:"configuration_url,omitempty"`
}

type origin struct {
	Name      string `json:"name"`
	SWVersion string `json:"sw_version,omitempty"`
}

type availability struct {
	Topic string `json:"topic"`
}

type sensorConfig struct {
	Name                      string         `json:"name"`
	UniqueID                  string         `json:"unique_id"`
	DeviceClass               string         `json:"device_class,omitempty"`
	EntityCategory            string         `json:"entity_category,omitempty"`
	UnitOfMeasurement         string         `json:"unit_of_measurement,omitempty"`
	StateClass                string         `json:"state_class"`
	SuggestedDisplayPrecision *int           `json:"suggested_display_precision,omitempty"`
	StateTopic                string         `json:"state_topic"`
	ValueTemplate             string         `json:"value_template"`
	ExpireAfter               int            `json:"expire_after,omitempty"`
	Availability              []availability `json:"availability"`
	AvailabilityMode          string         `json:"availability_mode,omitempty"`
	Device                    device         `json:"device"`
	Origin                    origin         `json:"origin"`
}

type binarySensorConfig struct {
	Name           string         `json:"name"`
	UniqueID       string         `json:"unique_id"`
	DeviceClass    string         `json:"device_class"`
	EntityCategory string         `json:"entity_category,omitempty"`
	StateTopic     string         `json:"state_topic"`
	ValueTemplate  string         `json:"value_template"`
	Availability   []availability `json:"availability"`
	Device         device         `json:"device"`
	Origin         origin         `json:"origin"`
}

type climateConfig struct {
	Name                       string         `json:"name"`
	UniqueID                   string         `json:"unique_id"`
	Modes                      []string       `json:"modes"`
	ModeCommandTopic           string         `json:"mode_command_topic"`
	ModeCommandTemplate        string         `json:"mode_command_template"`
	ModeStateTopic             string         `json:"mode_state_topic"`
	ModeStateTemplate          string         `json:"mode_state_template"`
	TemperatureCommandTopic    string         `json:"temperature_command_topic"`
	TemperatureCommandTemplate string         `json:"temperature_command_template"`
	TemperatureStateTopic      string         `json:"temperature_state_topic"`
	TemperatureStateTemplate   string         `json:"temperature_state_template"`
	CurrentTemperatureTopic    string         `json:"current_temperature_topic"`
	CurrentTemperatureTemplate string         `json:"current_temperature_template"`
	ActionTopic                string         `json:"action_topic"`
	ActionTemplate             string         `json:"action_template"`
	MinTemp                    *float64       `json:"min_temp,omitempty"`
	MaxTemp                    *float64       `json:"max_temp,omitempty"`
	TempStep                   float64        `json:"temp_step"`
	Precision                  float64        `json:"precision"`
	TemperatureUnit            string         `json:"temperature_unit"`
	Availability               []availability `json:"availability"`
	Device                     device         `json:"device"`
	Origin                     origin         `json:"origin"`
}

// Templates. Home Assistant renders them with Jinja2: value templates
// with value (the payload) and value_json (the payload parsed), command
// templates with value (the new temperature, or the HVAC mode).
const (
	// readingTemplate reads PREFIX/sensor/<id>/<quantity>.
	readingTemplate = "{{ value_json.value }}"
	// setpointCommand writes {"setpoint": 21.5}.
	setpointCommand = "{{ {'setpoint': value} | tojson }}"
	// modeCommand writes {"mode": "auto"} for heat or cool, {"mode":
	// "off"} for off.
	modeCommand = "{{ {'mode': 'off' if value == 'off' else 'auto'} | tojson }}"
	// setpointState and inputState read PREFIX/control/<id>/state; an
	// input of null (stale, offline) renders None, which Home Assistant
	// takes as "no current temperature".
	setpointState = "{{ value_json.setpoint }}"
	inputState    = "{{ value_json.input }}"
	// uplinkConnected and uplinkBacklog read PREFIX/uplink/state.
	uplinkConnected = "{{ 'ON' if value_json.connected else 'OFF' }}"
	uplinkBacklog   = "{{ value_json.backlog }}"
)

// modeState maps edged's mode to Home Assistant's: auto is heat (or cool
// for a reverse-acting loop), off is off, and manual, which Home
// Assistant has no mode for, is None: the mode shows as unknown while an
// operator drives the output by hand.
func modeState(auto string) string {
	return "{% if value_json.mode == 'auto' %}" + auto + "{% elif value_json.mode == 'off' %}off{% else %}None{% endif %}"
}

// actionState says what the output does: off in mode off, heating (or
// cooling) while the output is on, idle otherwise.
func actionState(active string) string {
	return "{% if value_json.mode == 'off' %}off{% elif value_json.output > 0 %}" + active + "{% else %}idle{% endif %}"
}

// Home Assistant's device class and display precision per quantity;
// level (0..1) has no device class.
var quantityClass = map[sensors.Quantity]struct {
	class     string
	precision int
}{
	sensors.Temperature: {"temperature", 1},
	sensors.Humidity:    {"humidity", 0},
	sensors.Illuminance: {"illuminance", 0},
	sensors.Pressure:    {"pressure", 0},
	sensors.Voltage:     {"voltage", 2},
	sensors.Level:       {"", 2},
}

func (b *builder) uniqueID(parts ...string) string {
	return "edged_" + b.g.ID + "_" + strings.Join(parts, "_")
}

// configTopic returns <prefix>/<component>/<device id>/<object id>/config.
func (b *builder) configTopic(component, object string) string {
	return b.o.Prefix + "/" + component + "/" + b.g.ID + "/" + object + "/config"
}

func (b *builder) add(component, object string, cfg any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // templates hold '>' and '&' is possible in names
	if err := enc.Encode(cfg); err != nil {
		return fmt.Errorf("hass: %s %s: %w", component, object, err)
	}
	b.out = append(b.out, Entity{
		Component: component,
		Topic:     b.configTopic(component, object),
		Payload:   bytes.TrimSuffix(buf.Bytes(), []byte("\n")),
	})
	return nil
}

func (b *builder) status() availability { return availability{Topic: b.tree.Status()} }

func (b *builder) sensor(s Sensor, q sensors.Quantity) error {
	if !q.Valid() {
		return fmt.Errorf("hass: sensor %q: invalid quantity %v", s.ID, q)
	}
	name := s.Name
	if name == "" {
		name = s.ID
	}
	qc := quantityClass[q]
	prec := qc.precision
	cfg := sensorConfig{
		Name:                      name + " " + q.String(),
		UniqueID:                  b.uniqueID("sensor", s.ID, q.String()),
		DeviceClass:               qc.class,
		UnitOfMeasurement:         q.Unit(),
		StateClass:                "measurement",
		SuggestedDisplayPrecision: &prec,
		StateTopic:                b.tree.Sensor(s.ID, q),
		ValueTemplate:             readingTemplate,
		Availability:              []availability{b.status(), {Topic: b.tree.Availability(s.ID)}},
		AvailabilityMode:          "all",
		Device:                    b.dev,
		Origin:                    b.org,
	}
	if d, ok := ExpireAfter(s.Poll, q); ok {
		cfg.ExpireAfter = int(d / time.Second)
	}
	return b.add(componentSensor, s.ID+"_"+q.String(), cfg)
}

func (b *builder) climate(c control.Opts) error {
	_, q, err := c.InputRef()
	if err != nil {
		return fmt.Errorf("hass: controller %q: %w", c.ID, err)
	}
	if q != sensors.Temperature {
		return nil
	}
	auto, active := "heat", "heating"
	if c.Reverse() {
		auto, active = "cool", "cooling"
	}
	set, state := b.tree.ControlSet(c.ID), b.tree.ControlState(c.ID)
	cfg := climateConfig{
		Name:                       c.ID,
		UniqueID:                   b.uniqueID("control", c.ID),
		Modes:                      []string{"off", auto},
		ModeCommandTopic:           set,
		ModeCommandTemplate:        modeCommand,
		ModeStateTopic:             state,
		ModeStateTemplate:          modeState(auto),
		TemperatureCommandTopic:    set,
		TemperatureCommandTemplate: setpointCommand,
		TemperatureStateTopic:      state,
		TemperatureStateTemplate:   setpointState,
		CurrentTemperatureTopic:    state,
		CurrentTemperatureTemplate: inputState,
		ActionTopic:                state,
		ActionTemplate:             actionState(active),
		MinTemp:                    finite(c.SetpointMin),
		MaxTemp:                    finite(c.SetpointMax),
		TempStep:                   0.1,
		Precision:                  0.1,
		TemperatureUnit:            "C",
		Availability:               []availability{b.status()},
		Device:                     b.dev,
		Origin:                     b.org,
	}
	return b.add(componentClimate, c.ID, cfg)
}

func finite(p *float64) *float64 {
	if p == nil || math.IsNaN(*p) || math.IsInf(*p, 0) {
		return nil
	}
	v := *p
	return &v
}

func (b *builder) uplink() error {
	state := b.tree.UplinkState()
	conn := binarySensorConfig{
		Name:           "uplink",
		UniqueID:       b.uniqueID("uplink", "connected"),
		DeviceClass:    "connectivity",
		EntityCategory: "diagnostic",
		StateTopic:     state,
		ValueTemplate:  uplinkConnected,
		Availability:   []availability{b.status()},
		Device:         b.dev,
		Origin:         b.org,
	}
	if err := b.add(componentBinarySensor, "uplink_connected", conn); err != nil {
		return err
	}
	zero := 0
	backlog := sensorConfig{
		Name:                      "uplink backlog",
		UniqueID:                  b.uniqueID("uplink", "backlog"),
		EntityCategory:            "diagnostic",
		UnitOfMeasurement:         "messages",
		StateClass:                "measurement",
		SuggestedDisplayPrecision: &zero,
		StateTopic:                state,
		ValueTemplate:             uplinkBacklog,
		Availability:              []availability{b.status()},
		Device:                    b.dev,
		Origin:                    b.org,
	}
	return b.add(componentSensor, "uplink_backlog", backlog)
}
