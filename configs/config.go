// Package configs owns edged's YAML configuration: the top-level schema,
// a strict decoder that reports every problem of a file at once as
// FILE:LINE:COL: message, and the cross-checks between sections (a
// controller's input must name a sensor that exists, ...).
//
// It does no I/O beyond reading the file and opens no hardware: driver
// options are made and validated through the Drivers interface, which
// drivers.Registry satisfies. A config that fails to load is never
// partly returned, so a bad config never half-starts the daemon.
package configs

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/pipeline/control"
	"github.com/edged/edged/pipeline/hass"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/uplink"
)

// Config is one loaded and validated configuration file.
type Config struct {
	// Path is the file the config came from ("" for Parse), for messages
	// and for resolving nothing else: relative paths in the config are
	// relative to the working directory, as the shell user expects.
	Path string `yaml:"-"`

	Device Device `yaml:"device"`
	// StateDir holds the uplink buffer and runtime overrides.
	StateDir    string           `yaml:"state_dir"`
	Log         Log              `yaml:"log"`
	Sensors     []Sensor         `yaml:"sensors"`
	Actuators   []Actuator       `yaml:"actuators"`
	Controllers []control.Opts   `yaml:"controllers"`
	Broker      localbroker.Opts `yaml:"broker"`
	HTTP        HTTP             `yaml:"http"`
	// Users are the accounts of MQTT, WebSocket and HTTP clients; Load
	// copies them to Broker.Users, which checks them.
	Users []localbroker.User `yaml:"users"`
	// Uplink is nil when the file has no uplink section, or an empty one
	// (every key commented out).
	Uplink *uplink.Opts `yaml:"uplink"`
	// HomeAssistant is MQTT discovery for Home Assistant, on by default.
	HomeAssistant hass.Opts `yaml:"homeassistant"`
	// Clock says when the wall clock is trusted (README "Clock").
	Clock Clock `yaml:"clock"`
}

// Clock says when edged trusts the wall clock.
type Clock struct {
	// Trust is "kernel" (trusted once the kernel says NTP synchronised
	// it) or "always" (a board with a battery-backed RTC, or a host whose
	// clock something else keeps right). The build-date floor and the
	// jump check apply to both.
	Trust string `yaml:"trust"`
}

// Clock trust modes.
const (
	TrustKernel = "kernel"
	TrustAlways = "always"
)

// Validate checks the trust mode's name.
func (c *Clock) Validate() error {
	switch c.Trust {
	case TrustKernel, TrustAlways:
		return nil
	}
	return sensors.FieldErrorf("trust", "unknown trust %q (want kernel or always)", c.Trust)
}

// Device identifies this gateway.
type Device struct {
	// ID names the gateway in topics and in the cloud; required.
	ID string `yaml:"id"`
	// TopicPrefix starts every topic; default "edged/<id>".
	TopicPrefix string `yaml:"topic_prefix"`
	// Name is a free-form display name.
	Name string `yaml:"name"`
}

// Log configures the daemon's log output.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn or error
	Format string `yaml:"format"` // text or json
}

// Validate checks the level and format names.
func (l *Log) Validate() error {
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		return sensors.FieldErrorf("level", "unknown level %q (want debug, info, warn or error)", l.Level)
	}
	switch l.Format {
	case "text", "json":
	default:
		return sensors.FieldErrorf("format", "unknown format %q (want text or json)", l.Format)
	}
	return nil
}

// HTTP configures the LAN HTTP surface (REST, SSE, dashboard, metrics).
type HTTP struct {
	// Listen is the plain host:port; "" disables it.
	Listen string `yaml:"listen"`
	// ListenTLS is the HTTPS host:port, with the certificate in TLS; ""
	// disables it. Both serve the same handlers.
	ListenTLS string          `yaml:"listen_tls"`
	TLS       localbroker.TLS `yaml:"tls"`
	// CORSOrigins lists the browser origins (e.g.
	// "http://dashboard.lan:3000") besides the gateway's own pages that
	// may call the API with credentials and send commands. None by
	// default; "*" is refused, since the API answers with credentials.
	CORSOrigins []string `yaml:"cors_origins"`
}

