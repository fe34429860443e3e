package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/cmd/internal/benchrig"
	"github.com/edged/edged/uplink/uplinktest"
)

// TestFleetIntegration is `make fleet N=10` with a 3 s window: ten
// gateways into one Mosquitto, every stream gapless, the figures there.
// Timings are printed, never checked.
func TestFleetIntegration(t *testing.T) {
	mq := uplinktest.MosquittoBin(t)
	bin, err := benchrig.BuildEdged(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rig, err := benchrig.New("fleet-test")
	if err != nil {
		t.Fatal(err)
	}
	defer rig.Close()
	var out bytes.Buffer
	f := &fleet{config: config{n: 10, edged: bin, mosquitto: mq, interval: 100 * time.Millisecond, window: 3 * time.Second}, rig: rig, out: &out}
	res, err := f.run()
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	if res.bad != 0 || len(res.gws) != 10 || res.ingress <= 0 {
		t.Errorf("%d of %d gateways bad, ingress %.0f msg/s", res.bad, len(res.gws), res.ingress)
	}
	for _, g := range res.gws {
		if g.arrived == 0 || g.rss <= 0 {
			t.Errorf("%s: %d arrived, RSS %d KiB", g.id, g.arrived, g.rss)
		}
	}
}

// TestFleetCheckFindsGaps feeds the stream check what a broken uplink
// would deliver: a missing seq, a stream that starts late, a second
// epoch, a gateway that sent nothing.
func TestFleetCheckFindsGaps(t *testing.T) {
	var out bytes.Buffer
	f := &fleet{out: &out}
	msgs := func(gw, epoch string, seqs ...uint64) []uplinktest.Received {
		var m []uplinktest.Received
		for _, s := range seqs {
			m = append(m, uplinktest.Received{GW: gw, Epoch: epoch, Seq: s})
		}
		return m
	}
	var all []uplinktest.Received
	all = append(all, msgs("ok", "e1", 1, 2, 3, 3, 4)...)
	all = append(all, msgs("gap", "e1", 1, 2, 4)...)
	all = append(all, msgs("late", "e1", 2, 3)...)
	all = append(all, msgs("epochs", "e1", 1, 2)...)
	all = append(all, msgs("epochs", "e2", 1)...)
	res := &result{}
	for _, id := range []string{"ok", "gap", "late", "epochs", "silent"} {
		res.gws = append(res.gws, &gateway{id: id, e: stoppedEdged(t)})
	}
	f.check(res, all)
	want := map[string]bool{"gap": true, "late": true, "epochs": true, "silent": true}
	if res.bad != len(want) {
		t.Errorf("%d bad, want %d:\n%s", res.bad, len(want), out.String())
	}
	for _, g := range res.gws {
		if strings.Contains(out.String(), "BAD "+g.id+":") != want[g.id] {
			t.Errorf("%s: reported bad %v, want %v:\n%s", g.id, !want[g.id], want[g.id], out.String())
		}
	}
	if g := res.gws[0]; g.arrived != 4 || g.dups != 1 || g.gaps != 0 {
		t.Errorf("ok: %d arrived, %d dups, %d gaps; want 4, 1, 0", g.arrived, g.dups, g.gaps)
	}
}

// stoppedEdged is an Edged whose process exited 0, as after a clean stop.
func stoppedEdged(t *testing.T) *benchrig.Edged {
	t.Helper()
	dir := t.TempDir()
	script := dir + "/edged"
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := benchrig.NewEdged(script, dir, func(string) string { return "" })
	_ = e.Start() // exits at once: "exited at start"
	<-e.Done()
	return e
}
