// Command fleet runs N `edged run` gateways on simulated sensors, each
// with its own state directory, device id and ports, all uplinking into
// one Mosquitto, for `make fleet N=50`: the shape of a farm of Pis feeding
// one clustered broker. A QoS 1 subscriber on the broker records every
// reading with its (gw, epoch, seq) user properties.
//
// After a steady window it stops every gateway cleanly and checks that
// each one's stream arrived gapless: one epoch (a fresh buffer that never
// crashed), seqs 1..last with none missing. It reports the broker's
// ingress (the subscriber's count over the window: it is the only
// subscriber, so it sees every message the broker took in on those
// topics), and RSS and CPU per gateway (/proc, median and max). It exits
// 1 when a stream has a gap or a gateway failed.
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
	flag.IntVar(&c.n, "n", 50, "gateways")
	flag.StringVar(&c.edged, "edged", "bin/edged", "edged binary (`make build`)")
	flag.StringVar(&c.mosquitto, "mosquitto", "mosquitto", "mosquitto binary (the broker)")
	flag.DurationVar(&c.interval, "interval", 100*time.Millisecond, "sampling interval of each simulated sensor (2 sensors, 3 readings per interval)")
	flag.DurationVar(&c.window, "window", 20*time.Second, "steady window the figures are taken over")
	flag.Parse()
	rig, err := benchrig.New("fleet")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if c.mosquitto, err = exec.LookPath(c.mosquitto); err != nil {
		rig.Fatal(fmt.Errorf("fleet: mosquitto not found: apt-get install mosquitto"))
	}
	if _, err := os.Stat(c.edged); err != nil {
		rig.Fatal(fmt.Errorf("fleet: %w (make build)", err))
	}
	f := &fleet{config: c, rig: rig, out: os.Stdout}
	res, err := f.run()
	rig.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if res.bad > 0 {
		os.Exit(1)
	}
}
