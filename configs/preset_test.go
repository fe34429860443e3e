package configs_test

import (
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
)

// TestUplinkPresets checks each preset against its documented limits,
// with the error at the key at fault (file:line:col), and the defaults a
// preset gives the keys a file leaves out.
func TestUplinkPresets(t *testing.T) {
	const aws = "  preset: aws-iot-core\n  url: mqtts://a1-ats.iot.eu-west-1.amazonaws.com:8883\n  tls: {cert_file: /etc/edged/c.pem, key_file: /etc/edged/k.pem}\n"
	const hive = "  preset: hivemq-cloud\n  url: mqtts://abc.s1.eu.hivemq.cloud:8883\n  username: gh-01\n  password: ${EDGED_CLOUD_PASSWORD}\n"
	const emqx = "  preset: emqx\n  url: mqtt://emqx.lan:1883\n"
	const fwd = "  forward: [{local: \"edged/gh-01/sensor/#\"}]\n"
	tests := []struct {
		name, uplink string
		want         string // "" valid, else "LINE:COL: substring"
	}{
		{"aws ok", aws + fwd, ""},
		{"emqx ok", emqx + fwd, ""},
		{"hivemq ok", hive + fwd, ""},
		{"unknown preset", "  preset: azure\n  url: mqtt://h:1883\n" + fwd, "3:11: preset: \"azure\" is not a preset (want one of aws-iot-core, emqx, hivemq-cloud)"},
		{"aws plain TCP", "  preset: aws-iot-core\n  url: mqtt://a1-ats.iot.eu-west-1.amazonaws.com:1883\n" + fwd, "4:8: url: mqtt://a1-ats.iot.eu-west-1.amazonaws.com:1883: aws-iot-core accepts only TLS"},
		{"aws port 443", strings.Replace(aws, "8883", "443", 1) + fwd, "4:8: url: mqtts://a1-ats.iot.eu-west-1.amazonaws.com:443: aws-iot-core takes MQTT over TLS on port 8883"},
		{"aws no client cert", "  preset: aws-iot-core\n  url: mqtts://a1-ats.iot.eu-west-1.amazonaws.com:8883\n" + fwd, "3:3: tls: aws-iot-core authenticates devices by X.509 client certificate"},
		{"aws client id", aws + "  client_id: " + strings.Repeat("x", 129) + "\n" + fwd, "6:14: client_id: 129 bytes; aws-iot-core allows at most 128"},
		{"aws keep alive short", aws + "  keep_alive: 10s\n" + fwd, "6:15: keep_alive: 10s; aws-iot-core takes 30s..20m0s"},
		{"aws keep alive long", aws + "  keep_alive: 30m\n" + fwd, "6:15: keep_alive: 30m0s; aws-iot-core takes 30s..20m0s"},
		{"aws inflight", aws + "  max_inflight: 101\n" + fwd, "6:17: max_inflight: 101; aws-iot-core lets a client have at most 100 unacknowledged publishes"},
		{"aws session", aws + "  session_expiry: 200h\n" + fwd, "6:19: session_expiry: 200h0m0s; aws-iot-core keeps a session at most 168h0m0s"},
		{"aws topic levels", aws + "  forward: [{local: \"edged/gh-01/sensor/+/+\", remote: \"a/b/c/d/{topic}\"}]\n", "6:12: forward: rule 0 (local \"edged/gh-01/sensor/+/+\"): remote \"a/b/c/d/edged/gh-01/sensor/+/+\" makes topics of at least 9 levels, more than the 8 aws-iot-core allows"},
		{"aws topic bytes", aws + "  forward: [{local: \"x/#\", remote: \"" + strings.Repeat("t", 260) + "/{device}/{topic}\"}]\n", "6:12: forward: rule 0 (local \"x/#\"): remote \"" + strings.Repeat("t", 260) + "/{device}/{topic}\" makes topics of at least 264 bytes, more than the 256"},
		{"aws basic ingest prefix is free", aws + "  forward: [{local: \"edged/gh-01/sensor/+/+\", remote: \"$aws/rules/farm/{topic}\"}]\n", ""},
		{"aws status topic", aws + "  status_topic: a/b/c/d/e/f/g/h/i\n" + fwd, "6:17: status_topic: \"a/b/c/d/e/f/g/h/i\" makes topics of at least 9 levels"},
		{"emqx inflight", emqx + "  max_inflight: 64\n" + fwd, "5:17: max_inflight: 64; emqx lets a client have at most 32"},
		{"emqx topic levels", emqx + "  forward: [{local: \"x\", remote: \"" + strings.Repeat("a/", 128) + "b\"}]\n", "5:12: forward: rule 0 (local \"x\"): remote \"" + strings.Repeat("a/", 128) + "b\" makes topics of at least 129 levels, more than the 128 emqx allows"},
		{"hivemq plain TCP", "  preset: hivemq-cloud\n  url: mqtt://abc.s1.eu.hivemq.cloud:1883\n  username: u\n  password: ${EDGED_CLOUD_PASSWORD}\n" + fwd, "4:8: url: mqtt://abc.s1.eu.hivemq.cloud:1883: hivemq-cloud accepts only TLS"},
		{"hivemq no credentials", "  preset: hivemq-cloud\n  url: mqtts://abc.s1.eu.hivemq.cloud:8883\n" + fwd, "3:3: username: hivemq-cloud admits only clients with credentials"},
		{"hivemq inflight", hive + "  max_inflight: 11\n" + fwd, "7:17: max_inflight: 11; hivemq-cloud lets a client have at most 10"},
	}
	for _, tt := range tests {
		src := "device: {id: gh-01}\nuplink:\n" + tt.uplink
		_, err := configs.Parse("t.yaml", []byte(src), drivers.Default, testEnv)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), "t.yaml:"+tt.want) || strings.Count(err.Error(), "\n") > 0):
			t.Errorf("%s: got %v\nwant one problem containing t.yaml:%s", tt.name, err, tt.want)
		}
	}
}

