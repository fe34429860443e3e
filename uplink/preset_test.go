package uplink

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

// TestPresetChecksEachMessage: what a config cannot know before a message
// comes (the cloud topic a '#' rule makes, the payload size) is checked
// at capture against the preset's limits: refused, counted, and named in
// the error; messages within them are buffered.
func TestPresetChecksEachMessage(t *testing.T) {
	o := Presets["aws-iot-core"].Defaults()
	o.URL = "mqtts://127.0.0.1:8883"
	o.TLS.InsecureSkipVerify = true
	o.Forward = []Rule{{Local: "lan/#", QoS: 1}}
	p := Presets["aws-iot-core"]
	// Opts.Validate asks for a client certificate; here only the
	// per-message checks are under test.
	if _, err := newUplink(o, t.TempDir(), "gh-01", nil, nil, nil); err == nil {
		t.Fatal("aws-iot-core without a client certificate was accepted")
	}
	o.Preset = ""
	u, err := newUplink(o, t.TempDir(), "gh-01", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close(context.Background())
	u.preset = &p
	tests := []struct {
		topic   string
		size    int
		want    error
		wantMsg string
	}{
		{"lan/a/b/c/d/e/f/g", 10, nil, ""},
		{"lan/a/b/c/d/e/f/g/h", 10, ErrBadTopic, "9 levels, more than the 8 aws-iot-core allows"},
		{"lan/" + strings.Repeat("x", 253), 10, ErrBadTopic, "257 bytes, more than the 256 aws-iot-core allows"},
		{"lan/x", 128 << 10, nil, ""},
		{"lan/x", 128<<10 + 1, ErrTooLarge, "a payload of 131073 bytes on \"lan/x\"; aws-iot-core allows at most 131072"},
	}
	for _, tt := range tests {
		matched, err := u.Capture(tt.topic, bytes.Repeat([]byte("p"), tt.size), 1, false)
		if !matched || !errors.Is(err, tt.want) || tt.want != nil && !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("%.20s... (%d B): matched %v, err %v; want %v containing %q", tt.topic, tt.size, matched, err, tt.want, tt.wantMsg)
		}
	}
	st := u.Stats()
	if st.Dropped["bad_topic"] != 2 || st.Dropped["too_large"] != 1 || st.Backlog != 2 {
		t.Errorf("dropped %v, backlog %d; want 2 bad_topic, 1 too_large, 2 buffered", st.Dropped, st.Backlog)
	}
}
