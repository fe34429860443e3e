package main

import (
	"bytes"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/edged/edged/cmd/internal/benchrig"
	"github.com/edged/edged/uplink/uplinktest"
)

// TestMain serves the Go relay floor when the bench starts this test
// binary as its floor (benchrig.StartFloor).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-"+benchrig.FloorFlag {
		var cloud, dir string
		window := 32
		for i := 2; i+1 < len(os.Args); i += 2 {
			switch os.Args[i] {
			case "-floor-cloud":
				cloud = os.Args[i+1]
			case "-floor-dir":
				dir = os.Args[i+1]
			case "-floor-window":
				window, _ = strconv.Atoi(os.Args[i+1])
			}
		}
		benchrig.ServeFloorMain(func(ln net.Listener) error { return benchrig.ServeRelayFloor(ln, cloud, dir, window) })
	}
	os.Exit(m.Run())
}

// TestBenchUplinkSmokeIntegration runs every scenario of `make
// bench-uplink` at a small size (about 30 s) and checks the harness
// counts right: everything arrives through a plain outage for both
// systems, edged loses nothing to a kill -9, and Mosquitto, which saves
// its persistence only every 30 min by default, loses the whole backlog
// (so the kill is a crash and the loss is seen). Timings are printed,
// never checked.
func TestBenchUplinkSmokeIntegration(t *testing.T) {
	mq := uplinktest.MosquittoBin(t)
	bin, err := benchrig.BuildEdged(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rig, err := benchrig.New("benchuplink-test")
	if err != nil {
		t.Fatal(err)
	}
	defer rig.Close()
	const n = 500
	var out bytes.Buffer
	b := &bench{rig: rig, out: &out, config: config{
		edged: bin, mosquitto: mq, bridgeProtocol: "mqttv311", bridgeRestart: "1",
		rate: 200, seconds: 1, rounds: 1, maxN: n, outageN: n, outageRounds: 1, killN: n, window: 64,
	}}
	if err := b.run(); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	for _, s := range systems {
		f := b.res[s]
		if len(f.p50) != 1 || f.p50[0] <= 0 || f.p99[0] < f.p50[0] || f.maxRate[0] <= 0 || len(f.drain) != 1 || f.drain[0] <= 0 || f.rssHold[0] <= 0 {
			t.Errorf("%s: a figure is missing: %+v", s, *f)
		}
		if len(f.maxCPU) != 1 || len(f.maxCloudCPU) != 1 || len(f.maxBenchCPU) != 1 || f.maxCPU[0] < 0 || f.maxCloudCPU[0] < 0 || f.maxBenchCPU[0] < 0 {
			t.Errorf("%s: max rate's CPU per process missing or negative: %v %v %v", s, f.maxCPU, f.maxCloudCPU, f.maxBenchCPU)
		}
		if f.outageLost != 0 {
			t.Errorf("%s: %v of %d lost across a plain outage", s, f.outageLost, n)
		}
	}
	if e := b.res["edged"]; e.killLost != 0 || e.wpm[0] <= 0 {
		t.Errorf("edged: %v lost after kill -9, %v bytes written per message (want 0 lost, > 0 written)", e.killLost, e.wpm)
	}
	if m := b.res["mosquitto"]; m.killLost != n {
		t.Errorf("mosquitto: %v of %d lost after kill -9; with the default autosave it keeps none (was the kill a clean stop?)", m.killLost, n)
	}
	if !strings.Contains(out.String(), "| figure | Mosquitto + bridge | edged | ratio |") {
		t.Error("no table printed")
	}
	if f := b.res["floor"]; len(f.cpuPerMsg) != 1 || len(f.maxRate) != 1 || f.maxRate[0] <= 0 || len(f.bare) != 1 || f.bare[0] <= 0 {
		t.Errorf("floor: a live figure is missing: %+v", *f)
	}
	if !strings.Contains(out.String(), "| same, of the cloud Mosquitto |") {
		t.Error("no max-rate CPU of the cloud printed")
	}
	if !strings.Contains(out.String(), "| figure | Mosquitto + bridge | Go floor | edged |") {
		t.Error("no floor table printed")
	}
}