func TestUplinkPresetDefaults(t *testing.T) {
	tests := []struct {
		preset, extra string
		keepAlive     time.Duration
		inflight      int
		session       time.Duration
	}{
		{"", "", 30 * time.Second, 32, 24 * time.Hour},
		{"hivemq-cloud", "  url: mqtts://abc.s1.eu.hivemq.cloud:8883\n  username: u\n  password: ${EDGED_CLOUD_PASSWORD}\n", time.Minute, 10, 24 * time.Hour},
		{"hivemq-cloud", "  url: mqtts://abc.s1.eu.hivemq.cloud:8883\n  username: u\n  password: ${EDGED_CLOUD_PASSWORD}\n  max_inflight: 4\n  keep_alive: 45s\n", 45 * time.Second, 4, 24 * time.Hour},
		{"aws-iot-core", "  url: mqtts://a1-ats.iot.eu-west-1.amazonaws.com:8883\n  tls: {cert_file: /c, key_file: /k}\n", time.Minute, 32, time.Hour},
		{"emqx", "  url: mqtt://emqx.lan:1883\n", time.Minute, 32, 2 * time.Hour},
	}
	for _, tt := range tests {
		src := "device: {id: gh-01}\nuplink:\n  forward: [{local: \"#\"}]\n" + tt.extra
		if tt.preset != "" {
			src += "  preset: " + tt.preset + "\n" // after the keys: the preset is read first wherever it is
		} else {
			src += "  url: mqtt://h:1883\n"
		}
		c, err := configs.Parse("t.yaml", []byte(src), drivers.Default, testEnv)
		if err != nil {
			t.Errorf("%q: %v", tt.preset, err)
			continue
		}
		u := c.Uplink
		if u.Preset != tt.preset || u.KeepAlive != tt.keepAlive || u.MaxInflight != tt.inflight || u.SessionExpiry != tt.session {
			t.Errorf("%q: preset %q, keep_alive %v, max_inflight %d, session_expiry %v; want %v, %d, %v",
				tt.preset, u.Preset, u.KeepAlive, u.MaxInflight, u.SessionExpiry, tt.keepAlive, tt.inflight, tt.session)
		}
	}
}
