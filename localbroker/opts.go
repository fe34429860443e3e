package localbroker

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/secretfile"
)

// Roles of users and of anonymous clients, weakest first.
const (
	RoleViewer    = "viewer"    // subscribe to everything
	RolePublisher = "publisher" // + publish outside the control topics
	RoleOperator  = "operator"  // + publish control commands
	RoleAdmin     = "admin"     // + everything
)

// Opts configures the embedded broker. The YAML keys are a contract.
type Opts struct {
	// MQTT is the plain TCP listener address; "" disables it.
	MQTT string `yaml:"mqtt"`
	// WebSocket is the plain MQTT-over-WebSocket listener address; ""
	// disables it.
	WebSocket string `yaml:"websocket"`
	// MQTTS and WSS are the TLS listeners (MQTT over TLS, MQTT over
	// WebSocket over TLS) with the certificate in TLS; "" disables them.
	MQTTS string `yaml:"mqtts"`
	WSS   string `yaml:"wss"`
	TLS   TLS    `yaml:"tls"`
	// WebSocketOrigins lists the browser origins (e.g.
	// "http://dashboard.lan:3000") that may open MQTT-over-WebSocket
	// connections besides pages served from the broker's own host name.
	// "*" allows every origin.
	WebSocketOrigins []string `yaml:"websocket_origins"`
	// AllowAnonymous lets clients connect without credentials, with the
	// rights of AnonymousRole. When false only users may connect.
	AllowAnonymous bool   `yaml:"allow_anonymous"`
	AnonymousRole  string `yaml:"anonymous_role"`
	// MaxLoginFailures is how many failed logins one source address may
	// have a minute (in bursts of up to as many); beyond, its logins are
	// refused at once, without checking the password.
	MaxLoginFailures int `yaml:"max_login_failures"`
	// Users are the accounts: the config's top-level users list, which
	// configs copies here.
	Users []User `yaml:"-"`

	// MaxPacketSize caps an incoming MQTT packet ("256KiB").
	MaxPacketSize int64 `yaml:"max_packet_size" edged:"size"`
	// MaxInflight caps unacknowledged QoS 1/2 messages per client.
	MaxInflight int `yaml:"max_inflight"`
	// MaxPendingWrites is accepted so that older files still load, and
	// has no effect: deliveries are written straight into the
	// connection's queue (DirectWrites), with no per-client queue of
	// packets in front of it to fill. Deprecated.
	MaxPendingWrites int `yaml:"max_pending_writes"`
	// MaxClients caps concurrent client connections.
	MaxClients int `yaml:"max_clients"`
	// SessionExpiry caps how long the broker keeps the session (and queued
	// messages) of a disconnected persistent client.
	SessionExpiry time.Duration `yaml:"session_expiry"`
	// MessageExpiry is the longest a retained or queued message lives;
	// 0 keeps retained messages forever.
	MessageExpiry time.Duration `yaml:"message_expiry"`
	// SysInterval is how often $SYS topics are republished.
	SysInterval time.Duration `yaml:"sys_interval"`

	// MaxClientsPerAddress caps the connections open at once from one
	// source address; MaxConnectsPerMinute caps how many it may open a
	// minute (in bursts of up to MaxClientsPerAddress). Connections count
	// from accept, before CONNECT.
	MaxClientsPerAddress int `yaml:"max_clients_per_address"`
	MaxConnectsPerMinute int `yaml:"max_connects_per_minute"`
	// ConnectTimeout is how long a new connection (TCP, or WebSocket from
	// its HTTP request on) may take to send its CONNECT.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxKeepalive caps a client's keep-alive: a client asking for none (0)
	// or more gets this one (MQTT 5 clients are told in the CONNACK), so a
	// dead session ends within 1.5 times it.
	MaxKeepalive time.Duration `yaml:"max_keepalive"`
	// WriteTimeout is how long one write to a client may block (it stopped
	// reading, or its link is gone) before the client is disconnected.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxRetained and MaxRetainedBytes bound the retained store; a LAN
	// client's retained publish that does not fit is refused.
	MaxRetained      int   `yaml:"max_retained"`
	MaxRetainedBytes int64 `yaml:"max_retained_bytes" edged:"size"`
	// MaxSubscriptions caps the subscriptions one session holds; a
	// SUBSCRIBE's new filters beyond it are refused (0x97, 3.1.1: 0x80).
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// MaxTopicLevels caps the levels of a subscription's filter and of a
	// retained message's topic: each level is a node of mochi's topic
	// tree (about 630 bytes), so one 64 KiB filter "a/a/a/..." held 20 MB.
	MaxTopicLevels int `yaml:"max_topic_levels"`
	// MaxQueuedMessages caps the QoS 1/2 messages kept for one client
	// unacknowledged: in flight, or queued while a persistent client is
	// away. Newer ones are dropped.
	MaxQueuedMessages int `yaml:"max_queued_messages"`
	// MaxQueuedBytes caps the payload and topic bytes of those messages
	// while the client is away ("1MiB"); a client with none takes one
	// message of any size.
	MaxQueuedBytes int64 `yaml:"max_queued_bytes" edged:"size"`
	// MaxSessions caps the sessions kept for absent persistent clients;
	// beyond it the one whose client left first ends.
	MaxSessions int `yaml:"max_sessions"`
}