// Validate checks the listen addresses and that HTTPS has its
// certificate.
func (h *HTTP) Validate() error {
	for _, f := range []struct{ key, addr string }{{"listen", h.Listen}, {"listen_tls", h.ListenTLS}} {
		if f.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(f.addr); err != nil {
			return sensors.FieldErrorf(f.key, "listen address %q: %v (want host:port, e.g. 127.0.0.1:8080)", f.addr, err)
		}
	}
	if err := h.TLS.Validate(); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	switch {
	case h.ListenTLS != "" && h.TLS.CertFile == "":
		return sensors.FieldErrorf("tls", "listen_tls needs tls: {cert_file: ..., key_file: ...}")
	case h.ListenTLS == "" && h.TLS.CertFile != "":
		return sensors.FieldErrorf("tls", "nothing uses it: set listen_tls")
	}
	for _, o := range h.CORSOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return sensors.FieldErrorf("cors_origins", "%q is not an origin (want scheme://host[:port], e.g. http://dashboard.lan:3000; \"*\" is not allowed)", o)
		}
	}
	return nil
}

// Sensor is one entry of `sensors:`. Keys other than the common ones below
// and the inline PollOpts belong to the driver and are decoded into Opts.
type Sensor struct {
	ID     string `yaml:"id"`
	Driver string `yaml:"driver"`
	// Name is an optional display name.
	Name             string `yaml:"name"`
	sensors.PollOpts `yaml:",inline"`
	// Opts is the driver's options, a pointer made by the driver's
	// NewOpts; nil only if the driver is unknown (and the load failed).
	Opts any `yaml:"-"`
}

// Actuator is one entry of `actuators:`; keys other than id, driver and
// name belong to the driver and are decoded into Opts.
type Actuator struct {
	ID     string `yaml:"id"`
	Driver string `yaml:"driver"`
	Name   string `yaml:"name"`
	Opts   any    `yaml:"-"`
}

// Drivers makes driver options. drivers.Registry implements it; configs
// does not import drivers, so loading a config opens no hardware.
type Drivers interface {
	// SensorOpts returns a pointer to fresh options with defaults for the
	// named sensor driver, or false if there is no such sensor driver.
	SensorOpts(driver string) (any, bool)
	// ActuatorOpts is SensorOpts for actuator drivers.
	ActuatorOpts(driver string) (any, bool)
	// Names lists the driver names of one kind, for messages.
	Names(actuators bool) []string
}

// Optional capabilities of driver options, checked by type assertion.
type (
	// quantitier is implemented by sensor options that know what the
	// sensor will measure, so controller inputs can be checked.
	quantitier interface{ Quantities() []sensors.Quantity }
	// i2cAddresser is implemented by options of I2C devices, so two
	// devices at one address are caught before anything opens.
	i2cAddresser interface {
		I2CAddr() (bus string, addr uint16)
	}
	// chipSharer is implemented by options of an output that shares its
	// chip, and a chip-wide setting, with other channels (a PCA9685's
	// PWM frequency): chip names the chip, key the setting's key, value
	// what the chip would run at; the channels of one chip must agree.
	chipSharer interface {
		ChipSetting() (chip, key string, value int)
	}
	// onOffDrivers is implemented by a Drivers that knows which actuator
	// drivers only switch on and off, so a controller that would pass a
	// level straight to a relay is caught.
	onOffDrivers interface{ OnOff(driver string) bool }
)

// Defaults of the top-level keys.
const (
	DefaultStateDir = "/var/lib/edged"
	DefaultHTTP     = "127.0.0.1:8080"
)

// Default returns a config with every default applied and no devices.
func Default() Config {
	return Config{
		StateDir: DefaultStateDir,
		Log:      Log{Level: "info", Format: "text"},
		Broker:   localbroker.DefaultOpts(),
		HTTP:     HTTP{Listen: DefaultHTTP},

		HomeAssistant: hass.DefaultOpts(),
		Clock:         Clock{Trust: TrustKernel},
	}
}

// Load reads and validates the config file at path. env looks up
// environment variables for ${NAME} in secret fields; nil means
// os.LookupEnv. Problems with the content are returned as *Errors, with
// path as the file name in every line.
func Load(path string, drv Drivers, env func(string) (string, bool)) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("configs: %w", err)
	}
	return Parse(path, data, drv, env)
}

