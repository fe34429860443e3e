package uplink

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/edged/edged/sensors"
)

// Preset is what a cloud MQTT service documents about its broker: limits
// the uplink config must stay within (checked by Opts.Validate, and per
// message at capture) and the defaults of the keys a config leaves out
// (Preset.Defaults). Zero limits are not checked.
type Preset struct {
	Name string
	// MaxClientID is the longest client id, in bytes.
	MaxClientID int
	// MaxTopic and MaxTopicLevels bound a cloud topic: bytes, and levels
	// (slashes + 1).
	MaxTopic, MaxTopicLevels int
	// MaxPayload is the largest payload, in bytes.
	MaxPayload int
	// MinKeepAlive and MaxKeepAlive bound keep_alive.
	MinKeepAlive, MaxKeepAlive time.Duration
	// ReceiveMaximum is how many QoS 1 publishes the broker lets a client
	// have unacknowledged: max_inflight may not be above it.
	ReceiveMaximum int
	// MaxSessionExpiry bounds session_expiry.
	MaxSessionExpiry time.Duration
	// MaxPublishRate is the most PUBLISHes a second the broker takes on
	// one connection; the forwarder paces its sends to it (pacer).
	MaxPublishRate int
	// TLS: only mqtts:// (and Port, if set); ClientCert: mutual TLS
	// (tls.cert_file and tls.key_file); Password: username and password
	// (or password_file).
	TLS, ClientCert, Password bool
	Port                      string
	// KeepAlive, MaxInflight and SessionExpiry are the defaults the preset
	// gives the keys a config leaves out.
	KeepAlive     time.Duration
	MaxInflight   int
	SessionExpiry time.Duration
	// Doc is where the limits are documented, for error messages.
	Doc string
}

// Presets are the uplink.preset values.
//
// aws-iot-core, from "AWS IoT Core endpoints and quotas", message broker
// and protocol limits (https://docs.aws.amazon.com/general/latest/gr/iot-core.html#message-broker-limits):
// client id 128 bytes; a topic at most 256 bytes with at most 7 slashes
// (the AWS IoT Device SDK's AwsIotCoreDefaults validation says the same:
// https://aws.github.io/aws-iot-device-sdk-js-v2/node/enums/mqtt5.ClientExtendedValidationAndFlowControl.html);
// payload 128 KB; keep-alive 30 to 1200 s; 100 unacknowledged
// publishes per client; 100 publish requests per second per connection
// (not adjustable: AWS throttles and disconnects above it, so a backlog
// drains at that rate); persistent sessions kept 1 h by default, at most
// 7 days. Devices authenticate with an X.509 client certificate on 8883
// (https://docs.aws.amazon.com/iot/latest/developerguide/protocols.html;
// 443 needs ALPN, which the uplink does not send).
//
// emqx, a self-hosted EMQX at its documented defaults
// (https://docs.emqx.com/en/emqx/latest/configuration/mqtt.html and
// https://docs.emqx.com/en/emqx/latest/getting-started/restrictions.html):
// max_packet_size 1MB, max_clientid_len 65535, max_topic_levels 128,
// max_inflight 32 (the Receive Maximum it announces), session expiry 2 h;
// TLS is optional. A server tuned past these needs no preset.
//
// hivemq-cloud: HiveMQ Cloud accepts only TLS on 8883 with a username and
// password (https://community.hivemq.com/t/frequently-asked-questions-hivemq-cloud/514);
// its broker limits are HiveMQ's documented defaults: client id and topic
// 65535 bytes (https://docs.hivemq.com/hivemq/latest/user-guide/configuration.html),
// Server Receive Maximum 10, keep-alive at most 65535 s
// (https://docs.hivemq.com/hivemq-edge/mqtt-specific-configuration.html).
// HiveMQ Cloud publishes no per-cluster packet limit that we found, so
// the payload is not checked beyond the uplink's own.
var Presets = map[string]Preset{
	"aws-iot-core": {
		Name: "aws-iot-core", MaxClientID: 128, MaxTopic: 256, MaxTopicLevels: 8, MaxPayload: 128 << 10,
		MinKeepAlive: 30 * time.Second, MaxKeepAlive: 1200 * time.Second, ReceiveMaximum: 100,
		MaxSessionExpiry: 7 * 24 * time.Hour, MaxPublishRate: 100, TLS: true, ClientCert: true, Port: "8883",
		KeepAlive: 60 * time.Second, MaxInflight: 32, SessionExpiry: time.Hour,
		Doc: "https://docs.aws.amazon.com/general/latest/gr/iot-core.html#message-broker-limits",
	},
	"emqx": {
		Name: "emqx", MaxClientID: 65535, MaxTopicLevels: 128, MaxPayload: 1 << 20,
		ReceiveMaximum: 32, KeepAlive: 60 * time.Second, MaxInflight: 32, SessionExpiry: 2 * time.Hour,
		Doc: "https://docs.emqx.com/en/emqx/latest/configuration/mqtt.html",
	},
	"hivemq-cloud": {
		Name: "hivemq-cloud", MaxClientID: 65535, MaxTopic: 65535, MaxKeepAlive: 65535 * time.Second,
		ReceiveMaximum: 10, TLS: true, Password: true, Port: "8883",
		KeepAlive: 60 * time.Second, MaxInflight: 10, SessionExpiry: 24 * time.Hour,
		Doc: "https://docs.hivemq.com/hivemq-edge/mqtt-specific-configuration.html",
	},
}