// DefaultOpts are safe on a Pi 2: loopback listeners, small buffers.
func DefaultOpts() Opts {
	return Opts{
		MQTT:             "127.0.0.1:1883",
		WebSocket:        "127.0.0.1:8083",
		AllowAnonymous:   true,
		AnonymousRole:    RoleViewer,
		MaxLoginFailures: 5,
		MaxPacketSize:    256 << 10,
		MaxInflight:      64,
		MaxClients:       64,
		SessionExpiry:    time.Hour,
		MessageExpiry:    0,
		SysInterval:      60 * time.Second,

		MaxClientsPerAddress: 16,
		MaxConnectsPerMinute: 60,
		ConnectTimeout:       10 * time.Second,
		MaxKeepalive:         5 * time.Minute,
		WriteTimeout:         10 * time.Second,
		MaxRetained:          1000,
		MaxRetainedBytes:     4 << 20,
		MaxSubscriptions:     128,
		MaxTopicLevels:       16,
		MaxQueuedMessages:    1024,
		MaxQueuedBytes:       1 << 20,
		MaxSessions:          32,
	}
}

// Validate reports the first problem with o, naming the YAML key.
func (o *Opts) Validate() error {
	for _, f := range []struct{ key, addr string }{{"mqtt", o.MQTT}, {"websocket", o.WebSocket}, {"mqtts", o.MQTTS}, {"wss", o.WSS}} {
		if f.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(f.addr); err != nil {
			return sensors.FieldErrorf(f.key, "listen address %q: %v (want host:port, e.g. 127.0.0.1:1883)", f.addr, err)
		}
	}
	if err := o.TLS.Validate(); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	for _, f := range []struct{ key, addr string }{{"mqtts", o.MQTTS}, {"wss", o.WSS}} {
		if f.addr != "" && o.TLS.CertFile == "" {
			return sensors.FieldErrorf(f.key, "a TLS listener needs the certificate: add tls: {cert_file: ..., key_file: ...}")
		}
	}
	if o.MQTTS == "" && o.WSS == "" && o.TLS.CertFile != "" {
		return sensors.FieldErrorf("tls", "no TLS listener uses it: set mqtts or wss")
	}
	if !validRole(o.AnonymousRole) {
		return sensors.FieldErrorf("anonymous_role", "unknown role %q (want viewer, publisher, operator or admin)", o.AnonymousRole)
	}
	if o.MaxLoginFailures < 1 {
		return sensors.FieldErrorf("max_login_failures", "must be at least 1")
	}
	if err := validateUsers(o.Users); err != nil {
		return err
	}
	if o.MaxPacketSize < 1024 || o.MaxPacketSize > 256<<20 {
		return sensors.FieldErrorf("max_packet_size", "%d bytes is out of range (1KiB..256MiB)", o.MaxPacketSize)
	}
	if o.MaxInflight < 1 || o.MaxInflight > 65535 {
		return sensors.FieldErrorf("max_inflight", "%d is out of range (1..65535)", o.MaxInflight)
	}
	if o.MaxClients < 1 {
		return sensors.FieldErrorf("max_clients", "must be at least 1")
	}
	if o.SessionExpiry < 0 || o.SessionExpiry > 365*24*time.Hour {
		return sensors.FieldErrorf("session_expiry", "%v is out of range (0..8760h)", o.SessionExpiry)
	}
	if o.MessageExpiry < 0 {
		return sensors.FieldErrorf("message_expiry", "must not be negative")
	}
	if o.SysInterval < 30*time.Second {
		return sensors.FieldErrorf("sys_interval", "%v is below 30s", o.SysInterval)
	}
	if o.MaxClientsPerAddress < 1 || o.MaxClientsPerAddress > o.MaxClients {
		return sensors.FieldErrorf("max_clients_per_address", "%d is out of range (1..max_clients, %d)", o.MaxClientsPerAddress, o.MaxClients)
	}
	if o.MaxConnectsPerMinute < 1 {
		return sensors.FieldErrorf("max_connects_per_minute", "must be at least 1")
	}
	for _, d := range []struct {
		key      string
		v        time.Duration
		min, max time.Duration
	}{
		{"connect_timeout", o.ConnectTimeout, 100 * time.Millisecond, 5 * time.Minute},
		{"max_keepalive", o.MaxKeepalive, time.Second, 65535 * time.Second},
		{"write_timeout", o.WriteTimeout, 100 * time.Millisecond, 5 * time.Minute},
	} {
		if d.v < d.min || d.v > d.max {
			return sensors.FieldErrorf(d.key, "%v is out of range (%v..%v)", d.v, d.min, d.max)
		}
	}
	if o.MaxRetained < 1 {
		return sensors.FieldErrorf("max_retained", "must be at least 1")
	}
	if o.MaxRetainedBytes < 1024 {
		return sensors.FieldErrorf("max_retained_bytes", "%d bytes is below 1KiB", o.MaxRetainedBytes)
	}
	for _, c := range []struct {
		key      string
		v        int
		min, max int
	}{
		{"max_subscriptions", o.MaxSubscriptions, 1, 100000},
		{"max_topic_levels", o.MaxTopicLevels, 4, 128},
		{"max_queued_messages", o.MaxQueuedMessages, 1, 16384}, // well below the 65,535 packet ids
		{"max_sessions", o.MaxSessions, 1, 100000},
	} {
		if c.v < c.min || c.v > c.max {
			return sensors.FieldErrorf(c.key, "%d is out of range (%d..%d)", c.v, c.min, c.max)
		}
	}
	if o.MaxQueuedBytes < 1024 || o.MaxQueuedBytes > 1<<30 {
		return sensors.FieldErrorf("max_queued_bytes", "%d bytes is out of range (1KiB..1GiB)", o.MaxQueuedBytes)
	}
	if o.MQTT == "" && o.WebSocket == "" && o.MQTTS == "" && o.WSS == "" {
		return fmt.Errorf("no listener: set mqtt, websocket, mqtts or wss (local apps could not reach the readings)")
	}
	return nil
}

