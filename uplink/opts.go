// Package uplink forwards captured messages to a cloud MQTT broker through a durable buffer.
//
// It owns the cloud side only: it knows nothing of the local broker, which
// hands it messages through a capture interface wired in cmd/edged. Only
// uplink imports paho.golang.
package uplink

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/uplink/wal"
)

// Opts configures the uplink. The YAML keys are a contract (README "Uplink keys").
type Opts struct {
	// URL is the cloud broker, "mqtts://host:port" (TLS) or
	// "mqtt://host:port" (plain TCP). WebSocket URLs are not supported yet.
	URL string `yaml:"url"`
	// Preset names a cloud service (Presets): its documented limits are
	// checked, and it gives the keys a config leaves out its defaults.
	Preset string `yaml:"preset"`
	// ClientID is the MQTT client identifier; empty means the device id
	// (the config loader fills it in).
	ClientID string `yaml:"client_id"`
	Username string `yaml:"username"`
	// Password must come from the environment ("${EDGED_CLOUD_PASSWORD}")
	// or from PasswordFile, never inline, so configs can be shared.
	Password     string `yaml:"password" edged:"secret"`
	PasswordFile string `yaml:"password_file"`
	TLS          TLS    `yaml:"tls"`
	// KeepAlive is the MQTT keep-alive; the link is declared dead after
	// 1.5 times it without traffic.
	KeepAlive time.Duration `yaml:"keep_alive"`
	// SessionExpiry is how long the cloud broker keeps our session after
	// a disconnect. The disk buffer, not the session, carries data through
	// an outage; the session keeps in-flight packet ids meaningful across
	// a reconnect, so it should outlast the outages you expect.
	SessionExpiry time.Duration `yaml:"session_expiry"`
	// MaxInflight caps unacknowledged QoS 1 messages, and with them the
	// duplicates a reconnect can cause.
	MaxInflight int `yaml:"max_inflight"`
	// Forward selects the local topics that are mirrored to the cloud.
	Forward []Rule `yaml:"forward"`
	// Buffer is the durable store-and-forward buffer under the state
	// directory; its Log, Clock and FS are set by New.
	Buffer wal.Opts `yaml:"buffer"`
	// StatusTopic is the cloud topic of the gateway's retained status:
	// "online" after each connect, "offline" as the will and on a clean
	// stop. "{device}" is replaced by the device id; empty means
	// "edged/{device}/status", the default local status topic.
	StatusTopic string `yaml:"status_topic"`
	// MaxOldestUnsent, if set, makes edged not ready (/readyz 503) while
	// the oldest message the cloud has not acknowledged is older than
	// this. The uplink itself does not use it.
	MaxOldestUnsent time.Duration `yaml:"max_oldest_unsent"`
}

// TLS configures the mqtts:// connection. Empty CAFile means the system
// roots; CertFile and KeyFile together enable mutual TLS.
type TLS struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables certificate checks; for bench tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Rule mirrors local topics matching Local to the cloud.
type Rule struct {
	// Local is an MQTT topic filter on the local broker, e.g.
	// "edged/gh-01/sensor/#".
	Local string `yaml:"local"`
	// Remote is the cloud topic template: "{topic}" is replaced by the
	// local topic and "{device}" by the device id. Empty means the local
	// topic unchanged.
	Remote string `yaml:"remote"`
	// QoS of the cloud publish: 1 (default, acknowledged and buffered
	// until acknowledged) or 0 (fire and forget).
	QoS int `yaml:"qos"`
	// Retain sets the retain flag on the cloud publish.
	Retain bool `yaml:"retain"`
	// Strip is removed from the front of the local topic before it is
	// substituted for {topic}, e.g. strip "edged/gh-01/" and remote
	// "farms/{device}/{topic}".
	Strip string `yaml:"strip"`
}

