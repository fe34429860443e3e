package main

import (
	"bytes"
	"errors"
	"io"
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
	run := func(t *testing.T, c config) *summary {
		rig, err := benchrig.New("torture-test")
		if err != nil {
			t.Fatal(err)
		}
		defer rig.Close()
		var out bytes.Buffer
		c.edged, c.failpoints, c.mosquitto = bin, fp, mq
		c.seed, c.rate, c.maxInflight, c.maxLife = time.Now().UnixNano(), 200, 32, 2*time.Second
		tt := &torture{config: c, rig: rig, out: &out}
		sum, err := tt.run()
		if err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		t.Log("\n" + out.String())
		if sum.violations > 0 {
			t.Errorf("%d violations (seed %d): see the log", sum.violations, tt.seed)
		}
		if len(sum.rounds) != c.rounds || !strings.Contains(out.String(), "violations: ") {
			t.Errorf("%d rounds of %d", len(sum.rounds), c.rounds)
		}
		return sum
	}
	t.Run("random", func(t *testing.T) {
		sum := run(t, config{rounds: 25})
		reached, accepted := 0, 0
		for _, r := range sum.rounds {
			if r.point != "" && r.reached {
				reached++
			}
			accepted += r.accepted
		}
		if reached == 0 || accepted == 0 {
			t.Errorf("%d crash points reached, %d accepted: the run did not torture anything", reached, accepted)
		}
	})
	// The first append comes a few ms after READY=1, often before the
	// restart's checks are done: a death at the start, not a daemon that
	// never got ready (CI at 15cebf4 failed on exactly this).
	t.Run("first append", func(t *testing.T) {
		sum := run(t, config{rounds: 6, point: "append@1"})
		for _, r := range sum.rounds {
			if !r.reached {
				t.Errorf("round %d: append@1 not reached", r.n)
			}
		}
	})
}

// A crash point that fires during a restart's checks makes the start a
// death at the start (the loss and the failed requests are its), but what
// the live daemon showed before it died still counts: a heater left on or
// a loop in manual after the restart, a ready past the bound.
func TestDiedDuringChecksKeepsWhatTheDaemonShowed(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    restartCheck
		want string
	}{
		{"heater on", restartCheck{ready: time.Second, heater: 0.6, mode: "auto", lost: 3}, "heater at 0.6"},
		{"manual", restartCheck{ready: time.Second, mode: "manual", lost: 3}, "in manual"},
		{"slow ready", restartCheck{ready: 2 * readyBound, mode: "auto", lost: 3}, "ready after"},
		{"dead early", restartCheck{ready: time.Second, readyErr: errNotReady, heaterErr: errNotReady, lost: 3}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &round{n: 1, point: "wal.append", hit: 1}
			tc.c.diedDuringChecks(r, 2*time.Second)
			if !r.diedAtStart || !r.reached {
				t.Errorf("not a death at the start: %+v", r)
			}
			got := strings.Join(r.violations, "; ")
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("violations %q, want %q", got, tc.want)
			}
		})
	}
}

var errNotReady = errors.New("connection refused")

// A window that holds the copies of starts that died early is bounded by
// a max_inflight for each process in it, and no more.
func TestBlameBoundsEachStart(t *testing.T) {
	for _, tc := range []struct {
		dups, procs int
		violation   bool
	}{
		{32, 1, false}, {33, 1, true}, {64, 2, false}, {65, 2, true}, {0, 0, false},
	} {
		tt := &torture{config: config{maxInflight: 32}, out: io.Discard}
		tt.dups = tc.dups
		r := &round{n: 1}
		tt.blame([]*round{r}, tc.procs)
		if got := len(r.violations) > 0; got != tc.violation || r.dups != tc.dups || tt.dups != 0 || tt.allDups != tc.dups {
			t.Errorf("%d copies over %d starts: violations %q, dups %d (want a violation: %v)", tc.dups, tc.procs, r.violations, r.dups, tc.violation)
		}
	}
}
