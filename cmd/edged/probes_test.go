package main

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// TestWatchdogEvery follows sd_watchdog_enabled: on with WATCHDOG_USEC,
// unless WATCHDOG_PID names another process; pings at half the interval.
func TestWatchdogEvery(t *testing.T) {
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
		on        bool
	}{
		{"", "", 0, false},
		{"junk", "", 0, false},
		{"0", "", 0, false},
		{"30000000", "", 15 * time.Second, true},
		{"30000000", strconv.Itoa(os.Getpid()), 15 * time.Second, true},
		{"30000000", strconv.Itoa(os.Getpid() + 1), 0, false}, // meant for another process
	} {
		t.Setenv("WATCHDOG_USEC", c.usec)
		t.Setenv("WATCHDOG_PID", c.pid)
		got, on := watchdogEvery()
		if got != c.want || on != c.on {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v %v, want %v %v", c.usec, c.pid, got, on, c.want, c.on)
		}
	}
}
