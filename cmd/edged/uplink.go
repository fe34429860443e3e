package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/ratelog"
	"github.com/edged/edged/sensors/topics"
	"github.com/edged/edged/sensors/wallclock"
	"github.com/edged/edged/uplink"
)

// uplinkCapturer adapts the uplink to the local broker's Capturer. The two
// packages do not know each other; this is where a full buffer under
// reject_new becomes PUBACK 0x97 for MQTT 5 publishers.
type uplinkCapturer struct {
	u interface {
		Capture(topic string, payload []byte, qos byte, retain bool) (bool, error)
	}
	// stateTopic is where the uplink publishes its own state. It is
	// never captured: each publication would change the state it
	// reports and cause the next one (a buffer write and a cloud
	// message every 5 s forever).
	stateTopic string
	// log, through limit (a line per topic a minute, at most 10 a minute
	// in all), says which messages the cloud cannot take; nil: not
	// logged.
	log   *slog.Logger
	limit *ratelog.Limiter
}

var _ localbroker.Capturer = uplinkCapturer{}

func (c uplinkCapturer) Capture(m localbroker.Message) error {
	if m.Client == "" && m.Topic == c.stateTopic {
		return nil
	}
	_, err := c.u.Capture(m.Topic, m.Payload, m.QoS, m.Retain)
	switch {
	case errors.Is(err, uplink.ErrFull):
		return fmt.Errorf("%w: %w", localbroker.ErrQuotaExceeded, err)
	case errors.Is(err, uplink.ErrUnavailable) && m.Client == "":
		// The buffer failed and is being reopened; the uplink counted
		// the message (dropped.unavailable). A reading of the
		// in-process pipeline still reaches LAN subscribers; a LAN
		// publisher gets a refusal instead, so it keeps its message.
		return nil
	case errors.Is(err, uplink.ErrBadTopic), errors.Is(err, uplink.ErrTooLarge):
		// The cloud can never take this one: its cloud topic or its
		// size breaks the uplink's or the preset's limits. The uplink
		// counted it (dropped.bad_topic, dropped.too_large); the LAN is
		// not bound by the cloud's limits and gets it as usual. Refusing
		// it would lose it for LAN subscribers too, and an MQTT 3.1.1
		// publisher, which gets no negative PUBACK, would resend it for
		// ever.
		if c.log != nil {
			c.limit.Log(c.log, slog.LevelWarn, m.Topic, "not forwarding a message the cloud cannot take; LAN subscribers still get it",
				"topic", m.Topic, "client", m.Client, "error", err)
		}
		return nil
	}
	return err
}

// brokerState publishes the uplink's state JSON retained on the local
// broker, so LAN dashboards see delivery health.
type brokerState struct {
	b     *localbroker.Broker
	topic string
}

func (p brokerState) PublishState(payload []byte) error { return p.b.Publish(p.topic, payload, true) }

// openUplink opens the uplink when the config has one, installs it as the
// broker's capturer (call before broker.Start, so no publish slips past
// it) and starts forwarding. With no uplink section it does nothing.
func openUplink(cfg *configs.Config, b *localbroker.Broker, clk sensors.Clock, wall *wallclock.Clock, log *slog.Logger) (*uplink.Uplink, error) {
	if cfg.Uplink == nil {
		return nil, nil
	}
	o := *cfg.Uplink
	tree := topics.New(cfg.Device.TopicPrefix)
	if o.StatusTopic == "" {
		// The cloud sees the gateway's status on the same topic as the
		// LAN does.
		o.StatusTopic = tree.Status()
	}
	o.Buffer.ClockFloor = clockFloor()
	u, err := uplink.New(o, uplink.BufferDir(cfg.StateDir), cfg.Device.ID, log, clk)
	if err != nil {
		return nil, err
	}
	// Stamps taken before the clock is trusted are corrected as they
	// leave, readings' payloads too (README "Clock").
	u.SetTrust(wall, pipeline.Restamper(wall))
	stateTopic := tree.UplinkState()
	b.SetCapturer(uplinkCapturer{u: u, stateTopic: stateTopic, log: log, limit: ratelog.New(time.Minute, 10, clk)})
	u.SetStatePublisher(brokerState{b: b, topic: stateTopic})
	u.Start()
	st := u.Stats()
	log.Info("uplink buffer open", "dir", uplink.BufferDir(cfg.StateDir), "epoch", st.Epoch, "backlog", st.Backlog)
	return u, nil
}

// closeUplink waits (within ctx) for messages in flight, says offline to
// the cloud, disconnects and writes the ack marker, so the next start
// resumes exactly here. Call it after the broker is closed: nothing is
// captured any more.
func closeUplink(ctx context.Context, u *uplink.Uplink) error {
	if u == nil {
		return nil
	}
	return u.Close(ctx)
}