// DefaultOpts are the defaults of Opts. Forward is empty: a user who
// enables the uplink must say what to send.
func DefaultOpts() Opts {
	return Opts{
		KeepAlive:     30 * time.Second,
		SessionExpiry: 24 * time.Hour,
		MaxInflight:   32,
		Buffer:        wal.DefaultOpts(),
	}
}

// DefaultRule are the defaults of one forward rule.
func DefaultRule() Rule { return Rule{QoS: 1} }

// Limits of the options, from the MQTT 5 wire format and the buffer design.
const (
	maxKeepAlive     = 65535 * time.Second
	maxSessionExpiry = 0xFFFFFFFE * time.Second // 0xFFFFFFFF means "never"; we want an end
)

// Validate reports the first problem with o; errors name the YAML key.
func (o *Opts) Validate() error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.Preset == "" {
		return nil
	}
	p, ok := Presets[o.Preset]
	if !ok {
		return sensors.FieldErrorf("preset", "%q is not a preset (want one of %s)", o.Preset, strings.Join(PresetNames(), ", "))
	}
	return p.validate(o)
}

func (o *Opts) validate() error {
	if err := validateURL(o.URL); err != nil {
		return &sensors.FieldError{Field: "url", Err: err}
	}
	if o.Password != "" && o.PasswordFile != "" {
		return sensors.FieldErrorf("password_file", "set password or password_file, not both")
	}
	if err := o.TLS.Validate(); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if strings.HasPrefix(o.URL, "mqtt://") && o.TLS != (TLS{}) {
		return sensors.FieldErrorf("tls", "tls options need an mqtts:// url (url is %s)", redactURL(o.URL))
	}
	if o.KeepAlive < time.Second || o.KeepAlive > maxKeepAlive {
		return sensors.FieldErrorf("keep_alive", "%v is out of range (1s..%v)", o.KeepAlive, maxKeepAlive)
	}
	if o.SessionExpiry < 0 || o.SessionExpiry > maxSessionExpiry {
		return sensors.FieldErrorf("session_expiry", "%v is out of range (0..%v)", o.SessionExpiry, maxSessionExpiry)
	}
	if o.MaxInflight < 1 || o.MaxInflight > 65535 {
		return sensors.FieldErrorf("max_inflight", "%d is out of range (1..65535)", o.MaxInflight)
	}
	if o.MaxOldestUnsent < 0 {
		return sensors.FieldErrorf("max_oldest_unsent", "%v is negative (0 turns the check off)", o.MaxOldestUnsent)
	}
	if err := validTemplate(o.StatusTopic); err != nil {
		return &sensors.FieldError{Field: "status_topic", Err: err}
	}
	if len(o.Forward) == 0 {
		return sensors.FieldErrorf("forward", "no forward rules: add at least one, e.g. {local: \"edged/<id>/sensor/#\"}")
	}
	for i := range o.Forward {
		if err := o.Forward[i].Validate(); err != nil {
			return fmt.Errorf("forward[%d]: %w", i, err)
		}
	}
	if err := o.Buffer.Validate(); err != nil {
		return fmt.Errorf("buffer: %w", err)
	}
	return nil
}

// validateURL checks the cloud broker URL. Its errors show the URL
// through redactURL only: `edged validate` runs as systemd's ExecStartPre,
// so they land in the journal, and a password written in the URL must not.
func validateURL(s string) error {
	if s == "" {
		return errors.New("missing: set the cloud broker, e.g. mqtts://cloud.example:8883")
	}
	shown := redactURL(s)
	u, err := url.Parse(s)
	if err != nil {
		// *url.Error repeats the raw URL and an escape error quotes
		// part of it: describe the redacted form instead.
		var why error = errors.New("bad character or escape in the user name or password")
		if _, err := url.Parse(shown); err != nil {
			why = err
			var ue *url.Error
			if errors.As(err, &ue) {
				why = ue.Err
			}
		}
		return fmt.Errorf("%q is not a URL: %w", shown, why)
	}
	switch u.Scheme {
	case "mqtt", "mqtts":
	case "ws", "wss":
		return fmt.Errorf("%q: WebSocket uplinks are not supported yet (use mqtts://host:port)", shown)
	default:
		return fmt.Errorf("%q: scheme must be mqtts:// (TLS) or mqtt:// (plain TCP)", shown)
	}
	if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" || u.Hostname() == "" {
		return fmt.Errorf("%q: want %s://host:port, e.g. %s://cloud.example:8883", shown, u.Scheme, u.Scheme)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("%q: want %s://host:port with no path, query or credentials (use username and password)", shown, u.Scheme)
	}
	return nil
}

