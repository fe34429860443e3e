package control

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
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
	dir := t.TempDir()
	h := newHarness(t, testOpts(), dir)
	h.start()
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
}

// TestSavedOnStop: a change not yet written when the loop stops is
// written by Run on its way out; a command to a stopped loop writes
// itself.
func TestSavedOnStop(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, testOpts(), dir)
	h.start()
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
}

// TestSaveRetried: a failed write is logged once and tried again each
// interval until it works.
func TestSaveRetried(t *testing.T) {
	dir := t.TempDir()
	// A file where the control directory should be: MkdirAll fails.
	blocker := filepath.Join(dir, "control")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, testOpts(), dir)
	h.start()
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
}
