package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/edged/edged/localbroker"
)

// TestUncloudableMessagesLoggedPerTopic (review of 4cbcf57): the capturer
// openUplink installs says which messages the cloud cannot take "once a
// minute per topic" (its comment, README "Uplink"). Two different topics
// that break the preset's limits, each published once, must each be
// named. Fails on main: the limiter is built with a burst of 1 line a
// minute over all keys, so the second topic is held back, and while the
// first recurs first in every minute the second is never named at all.
func TestUncloudableMessagesLoggedPerTopic(t *testing.T) {
	dir := t.TempDir()
	cfg := parseReload(t, fmt.Sprintf(`device: {id: gw}
state_dir: %s
broker: {mqtt: "127.0.0.1:0", websocket: ""}
http: {listen: ""}
uplink:
  url: mqtt://127.0.0.1:1
  preset: emqx
  forward: [{local: "lan/#"}]
`, dir))
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	clk, wall, err := openClock(cfg.Clock.Trust, log)
	if err != nil {
		t.Fatal(err)
	}
	b, err := localbroker.New(cfg.Broker, cfg.Device.TopicPrefix, log) // not started: Publish captures, then queues
	if err != nil {
		t.Fatal(err)
	}
	u, err := openUplink(cfg, b, clk, wall, log)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close(context.Background())
	deep := strings.Repeat("/x", 130) // emqx: at most 128 levels
	for _, topic := range []string{"lan/a" + deep, "lan/b" + deep} {
		if err := b.Publish(topic, []byte("1"), false); err != nil {
			t.Fatalf("%s: %v, want it published to the LAN", topic[:5], err)
		}
	}
	for _, topic := range []string{"lan/a" + deep, "lan/b" + deep} {
		if !strings.Contains(logs.String(), "topic="+topic) {
			t.Errorf("%s...: not named in the log\n%s", topic[:5], logs.String())
		}
	}
}