// LoadForCheck is Load for a machine without the config's secrets (a
// laptop before a deploy): each ${NAME} reference to an unset variable is
// returned in unset, with its position and Error.Unset set, instead of
// failing the load; every other problem fails it as in Load. The unset
// secrets are empty in cfg: it is for checking, never for running.
func LoadForCheck(path string, drv Drivers, env func(string) (string, bool)) (cfg *Config, unset []Error, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("configs: %w", err)
	}
	cfg, errs := parse(path, data, drv, env)
	if errs == nil {
		return cfg, nil, nil
	}
	var other []Error
	for _, e := range errs.List {
		if e.Unset != "" {
			unset = append(unset, e)
		} else {
			other = append(other, e)
		}
	}
	if other != nil {
		return nil, unset, &Errors{List: other}
	}
	return cfg, unset, nil
}

// LoadActuators reads the actuators section of the file at path and
// nothing else, checked as Load checks it, into a config with no other
// devices: for `edged safe`, which must find the outputs of a file whose
// other sections have problems (a later edit a reload refused).
func LoadActuators(path string, drv Drivers, env func(string) (string, bool)) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Actuators yaml.Node `yaml:"actuators"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if doc.Actuators.Kind == 0 {
		return nil, fmt.Errorf("%s: no actuators section", path)
	}
	out, err := yaml.Marshal(map[string]any{"device": map[string]string{"id": "safe"}, "actuators": &doc.Actuators})
	if err != nil {
		return nil, err
	}
	return Parse(path+" (actuators only)", out, drv, env)
}

// Parse validates a config held in memory; name is used in messages and
// stored as Config.Path. See Load.
func Parse(name string, data []byte, drv Drivers, env func(string) (string, bool)) (*Config, error) {
	cfg, errs := parse(name, data, drv, env)
	if errs != nil {
		return nil, errs
	}
	return cfg, nil
}

// parse decodes and checks a config; cfg is as complete as the problems
// allowed (nil for a syntax error or an empty file).
func parse(name string, data []byte, drv Drivers, env func(string) (string, bool)) (*Config, *Errors) {
	if env == nil {
		env = os.LookupEnv
	}
	if drv == nil {
		drv = noDrivers{}
	}
	d := newDecoder(name, env)
	root, err := parseYAML(data)
	if err != nil {
		line, msg := syntaxPosition(err)
		d.errs = append(d.errs, Error{File: name, Line: line, Col: firstColumn(data, line), Msg: msg})
		return nil, d.result()
	}
	cfg := Default()
	cfg.Path = name
	l := &loader{d: d, drv: drv}
	d.defaults[reflect.TypeOf(control.Opts{})] = func() any { return control.DefaultOpts() }
	d.defaults[reflect.TypeOf(uplink.Opts{})] = func() any { return uplink.DefaultOpts() }
	d.defaults[reflect.TypeOf(uplink.Rule{})] = func() any { return uplink.DefaultRule() }
	d.defaults[reflect.TypeOf(Sensor{})] = func() any { return Sensor{PollOpts: sensors.DefaultPollOpts()} }
	d.custom[reflect.TypeOf(Sensor{})] = l.sensor
	d.custom[reflect.TypeOf(Actuator{})] = l.actuator
	d.custom[reflect.TypeOf(uplink.Opts{})] = l.uplink

	top := root
	if top.Kind == yaml.DocumentNode && len(top.Content) > 0 {
		top = top.Content[0]
	}
	if isNull(top) {
		d.errorf(top, "the file is empty: a config needs at least device: {id: ...}")
		return nil, d.result()
	}
	d.decode(top, reflect.ValueOf(&cfg).Elem(), field{})
	if top.Kind == yaml.MappingNode && !d.exhausted {
		l.check(&cfg, top)
	}
	return &cfg, d.result()
}

// parseYAML parses exactly one YAML document into a node tree. yaml.v3
// reports syntax errors by panicking internally; any other panic on odd
// input is turned into an error here too, so bad input never crashes edged.
func parseYAML(data []byte) (root *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, fmt.Errorf("yaml: cannot parse: %v", r)
		}
	}()
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var n yaml.Node
	if err := dec.Decode(&n); err != nil {
		if err.Error() == "EOF" {
			return &yaml.Node{}, nil
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("yaml: line %d: a config file holds one YAML document; remove the second ---", extra.Line)
	} else if err.Error() != "EOF" {
		return nil, err
	}
	return &n, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxPosition extracts the line yaml.v3 puts in its error text.
func syntaxPosition(err error) (line int, msg string) {
	s := err.Error()
	if m := yamlLine.FindStringSubmatch(s); m != nil {
		fmt.Sscan(m[1], &line)
		return line, "yaml syntax: " + m[2]
	}
	return 1, "yaml syntax: " + strings.TrimPrefix(s, "yaml: ")
}

// firstColumn is the column of the first non-blank character of line, the
// best guess at a column yaml.v3 does not report.
func firstColumn(data []byte, line int) int {
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) {
		return 1
	}
	l := lines[line-1]
	return len(l) - len(strings.TrimLeft(l, " ")) + 1
}

type noDrivers struct{}

func (noDrivers) SensorOpts(string) (any, bool)   { return nil, false }
func (noDrivers) ActuatorOpts(string) (any, bool) { return nil, false }
func (noDrivers) Names(bool) []string             { return nil }

// loader holds what decoding sensors and actuators needs beyond the
// generic decoder.
type loader struct {
	d   *decoder
	drv Drivers
}

func (l *loader) sensor(n *yaml.Node, v reflect.Value) {
	l.device(n, v, false)
}

func (l *loader) actuator(n *yaml.Node, v reflect.Value) {
	l.device(n, v, true)
}

// uplink decodes the uplink section. Its preset is read first: it gives
// the keys the file leaves out their defaults (an unknown preset is
// reported by uplink.Opts.Validate).
func (l *loader) uplink(n *yaml.Node, v reflect.Value) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "preset" {
				if p, ok := uplink.Presets[n.Content[i+1].Value]; ok {
					v.Set(reflect.ValueOf(p.Defaults()))
				}
			}
		}
	}
	l.d.decodeStruct(n, v, field{})
}

// device decodes a sensor or actuator mapping: the common keys into v,
// every other key strictly into the options of the named driver.
func (l *loader) device(n *yaml.Node, v reflect.Value, actuator bool) {
	d := l.d
	kind := "sensor"
	if actuator {
		kind = "actuator"
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "want a mapping with id, driver and the driver's options, got %s", describe(n))
		return
	}
	pairs := d.pairs(n)
	common := structOf(v.Type())
	var mine, rest []pair
	var driverPair *pair
	for i, p := range pairs {
		if _, ok := common.fields[p.name]; ok {
			mine = append(mine, p)
			if p.name == "driver" {
				driverPair = &pairs[i]
			}
		} else {
			rest = append(rest, p)
		}
	}
	d.decodeFields(n, mine, v, nil)
	if d.exhausted {
		return
	}
	names := l.drv.Names(actuator)
	driver := v.FieldByName("Driver").String()
	if driver == "" {
		at := n
		if driverPair != nil {
			if driverPair.val.Kind != yaml.ScalarNode {
				return // already reported: the driver is not a string
			}
			at = driverPair.at()
		}
		d.errorf(at, "driver: missing (%s drivers: %s)", kind, strings.Join(names, ", "))
		return
	}
	var opts any
	var ok bool
	if actuator {
		opts, ok = l.drv.ActuatorOpts(driver)
	} else {
		opts, ok = l.drv.SensorOpts(driver)
	}
	if !ok && slices.Contains(l.drv.Names(!actuator), driver) {
		other := "an actuator driver: list it under actuators"
		if actuator {
			other = "a sensor driver: list it under sensors"
		}
		d.errorf(driverPair.at(), "driver: %q is %s", driver, other)
		return
	}
	if !ok {
		msg := fmt.Sprintf("driver: unknown %s driver %q", kind, driver)
		if best := closest(driver, names); best != "" {
			msg += fmt.Sprintf(": did you mean %q?", best)
		}
		d.errorf(driverPair.at(), "%s (%s drivers: %s)", msg, kind, strings.Join(names, ", "))
		return
	}
	ov := reflect.ValueOf(opts)
	if ov.Kind() != reflect.Pointer || ov.IsNil() || ov.Elem().Kind() != reflect.Struct {
		d.errorf(driverPair.at(), "driver: %q makes options of type %T, not a pointer to a struct (a bug in the driver)", driver, opts)
		return
	}
	d.decodeFields(n, rest, ov.Elem(), common.names)
	v.FieldByName("Opts").Set(ov)
}