// redactURL replaces the password in s with "xxxxx", as url.URL.Redacted
// does, but also when s does not parse, which is when it is shown in an
// error. It takes the last '@' after "//" (or from the start) as the end
// of the user info, so a password holding '/', '?', '#' or '@' is hidden
// too; at worst it hides more than the password.
func redactURL(s string) string {
	start := 0
	if i := strings.Index(s, "//"); i >= 0 {
		start = i + 2
	}
	at := strings.LastIndexByte(s[start:], '@')
	if at < 0 {
		return s
	}
	colon := strings.IndexByte(s[start:start+at], ':')
	if colon < 0 {
		return s
	}
	return s[:start+colon+1] + "xxxxx" + s[start+at:]
}

// Validate checks the TLS file options.
func (t *TLS) Validate() error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		if t.CertFile == "" {
			return sensors.FieldErrorf("key_file", "set cert_file and key_file together (mutual TLS), or neither")
		}
		return sensors.FieldErrorf("cert_file", "set cert_file and key_file together (mutual TLS), or neither")
	}
	return nil
}

// Validate checks one forward rule: Local must be a valid MQTT filter and
// Remote a topic template without wildcards.
func (r *Rule) Validate() error {
	if err := ValidFilter(r.Local); err != nil {
		return &sensors.FieldError{Field: "local", Err: err}
	}
	if err := validTemplate(r.Remote); err != nil {
		return &sensors.FieldError{Field: "remote", Err: err}
	}
	if strings.ContainsAny(r.Strip, "+#\x00") {
		return sensors.FieldErrorf("strip", "%q: a prefix to strip must not contain wildcards", r.Strip)
	}
	if r.QoS != 0 && r.QoS != 1 {
		return sensors.FieldErrorf("qos", "%d is not supported (want 0 or 1)", r.QoS)
	}
	return nil
}

// ValidFilter reports whether f is a valid MQTT topic filter: '#' only as
// the whole last level, '+' only as a whole level.
func ValidFilter(f string) error {
	if f == "" {
		return errors.New("empty topic filter")
	}
	if len(f) > 65535 {
		return errors.New("topic filter longer than 65535 bytes")
	}
	if strings.ContainsRune(f, 0) {
		return errors.New("topic filter contains a NUL character")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("filter %q: '#' must be the last level", f)
		case l != "#" && strings.Contains(l, "#"):
			return fmt.Errorf("filter %q: '#' must stand alone in its level", f)
		case l != "+" && strings.Contains(l, "+"):
			return fmt.Errorf("filter %q: '+' must stand alone in its level", f)
		}
	}
	return nil
}

// validTemplate checks a remote topic template: no wildcards, no empty
// result, and only the {topic} and {device} placeholders.
func validTemplate(t string) error {
	if t == "" {
		return nil
	}
	if strings.ContainsAny(t, "+#") {
		return fmt.Errorf("template %q: wildcards (+ #) are not allowed in a topic name", t)
	}
	if strings.ContainsRune(t, 0) {
		return errors.New("template contains a NUL character")
	}
	rest := t
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return fmt.Errorf("template %q: unclosed '{'", t)
		}
		switch p := rest[i : i+j+1]; p {
		case "{topic}", "{device}":
		default:
			return fmt.Errorf("template %q: unknown placeholder %s (want {topic} or {device})", t, p)
		}
		rest = rest[i+j+1:]
	}
	return nil
}
