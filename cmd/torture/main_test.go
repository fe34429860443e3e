package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/cmd/internal/benchrig"
	"github.com/edged/edged/uplink/uplinktest"
)

// TestTortureIntegration is `make torture ROUNDS=25` with shorter lives
// (at most 2 s a round, 200 LAN msg/s): 25 kills of edged, by SIGKILL at
// random and at the buffer's crash points, each restart checked for loss,
// duplicates, readiness and the heater. The seed is the clock's and is
// logged, so a failure can be replayed with `go run ./cmd/torture -seed`.
func TestTortureIntegration(t *testing.T) {
	mq := uplinktest.MosquittoBin(t)
	dir := t.TempDir()
	bin, err := benchrig.BuildEdged(dir)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := benchrig.BuildEdged(dir, "edgedfailpoints")
	if err != nil {
		t.Fatal(err)
	}
	rig, err := benchrig.New("torture-test")
	if err != nil {
		t.Fatal(err)
	}
	defer rig.Close()
	var out bytes.Buffer
	tt := &torture{config: config{edged: bin, failpoints: fp, mosquitto: mq, rounds: 25, seed: time.Now().UnixNano(),
		rate: 200, maxInflight: 32, maxLife: 2 * time.Second}, rig: rig, out: &out}
	sum, err := tt.run()
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	if sum.violations > 0 {
		t.Errorf("%d violations (seed %d): see the log", sum.violations, tt.seed)
	}
	reached, accepted := 0, 0
	for _, r := range sum.rounds {
		if r.point != "" && r.reached {
			reached++
		}
		accepted += r.accepted
	}
	if len(sum.rounds) != 25 || reached == 0 || accepted == 0 || !strings.Contains(out.String(), "violations: ") {
		t.Errorf("%d rounds, %d crash points reached, %d accepted: the run did not torture anything", len(sum.rounds), reached, accepted)
	}
}
