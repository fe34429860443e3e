package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/uplink"
)

// sdNotify sends state lines ("READY=1", "STOPPING=1", several joined by
// "\n" as one message) to systemd when it started us with Type=notify; it
// does nothing elsewhere. The protocol is one datagram on $NOTIFY_SOCKET,
// too small to be worth a dependency.
//
// What edged sends, and when (the order a fake $NOTIFY_SOCKET sees in
// TestNotifyLifecycleIntegration):
//
//   - READY=1 once start has opened every listener and device.
//   - WATCHDOG=1 every half WATCHDOG_USEC while every main loop comes
//     round (probes.watch), never while one is stuck.
//   - STATUS=<statusLine> after READY=1 and then whenever the line
//     changes, at most once per statusEvery: what `systemctl status`
//     shows under "Status:".
//   - STOPPING=1 (with a STATUS line) as soon as a stop signal arrives,
//     before the actuators are put in their safe state.
//   - On reload: notifyReloading, then notifyReloaded (below).
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' { // abstract socket
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte(state))
}

// notifyReloading tells systemd that a reload has begun: RELOADING=1 with
// MONOTONIC_USEC, the CLOCK_MONOTONIC time in microseconds, which
// Type=notify-reload (systemd >= 253) requires to match the message to
// its reload request; systemd 252 (Type=notify with ExecReload) shows the
// unit as "reloading" until READY=1.
//
// The call contract for the reload (d.reload, through d.gate, which
// drops both once STOPPING=1 is sent): call
// notifyReloading first, before the config file is read; then, whatever
// the outcome, call notifyReloaded exactly once, with the status line of
// the config that runs afterwards: d.health.Status() after a reload that
// applied, or "reload refused: <why>; " + d.health.Status() after one
// that kept the running config. A reload that never calls
// notifyReloaded leaves systemd's reload job waiting until
// TimeoutStartSec. Neither blocks, and both do nothing without
// $NOTIFY_SOCKET.
func notifyReloading() {
	sdNotify(reloadingMessage(monotonicUsec()))
}

// notifyReloaded ends a reload begun with notifyReloading: READY=1, and
// STATUS=status unless it is empty (e.g. "reload refused: edged.yaml:3:5:
// ...; running the previous config"; statusLine gives the usual one).
func notifyReloaded(status string) {
	sdNotify(readyMessage(status))
}

func reloadingMessage(usec uint64) string {
	return fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", usec)
}

func readyMessage(status string) string {
	if status == "" {
		return "READY=1"
	}
	return "READY=1\nSTATUS=" + oneLine(status)
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd
// compares MONOTONIC_USEC with (Go's monotonic clock has another epoch).
func monotonicUsec() uint64 {
	var ts syscall.Timespec
	const clockMonotonic = 1 // CLOCK_MONOTONIC in <linux/time.h>
	if _, _, errno := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
}

// statusEvery is the shortest gap between two STATUS= lines: a backlog
// that changes with every message updates `systemctl status` at most
// this often.
const statusEvery = 3 * time.Second

// statusLine is the line a person reads in `systemctl status edged`,
// e.g. "3/4 sensors online, uplink connected, backlog 0". Stuck loops
// come first: they are why the watchdog is about to restart edged.
func statusLine(sensorStats []sensors.SensorStats, up *uplink.Stats, stuck []string) string {
	var b strings.Builder
	if len(stuck) > 0 {
		b.WriteString("STUCK: ")
		b.WriteString(strings.Join(stuck, "; "))
		b.WriteString("; ")
	}
	online := 0
	for _, st := range sensorStats {
		if st.Status == sensors.StatusOnline {
			online++
		}
	}
	fmt.Fprintf(&b, "%d/%d sensors online", online, len(sensorStats))
	switch {
	case up == nil:
		b.WriteString(", no uplink")
	case up.Connected:
		fmt.Fprintf(&b, ", uplink connected, backlog %d", up.Backlog)
	default:
		fmt.Fprintf(&b, ", uplink disconnected, backlog %d", up.Backlog)
		if up.Backlog > 0 {
			fmt.Fprintf(&b, " (oldest %s)", up.OldestUnsent.Round(time.Second))
		}
	}
	return oneLine(b.String())
}

// oneLine keeps a STATUS value on one line: a newline would start another
// notify field.
func oneLine(s string) string {
	return strings.ReplaceAll(s, "\n", " ")
}
