package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/edged/edged/cmd/internal/benchrig"
	"github.com/edged/edged/uplink/uplinktest"
)

// local is the system on the gateway: the broker LAN clients publish to,
// which forwards to the cloud.
type local interface {
	name() string
	addr() string // the LAN MQTT listener
	pid() int
	kill()          // SIGKILL, as a crash
	restart() error // after kill, on the same state
	stop()
}

// start starts system s ("mosquitto" or "edged") on a fresh state
// directory, pointed at the cloud; the rig stops it at the latest.
func (b *bench) start(s string) (local, error) {
	k := b.next()
	dir := filepath.Join(b.rig.Dir, fmt.Sprintf("%s-%d", s, k))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var l local
	switch s {
	case "mosquitto":
		extra := fmt.Sprintf(`user root
persistence true
persistence_location %s/
max_inflight_messages 20
connection bench-bridge
address %s
remote_clientid bench-bridge-%d
cleansession false
bridge_protocol_version %s
topic bench/# out 1
`, dir, b.cloud.Addr, k, b.bridgeProtocol)
		if b.bridgeRestart != "" {
			extra += "restart_timeout " + b.bridgeRestart + "\n"
		}
		m, err := uplinktest.StartMosquitto(b.mosquitto, dir, extra)
		if err != nil {
			return nil, err
		}
		l = mosquittoLocal{m}
	case "edged":
		e, err := benchrig.StartEdged(b.edged, dir, func(lan string) string {
			return fmt.Sprintf(`device: {id: benchgw}
state_dir: %s
log: {level: warn}
broker: {mqtt: %q, websocket: "", anonymous_role: publisher}
http: {listen: ""}
uplink:
  url: mqtt://%s
  client_id: bench-edged-%d
  forward: [{local: "bench/#"}]
`, filepath.Join(dir, "state"), lan, b.cloud.Addr, k)
		})
		if err != nil {
			return nil, err
		}
		l = edgedLocal{e}
	case "floor":
		f, err := benchrig.StartFloor("-floor-cloud", b.cloud.Addr, "-floor-dir", dir, "-floor-window", "32")
		if err != nil {
			return nil, err
		}
		l = floorLocal{f}
	default:
		return nil, fmt.Errorf("unknown system %q", s)
	}
	b.rig.Defer(l.stop)
	return l, nil
}

// mosquittoLocal is Mosquitto with the bridge. uplinktest writes the
// first lines of its config (listener, allow_anonymous,
// max_queued_messages 0, ...); the later lines above override them.
type mosquittoLocal struct{ m *uplinktest.Mosquitto }

func (l mosquittoLocal) name() string   { return "mosquitto" }
func (l mosquittoLocal) addr() string   { return l.m.Addr }
func (l mosquittoLocal) pid() int       { return l.m.Pid() }
func (l mosquittoLocal) kill()          { l.m.Kill() }
func (l mosquittoLocal) restart() error { return l.m.Start() }
func (l mosquittoLocal) stop()          { l.m.Stop() }

type edgedLocal struct{ e *benchrig.Edged }

func (l edgedLocal) name() string   { return "edged" }
func (l edgedLocal) addr() string   { return l.e.LAN }
func (l edgedLocal) pid() int       { return l.e.Pid() }
func (l edgedLocal) kill()          { l.e.Kill() }
func (l edgedLocal) restart() error { return l.e.Start() }
func (l edgedLocal) stop()          { l.e.Stop() }

// floorLocal is the Go relay floor; it takes part in the live rounds
// only, so it has no restart.
type floorLocal struct{ f *benchrig.Floor }

func (l floorLocal) name() string   { return "floor" }
func (l floorLocal) addr() string   { return l.f.Addr }
func (l floorLocal) pid() int       { return l.f.Pid() }
func (l floorLocal) kill()          { l.f.Stop() }
func (l floorLocal) restart() error { return errors.New("benchuplink: the floor does not restart") }
func (l floorLocal) stop()          { l.f.Stop() }
