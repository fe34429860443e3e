package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/uplink"
)

// TestFullBufferIsQuotaExceeded pins the mapping that gives LAN MQTT 5
// publishers PUBACK 0x97 when the buffer is full under reject_new.
func TestFullBufferIsQuotaExceeded(t *testing.T) {
	o := uplink.DefaultOpts()
	o.URL = "mqtt://127.0.0.1:1"
	o.ClientID = "t"
	o.Forward = []uplink.Rule{{Local: "lan/#", QoS: 1}}
	o.Buffer.SegmentBytes, o.Buffer.MaxBytes = 64<<10, 128<<10
	o.Buffer.Overflow = uplink.OverflowRejectNew
	u, err := uplink.New(o, t.TempDir(), "gw", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close(context.Background())
	c := uplinkCapturer{u}
	payload := []byte(strings.Repeat("x", 1000))
	if err := c.Capture(localbroker.Message{Topic: "other", Payload: payload, QoS: 1}); err != nil {
		t.Fatalf("a topic no rule selects: %v", err)
	}
	for i := range 1000 {
		err := c.Capture(localbroker.Message{Topic: "lan/a", Payload: payload, QoS: 1})
		if err == nil {
			continue
		}
		if !errors.Is(err, localbroker.ErrQuotaExceeded) || !errors.Is(err, uplink.ErrFull) {
			t.Fatalf("message %d: %v, want ErrQuotaExceeded wrapping uplink.ErrFull", i, err)
		}
		if got := u.Stats().Dropped["rejected"]; got != 1 {
			t.Errorf("rejected counter %d, want 1", got)
		}
		return
	}
	t.Fatal("1 MB into a 128 KiB buffer under reject_new was never refused")
}
