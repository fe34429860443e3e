package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/sensors/topics"
	"github.com/edged/edged/uplink"
	"github.com/edged/edged/uplink/wal"
)

// TestFullBufferIsQuotaExceeded pins the mapping that gives LAN MQTT 5
// publishers PUBACK 0x97 when the buffer is full under reject_new.
func TestFullBufferIsQuotaExceeded(t *testing.T) {
	o := uplink.DefaultOpts()
	o.URL = "mqtt://127.0.0.1:1"
	o.ClientID = "t"
	o.Forward = []uplink.Rule{{Local: "lan/#", QoS: 1}}
	o.Buffer.SegmentBytes, o.Buffer.MaxBytes = 64<<10, 128<<10
	o.Buffer.Overflow = wal.RejectNew
	u, err := uplink.New(o, t.TempDir(), "gw", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close(context.Background())
	c := uplinkCapturer{u: u}
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

type fakeCapture struct {
	err    error
	topics []string
}

func (f *fakeCapture) Capture(topic string, _ []byte, _ byte, _ bool) (bool, error) {
	f.topics = append(f.topics, topic)
	return true, f.err
}

// TestCaptureErrorMapping covers two review findings. A failed buffer
// (review P1-2) refused every Capture, so Broker.Publish refused and
// sensor readings stopped reaching LAN subscribers: an in-process publish
// must now fan out while a LAN publisher is refused. And the uplink's own
// state publication, when a rule covered PREFIX/uplink/state, was captured
// and changed the state it reported, feeding itself every 5 s: it must not
// be captured.
func TestCaptureErrorMapping(t *testing.T) {
	unavailable := fmt.Errorf("%w: fsync: EIO", uplink.ErrUnavailable)
	badTopic := fmt.Errorf("%w: cloud topic %q: 9 levels; aws-iot-core allows at most 8", uplink.ErrBadTopic, "a/b/c/d/e/f/g/h/i")
	tooLarge := fmt.Errorf("%w: a payload of 200000 bytes", uplink.ErrTooLarge)
	for _, tc := range []struct {
		name      string
		m         localbroker.Message
		err       error
		want      error // nil: accepted
		captured  bool
		wantQuota bool
	}{
		{"pipeline reading, buffer failed", localbroker.Message{Topic: "p/s"}, unavailable, nil, true, false},
		{"LAN publisher, buffer failed", localbroker.Message{Topic: "p/s", Client: "lan1"}, unavailable, uplink.ErrUnavailable, true, false},
		{"pipeline, buffer full", localbroker.Message{Topic: "p/s"}, uplink.ErrFull, uplink.ErrFull, true, true},
		{"pipeline, closed", localbroker.Message{Topic: "p/s"}, uplink.ErrClosed, uplink.ErrClosed, true, false},
		// The cloud can never take these (review: the LAN lost them too,
		// and an MQTT 3.1.1 publisher resent them for ever): LAN
		// subscribers still get them, the uplink counts them.
		{"LAN publisher, cloud topic refused", localbroker.Message{Topic: "p/s", Client: "lan1"}, badTopic, nil, true, false},
		{"pipeline reading, too large for the cloud", localbroker.Message{Topic: "p/s"}, tooLarge, nil, true, false},
		{"own state topic", localbroker.Message{Topic: "p/uplink/state"}, nil, nil, false, false},
		{"LAN client on the state topic", localbroker.Message{Topic: "p/uplink/state", Client: "lan1"}, nil, nil, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeCapture{err: tc.err}
			err := uplinkCapturer{u: f, stateTopic: topics.New("p").UplinkState()}.Capture(tc.m)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Capture: %v, want %v", err, tc.want)
			}
			if got := errors.Is(err, localbroker.ErrQuotaExceeded); got != tc.wantQuota {
				t.Errorf("quota exceeded %v, want %v", got, tc.wantQuota)
			}
			if got := len(f.topics) == 1; got != tc.captured {
				t.Errorf("captured %v, want %v", got, tc.captured)
			}
		})
	}
}
