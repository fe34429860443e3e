package main

import (
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNotifyLifecycleIntegration runs `edged run` as systemd would with
// Type=notify and WatchdogSec (a fake $NOTIFY_SOCKET the test binds,
// WATCHDOG_USEC of 400 ms) and an uplink whose cloud refuses connections,
// and checks what reaches the socket, in order: READY=1 first; WATCHDOG=1
// and STATUS= lines a person can read after it, the status changing as
// the sensors come online and at most once per statusEvery; STOPPING=1
// as soon as SIGTERM arrives, with a STATUS that says what it does, and
// nothing after it.
func TestNotifyLifecycleIntegration(t *testing.T) {
	bin := edgedBinary(t)
	cloud := freePort(t) // nothing listens: the uplink stays disconnected
	start := time.Now()
	d := startReadyEnv(t, bin, []string{"WATCHDOG_USEC=400000"}, func() (string, []string) {
		cfg, mqttAddr, wsAddr, httpAddr := simConfig(t)
		editFile(t, cfg, fastSim(uplinkYAML(cloud, "")))
		return cfg, []string{mqttAddr, wsAddr, httpAddr}
	})
	// The backlog grows with every reading the cloud does not take, so
	// the line changes: wait for two of them.
	want := regexp.MustCompile(`^STATUS=2/2 sensors online, uplink disconnected, backlog [1-9]\d*`)
	deadline := time.Now().Add(30 * time.Second)
	for countNotices(d.notices(), want) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("not two lines %s within 30 s; sent: %q", want, lines(d.notices()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopAt := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Fatal("edged did not stop within 20 s of SIGTERM")
	}
	if d.err != nil {
		t.Fatalf("edged exited with %v", d.err)
	}
	got := lines(d.notices())
	if len(got) == 0 || got[0] != "READY=1" {
		t.Fatalf("first message %q, want READY=1", got)
	}
	stopping := -1
	for i, l := range got {
		if l == "STOPPING=1" {
			stopping = i
			break
		}
	}
	if stopping < 0 {
		t.Fatalf("no STOPPING=1 after SIGTERM: %q", got)
	}
	// STOPPING=1 comes with a STATUS in the same message, and nothing
	// comes after that: no watchdog ping from an edged that is stopping.
	if stopping != len(got)-2 || !strings.HasPrefix(got[stopping+1], "STATUS=stopping: actuators to their safe state") {
		t.Errorf("after STOPPING=1: %q, want only its STATUS line", got[stopping+1:])
	}
	var watchdogs, statuses int
	for _, l := range got[1:stopping] {
		switch {
		case l == "WATCHDOG=1":
			watchdogs++
		case strings.HasPrefix(l, "STATUS="):
			statuses++
			if !regexp.MustCompile(`^STATUS=\d/2 sensors online, uplink (dis)?connected, backlog \d+`).MatchString(l) {
				t.Errorf("status line %q is not what a person reads", l)
			}
		default:
			t.Errorf("unexpected message %q between READY=1 and STOPPING=1", l)
		}
	}
	if watchdogs < 2 {
		t.Errorf("%d WATCHDOG=1 between READY=1 and STOPPING=1, want one every 200 ms", watchdogs)
	}
	// The backlog grows with every reading; the line goes out at most
	// once per statusEvery (+1: the first goes out at once).
	if limit := int(stopAt.Sub(start)/statusEvery) + 1; statuses > limit {
		t.Errorf("%d STATUS lines in %v, want at most %d (one per %v)", statuses, stopAt.Sub(start), limit, statusEvery)
	}
}

// editFile rewrites the file at path with edit.
func editFile(t *testing.T, path string, edit func(string) string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(edit(string(data))), 0o644); err != nil {
		t.Fatal(err)
	}
}

func countNotices(ns []notice, re *regexp.Regexp) int {
	n := 0
	for _, m := range ns {
		if re.MatchString(m.line) {
			n++
		}
	}
	return n
}

func lines(ns []notice) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.line
	}
	return out
}
