package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/edged/edged/cmd/internal/benchrig"
	"github.com/edged/edged/uplink/uplinktest"
)

// TestMain serves the Go floor when the bench starts this test binary as
// its floor (benchrig.StartFloor runs the executable with -serve-floor).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-"+benchrig.FloorFlag {
		benchrig.ServeFloorMain(benchrig.ServeFloor)
	}
	os.Exit(m.Run())
}

// TestBenchBrokerSmokeIntegration runs `make bench-broker` at a small
// size (about 15 s): Mosquitto, the Go floor and edged take 64 clients from 8 addresses
// (within edged's default per-address limits) and every QoS 1 message
// reaches every subscriber. Timings are printed, never checked.
func TestBenchBrokerSmokeIntegration(t *testing.T) {
	mq := uplinktest.MosquittoBin(t)
	bin, err := benchrig.BuildEdged(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rig, err := benchrig.New("benchbroker-test")
	if err != nil {
		t.Fatal(err)
	}
	defer rig.Close()
	var out bytes.Buffer
	points := []point{{200, 0}, {200, 1}}
	res, err := run(&out, rig, mq, bin, points, 2, 1, 1, 64)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	for _, name := range names {
		f := res[name]
		if len(f.cpu[points[0]]) != 1 || len(f.cpu[points[1]]) != 1 || f.rssIdle <= 0 || f.rssClient <= 0 {
			t.Errorf("%s: a figure is missing: %+v", name, *f)
		}
	}
	if !strings.Contains(out.String(), "| figure | Mosquitto | edged | ratio |") {
		t.Error("no table printed")
	}
	if !strings.Contains(out.String(), "| figure | Mosquitto | Go floor | edged |") {
		t.Error("no floor table printed")
	}
}