// validateUsers checks every user, and that no name or token is used
// twice.
func validateUsers(users []User) error {
	names := map[string]bool{}
	tokens := map[string]string{}
	for i := range users {
		u := &users[i]
		if err := u.Validate(); err != nil {
			return fmt.Errorf("users[%d]: %w", i, err)
		}
		if names[u.Name] {
			return fmt.Errorf("users[%d]: name: user %q is defined twice", i, u.Name)
		}
		names[u.Name] = true
		for _, t := range u.Tokens {
			if other, dup := tokens[t]; dup {
				return fmt.Errorf("users[%d]: tokens: a token of user %q is also one of user %q", i, u.Name, other)
			}
			tokens[t] = u.Name
		}
	}
	return nil
}

// TLS is a TLS listener's certificate: PEM files read at start (a new
// certificate takes a restart). The key file is refused if others may
// read it.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Validate wants both files or neither.
func (t *TLS) Validate() error {
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return sensors.FieldErrorf("key_file", "missing: cert_file needs its key_file")
	case t.CertFile == "" && t.KeyFile != "":
		return sensors.FieldErrorf("cert_file", "missing: key_file needs its cert_file")
	}
	return nil
}

// ServerConfig reads the certificate and key and returns a server
// configuration (TLS 1.2 and newer).
func (t TLS) ServerConfig() (*tls.Config, error) {
	cert, err := secretfile.KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// IsLoopback reports whether a listen address only takes connections
// from this machine (127.0.0.0/8, ::1, localhost).
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