// PresetNames lists the presets, sorted.
func PresetNames() []string {
	names := make([]string, 0, len(Presets))
	for n := range Presets {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Defaults returns DefaultOpts with the preset's defaults, for a config
// that names the preset: keys it leaves out take these.
func (p Preset) Defaults() Opts {
	o := DefaultOpts()
	o.Preset = p.Name
	o.KeepAlive, o.MaxInflight, o.SessionExpiry = p.KeepAlive, p.MaxInflight, p.SessionExpiry
	return o
}

// validate checks o against the preset; errors name the key and the
// documented limit.
func (p Preset) validate(o *Opts) error {
	by := func(what string) string { return fmt.Sprintf("%s %s (%s)", p.Name, what, p.Doc) }
	if p.MaxClientID > 0 && len(o.ClientID) > p.MaxClientID {
		return sensors.FieldErrorf("client_id", "%d bytes; %s", len(o.ClientID), by(fmt.Sprintf("allows at most %d", p.MaxClientID)))
	}
	if u, err := url.Parse(o.URL); err == nil && p.TLS {
		if u.Scheme != "mqtts" {
			return sensors.FieldErrorf("url", "%s: %s", redactURL(o.URL), by("accepts only TLS: use mqtts://"))
		}
		if p.Port != "" && u.Port() != p.Port {
			return sensors.FieldErrorf("url", "%s: %s", redactURL(o.URL), by("takes MQTT over TLS on port "+p.Port))
		}
	}
	if p.ClientCert && (o.TLS.CertFile == "" || o.TLS.KeyFile == "") {
		return sensors.FieldErrorf("tls", "%s: set cert_file and key_file (the device certificate and its key)", by("authenticates devices by X.509 client certificate"))
	}
	if p.Password && (o.Username == "" || o.Password == "" && o.PasswordFile == "") {
		return sensors.FieldErrorf("username", "%s: set username and password (or password_file)", by("admits only clients with credentials"))
	}
	if p.MinKeepAlive > 0 && o.KeepAlive < p.MinKeepAlive || p.MaxKeepAlive > 0 && o.KeepAlive > p.MaxKeepAlive {
		return sensors.FieldErrorf("keep_alive", "%v; %s", o.KeepAlive, by(fmt.Sprintf("takes %v..%v", p.MinKeepAlive, p.MaxKeepAlive)))
	}
	if p.ReceiveMaximum > 0 && o.MaxInflight > p.ReceiveMaximum {
		return sensors.FieldErrorf("max_inflight", "%d; %s", o.MaxInflight, by(fmt.Sprintf("lets a client have at most %d unacknowledged publishes", p.ReceiveMaximum)))
	}
	if p.MaxSessionExpiry > 0 && o.SessionExpiry > p.MaxSessionExpiry {
		return sensors.FieldErrorf("session_expiry", "%v; %s", o.SessionExpiry, by(fmt.Sprintf("keeps a session at most %v", p.MaxSessionExpiry)))
	}
	if err := p.checkTemplate(o.StatusTopic); err != nil {
		return &sensors.FieldError{Field: "status_topic", Err: err}
	}
	for i, r := range o.Forward {
		tmpl := r.Remote
		if tmpl == "" {
			tmpl = "{topic}"
		}
		local := strings.TrimPrefix(r.Local, r.Strip)
		if !strings.HasSuffix(local, "#") {
			// Every topic the rule can forward has the filter's levels.
			tmpl = strings.ReplaceAll(tmpl, "{topic}", local)
		}
		if err := p.checkTemplate(tmpl); err != nil {
			return &sensors.FieldError{Field: "forward", Err: fmt.Errorf("rule %d (local %q): remote %w", i, r.Local, err)}
		}
	}
	return nil
}

// checkTemplate checks the least a topic template can become ({topic}
// and {device} one byte each) against the topic limits.
func (p Preset) checkTemplate(t string) error {
	if t == "" {
		return nil
	}
	least := strings.NewReplacer("{topic}", "t", "{device}", "d").Replace(t)
	if err := p.checkTopic(least); err != nil {
		return fmt.Errorf("%q makes topics of at least %w", t, err)
	}
	return nil
}

// checkTopic checks a cloud topic against the topic limits.
func (p Preset) checkTopic(t string) error {
	levels := strings.Count(t, "/") + 1
	if p.Name == "aws-iot-core" && strings.HasPrefix(t, "$aws/rules/") {
		levels -= 3 // Basic Ingest's $aws/rules/<rule>/ does not count
	}
	switch {
	case p.MaxTopic > 0 && len(t) > p.MaxTopic:
		return fmt.Errorf("%d bytes, more than the %d %s allows (%s)", len(t), p.MaxTopic, p.Name, p.Doc)
	case p.MaxTopicLevels > 0 && levels > p.MaxTopicLevels:
		return fmt.Errorf("%d levels, more than the %d %s allows (%s)", levels, p.MaxTopicLevels, p.Name, p.Doc)
	}
	return nil
}
