package main

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReloadStopRaceIntegration (review of 9dfa46b): edged built with
// the race detector gets a SIGHUP for a file that restarts a sensor and
// a control loop, and a SIGTERM 0..27 ms later, so the stop comes while
// the reload reads the file, as it enters apply, while it applies, or
// after. Every run must stop cleanly (a race found makes the binary
// exit 66), and send no RELOADING=1 or READY=1 after STOPPING=1.
func TestReloadStopRaceIntegration(t *testing.T) {
	bin := raceBinary(t)
	for i := range 10 {
		delay := time.Duration(i*3) * time.Millisecond
		d, _, _, _ := startSim(t, bin, nil)
		path := d.cmd.Args[3]
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s := string(data)
		for _, p := range [][2]string{{"interval: 10s", "interval: 5s"}, {"setpoint: 22.5", "setpoint: 21"}} {
			if !strings.Contains(s, p[0]) {
				t.Fatalf("sim config has no %q", p[0])
			}
			s = strings.Replace(s, p[0], p[1], 1)
		}
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil { // by PID: the process we started
			t.Fatal(err)
		}
		time.Sleep(delay)
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitExit(t, d, 30*time.Second)
		logs := d.logs.String()
		if d.err != nil || strings.Contains(logs, "DATA RACE") {
			t.Fatalf("run %d (SIGTERM %v after SIGHUP): exit %v\n%s", i, delay, d.err, logs)
		}
		t.Logf("run %d (SIGTERM %v after SIGHUP): reload applied %v, dropped %v", i, delay,
			strings.Contains(logs, "msg=\"config reloaded\""), strings.Contains(logs, "reload dropped"))
		stopping := waitNotice(t, d, "STOPPING=1", 0)
		for _, n := range d.notices()[stopping:] {
			if n.line == "READY=1" || strings.HasPrefix(n.line, "RELOADING=1") {
				t.Errorf("run %d: %q after STOPPING=1", i, n.line)
			}
		}
	}
}
