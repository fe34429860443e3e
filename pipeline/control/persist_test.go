package control

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func readState(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "control", "heat.json"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Regression for issue 7: every command wrote the state file (write,
// fsync, rename, directory fsync), 539 writes for a 5 s flood. A running
// loop now writes at most once per minSaveInterval, the first change at
// once and the last state always.
func TestSaveAtMostOncePerSecondIssue7(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		h := startHarness(t, testOpts(), dir)
		if n := h.l.Saves(); n != 0 {
			t.Fatalf("%d saves before any command", n)
		}
		// A 10 s burst of fake time: 20 commands every 100 ms.
		var sp float64
		for step := range 100 {
			h.advanceTo(h.at(time.Duration(step) * 100 * time.Millisecond))
			for i := range 20 {
				sp = 5 + float64(step*20+i)/100
				if _, err := h.l.Command(fmt.Appendf(nil, `{"setpoint":%v}`, sp)); err != nil {
					t.Fatal(err)
				}
			}
			h.settle()
		}
		// The first save comes with the first command, then one per second.
		if n := h.l.Saves(); n < 9 || n > 11 {
			t.Errorf("%d saves in a 10 s burst of 2,000 commands, want about 10", n)
		}
		h.advanceTo(h.at(10*time.Second + minSaveInterval))
		saved := h.l.Saves()
		if got, want := readState(t, dir), fmt.Sprintf(`{"setpoint":%v}`, sp)+"\n"; got != want {
			t.Errorf("state file %q a second after the last command, want %q", got, want)
		}
		// Nothing changed: no more writes.
		h.advanceTo(h.at(time.Minute))
		if n := h.l.Saves(); n != saved {
			t.Errorf("%d saves after a quiet minute, want %d", n, saved)
		}
	})
}

// TestSavedOnStop: a change not yet written when the loop stops is
// written by Run on its way out; a command to a stopped loop writes
// itself.
func TestSavedOnStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		h := startHarness(t, testOpts(), dir)
		h.command(`{"setpoint":21}`) // written at once
		h.command(`{"setpoint":22}`) // within the second: waits
		if n := h.l.Saves(); n != 1 {
			t.Fatalf("%d saves, want 1", n)
		}
		if got := readState(t, dir); got != `{"setpoint":21}`+"\n" {
			t.Fatalf("state file %q", got)
		}
		if err := h.stop(); err != nil {
			t.Fatal(err)
		}
		if got := readState(t, dir); got != `{"setpoint":22}`+"\n" {
			t.Errorf("state file after stop %q, want setpoint 22", got)
		}
		if _, err := h.l.Command([]byte(`{"mode":"off"}`)); err != nil {
			t.Fatal(err)
		}
		if got := readState(t, dir); got != `{"setpoint":22,"mode":"off"}`+"\n" {
			t.Errorf("state file after a command to the stopped loop %q", got)
		}
		if n := h.l.Saves(); n != 3 {
			t.Errorf("%d saves, want 3", n)
		}
	})
}

// TestSaveRetried: a failed write is logged once and tried again each
// interval until it works.
func TestSaveRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		// A file where the control directory should be: MkdirAll fails.
		blocker := filepath.Join(dir, "control")
		if err := os.WriteFile(blocker, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		h := startHarness(t, testOpts(), dir)
		h.command(`{"setpoint":24}`)
		h.advanceTo(h.at(5 * time.Second))
		if n := h.logs.count("not saved"); n != 1 {
			t.Errorf("%d log lines about the failed save, want 1:\n%s", n, h.logs)
		}
		if err := os.Remove(blocker); err != nil {
			t.Fatal(err)
		}
		h.advanceTo(h.at(6 * time.Second))
		if got := readState(t, dir); got != `{"setpoint":24}`+"\n" {
			t.Errorf("state file %q after the directory came back", got)
		}
		if n := h.logs.count("state file written again"); n != 1 {
			t.Errorf("recovery not logged once:\n%s", h.logs)
		}
		if n := h.l.Saves(); n != 1 {
			t.Errorf("%d saves, want 1", n)
		}
	})
}

