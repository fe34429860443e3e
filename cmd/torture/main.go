// Command torture kills `edged run` again and again while LAN clients
// feed it, and checks after every restart that the uplink kept its
// durability contract (README "Durability contract"), for `make torture`.
//
// One edged (built from the tree) on simulated sensors sampling every
// 20 ms, a simulated heater under a hysteresis loop, a LAN QoS 1
// publisher on a forwarded topic and a LAN subscriber to the readings; a
// Mosquitto as the cloud with a QoS 1 subscriber on a persistent session
// that records every message with its (gw, epoch, seq) user properties.
// Each round starts edged, puts the heater on by hand (manual mode) and
// feeds it until it dies: by SIGKILL at a random moment, or at one of the
// uplink buffer's crash points (uplink/wal CrashPoints, in the build with
// -tags edgedfailpoints) at a random hit. The next start checks the
// round:
//   - ready: /readyz answers 200 within 5 s of the exec;
//   - safe: the heater is at its safe level, and its loop not in manual
//     (a saved manual mode comes back as off); the simulated heater lives
//     in the process, so "while down" cannot be observed, only the start;
//   - no loss: every LAN publish edged PUBACKed and every reading the LAN
//     subscriber got (a reading is captured before fan-out) reaches the
//     cloud, within 20 s of the start;
//   - duplicates: the copies of a (gw, epoch, seq) seen before that arrive
//     in the round's life are at most uplink max_inflight, and every copy
//     carries the first one's topic and payload.
//
// It prints one line per round and a summary, and exits 1 on any
// violation. The run is seeded (-seed): the same seed picks the same kill
// points (timing still varies).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/edged/edged/cmd/internal/benchrig"
)

func main() {
	var c config
	flag.StringVar(&c.edged, "edged", "bin/edged", "edged binary for the random kills (`make build`)")
	flag.StringVar(&c.failpoints, "edged-failpoints", "bin/edged-failpoints", "edged built with -tags edgedfailpoints, for the crash-point kills")
	flag.StringVar(&c.mosquitto, "mosquitto", "mosquitto", "mosquitto binary (the cloud)")
	flag.IntVar(&c.rounds, "rounds", 25, "kills")
	flag.Int64Var(&c.seed, "seed", 0, "seed of the kill points (0: from the clock, printed)")
	flag.Float64Var(&c.rate, "rate", 300, "LAN QoS 1 publishes a second")
	flag.IntVar(&c.maxInflight, "max-inflight", 32, "uplink max_inflight, the bound on duplicates per round")
	flag.DurationVar(&c.maxLife, "max-life", 4*time.Second, "the longest one round runs before a SIGKILL, when its crash point is not reached")
	flag.StringVar(&c.point, "point", "", "crash point and hit, e.g. append@1: every round dies there (default: random kills)")
	flag.Parse()
	if c.seed == 0 {
		c.seed = time.Now().UnixNano()
	}
	rig, err := benchrig.New("torture")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if c.mosquitto, err = exec.LookPath(c.mosquitto); err != nil {
		rig.Fatal(fmt.Errorf("torture: mosquitto not found: apt-get install mosquitto"))
	}
	for _, b := range []string{c.edged, c.failpoints} {
		if _, err := os.Stat(b); err != nil {
			rig.Fatal(fmt.Errorf("torture: %w (make torture builds both)", err))
		}
	}
	t := &torture{config: c, rig: rig, out: os.Stdout}
	sum, err := t.run()
	rig.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if sum.violations > 0 {
		os.Exit(1)
	}
}
