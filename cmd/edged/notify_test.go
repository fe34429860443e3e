package main

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/uplink"
)

func TestStatusLine(t *testing.T) {
	two := []sensors.SensorStats{{ID: "air", Status: sensors.StatusOnline}, {ID: "light", Status: sensors.StatusOffline}}
	for _, tc := range []struct {
		name  string
		ss    []sensors.SensorStats
		up    *uplink.Stats
		stuck []string
		want  string
	}{
		{"no uplink", two, nil, nil, "1/2 sensors online, no uplink"},
		{"connected", two, &uplink.Stats{Connected: true, Backlog: 3}, nil, "1/2 sensors online, uplink connected, backlog 3"},
		{"disconnected, empty", two, &uplink.Stats{}, nil, "1/2 sensors online, uplink disconnected, backlog 0"},
		{"disconnected, backlog", two, &uplink.Stats{Backlog: 40, OldestUnsent: 61500 * time.Millisecond}, nil,
			"1/2 sensors online, uplink disconnected, backlog 40 (oldest 1m2s)"},
		{"unknown is not online", []sensors.SensorStats{{ID: "air"}}, nil, nil, "0/1 sensors online, no uplink"},
		{"stuck first", two, nil, []string{"loop control/heat is stuck: 12s past", "loop sensor/air is stuck: 3s past"},
			"STUCK: loop control/heat is stuck: 12s past; loop sensor/air is stuck: 3s past; 1/2 sensors online, no uplink"},
	} {
		if got := statusLine(tc.ss, tc.up, tc.stuck); got != tc.want {
			t.Errorf("%s: statusLine = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// notifyListener binds a fake $NOTIFY_SOCKET for this test and returns a
// function that reads one datagram.
func notifyListener(t *testing.T) func() string {
	t.Helper()
	name := "@edged-unit-" + strconv.Itoa(int(time.Now().UnixNano()))
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return func() string {
		t.Helper()
		_ = sock.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		n, err := sock.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
}

// TestNotifyReload checks the two messages the reload sends: RELOADING=1
// with MONOTONIC_USEC on CLOCK_MONOTONIC (systemd >= 253 refuses a reload
// notification without it, and compares it with its own clock), then
// READY=1 with a one-line STATUS.
func TestNotifyReload(t *testing.T) {
	read := notifyListener(t)
	before := monotonicUsec()
	notifyReloading()
	after := monotonicUsec()
	msg := read()
	rest, ok := strings.CutPrefix(msg, "RELOADING=1\nMONOTONIC_USEC=")
	if !ok {
		t.Fatalf("reloading message %q", msg)
	}
	usec, err := strconv.ParseUint(rest, 10, 64)
	if err != nil {
		t.Fatalf("MONOTONIC_USEC in %q: %v", msg, err)
	}
	if usec < before || usec > after || before == 0 {
		t.Errorf("MONOTONIC_USEC=%d, not between CLOCK_MONOTONIC %d and %d", usec, before, after)
	}
	notifyReloaded("reload refused: edged.yaml:3:5: unknown key\nsecond line")
	if msg := read(); msg != "READY=1\nSTATUS=reload refused: edged.yaml:3:5: unknown key second line" {
		t.Errorf("reloaded message %q", msg)
	}
	notifyReloaded("")
	if msg := read(); msg != "READY=1" {
		t.Errorf("reloaded message without status %q", msg)
	}
}