// TestWarmStartRestored: the setpoint, the gains set by command and the
// PID's integral survive a restart, so the first output after it is
// about the last one before it (issue 9: the integral started from 0).
// {"reset":"integral"} zeroes it, and that survives a restart too.
func TestWarmStartRestored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		o := testOpts()
		o.PID = Gains{Kp: 0.1, Ki: 0.001}
		h := startHarness(t, o, dir)
		h.command(`{"setpoint":22,"gains":{"kp":0.2,"ki":0.002,"kd":0}}`)
		for i := range 60 {
			h.advanceTo(h.at(time.Duration(i) * 5 * time.Second))
			h.read(21.5) // e 0.5: the integral grows by 0.002·0.5·5 each step
		}
		before := h.l.State()
		integral := h.l.ctl().Integral()
		if !near(integral, 59*0.005) {
			t.Fatalf("integral %v, want %v", integral, 59*0.005)
		}
		if err := h.stop(); err != nil {
			t.Fatal(err)
		}

		h2 := newHarness(t, o, dir)
		if got := h2.l.ctl().Integral(); !near(got, integral) {
			t.Errorf("restored integral %v, want %v", got, integral)
		}
		h2.start()
		h2.advanceTo(h.at(5 * time.Minute))
		h2.read(21.5)
		after := h2.l.State()
		if after.Setpoint != 22 || after.Gains != (StateGains{Kp: 0.2, Ki: 0.002}) {
			t.Errorf("restored state %+v, want setpoint 22 and the commanded gains", after)
		}
		// dt 0 on the first reading: P 0.1 + the integral, as before the stop.
		if !near(after.Output, before.Output) {
			t.Errorf("first output after the restart %v, before it %v", after.Output, before.Output)
		}
		for _, want := range []string{"integral restored from state file", "gains restored from state file", "setpoint restored from state file"} {
			if h2.logs.count(want) != 1 {
				t.Errorf("log does not say %q once:\n%s", want, h2.logs)
			}
		}

		// Reset: the integral is 0, the output P only, and so after a restart.
		if s := h2.command(`{"reset":"integral"}`); !near(s.Output, 0.1) {
			t.Errorf("output after reset %v, want P alone 0.1", s.Output)
		}
		if err := h2.stop(); err != nil {
			t.Fatal(err)
		}
		if got := readState(t, dir); strings.Contains(got, "integral") {
			t.Errorf("state file after a reset %q still has an integral", got)
		}
		h3 := newHarness(t, o, dir)
		if got := h3.l.ctl().Integral(); got != 0 {
			t.Errorf("integral after reset and restart %v, want 0", got)
		}
	})
}

// TestIntegralSavedRarely: a running loop writes the integral when it
// moved by integralSaveStep and at most every integralSaveEvery, not with
// every reading.
func TestIntegralSavedRarely(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		o := testOpts()
		o.PID = Gains{Kp: 0.1, Ki: 0.001}
		h := startHarness(t, o, dir)
		// e 1 for an hour: the integral grows 0.005 per 5 s step and reaches
		// its limit, 1 less P 0.1, after about 15 minutes.
		for i := range 720 {
			h.advanceTo(h.at(time.Duration(i) * 5 * time.Second))
			h.read(19)
		}
		// Written at 10 s (0.01 moved), then at 10:10 (moved since), then
		// once more when it has settled (20:10), and not again.
		if n := h.l.Saves(); n != 3 {
			t.Errorf("%d state file writes in an hour, want 3", n)
		}
		if got := readState(t, dir); got != `{"integral":0.9,"integral_for":"kp=0.1 ki=0.001 kd=0 output=0..1"}`+"\n" {
			t.Errorf("state file %q", got)
		}
	})
}
