package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/liveness"
	"github.com/edged/edged/uplink"
)

// probes are what /healthz, /readyz and the systemd watchdog check: the
// heartbeats of the main loops, and whether edged is ready.
type probes struct {
	d *daemon
	// maxOldest is uplink.max_oldest_unsent; 0: not checked.
	maxOldest time.Duration

	beats   atomic.Pointer[[]*liveness.Beat] // set once start has built every loop
	started atomic.Bool
}

// arm collects the beats of every main loop: each sensor's schedule, the
// control loops, the reading queue, the broker's fan-out and the uplink's
// forwarder. Call it once they all exist, before they are checked.
func (h *probes) arm() {
	d := h.d
	var bs []*liveness.Beat
	if d.poller != nil {
		bs = append(bs, d.poller.Heartbeats()...)
	}
	if d.control != nil {
		d.mu.RLock()
		ids := slices.Sorted(maps.Keys(d.control.loops))
		for _, id := range ids {
			bs = append(bs, d.control.loops[id].l.Heartbeat())
		}
		d.mu.RUnlock()
	}
	if d.queue != nil {
		bs = append(bs, d.queue.Heartbeat())
	}
	if d.broker != nil {
		bs = append(bs, d.broker.Heartbeat())
	}
	if d.uplink != nil {
		bs = append(bs, d.uplink.Heartbeat())
	}
	h.beats.Store(&bs)
}

// LastReload is the last config reload's outcome for /readyz; nil
// before the first.
func (h *probes) LastReload() any {
	if o := h.d.reloads.lastOutcome(); o != nil {
		return o
	}
	return nil
}

// Beats are the main loops' beats; none before arm.
func (h *probes) Beats() []*liveness.Beat {
	if p := h.beats.Load(); p != nil {
		return *p
	}
	return nil
}

// Live names every main loop that is past the time it should have come
// round.
func (h *probes) Live() []string {
	var out []string
	for _, b := range h.Beats() {
		if late := b.Overdue(); late > 0 {
			out = append(out, fmt.Sprintf("loop %s is stuck: %s past the time it should have come round", b.Name(), late.Round(time.Second)))
		}
	}
	return out
}

// Ready adds to Live what keeps edged from being of use yet: still
// starting (listeners not all up), a sensor without its first sample
// attempt, and, with uplink.max_oldest_unsent, a backlog older than that.
func (h *probes) Ready() []string {
	if !h.started.Load() {
		return []string{"starting: listeners and sensors are being opened"}
	}
	out := h.Live()
	for _, st := range h.d.poller.Stats() {
		if st.Samples+st.Failures == 0 {
			out = append(out, fmt.Sprintf("sensor %s: no sample attempted yet", st.ID))
		}
	}
	if h.maxOldest > 0 && h.d.uplink != nil {
		if st := h.d.uplink.Stats(); st.OldestUnsent > h.maxOldest {
			out = append(out, fmt.Sprintf("uplink: the oldest unsent message is %s old, over uplink.max_oldest_unsent (%s); backlog %d messages, connected: %v",
				st.OldestUnsent.Round(time.Second), h.maxOldest, st.Backlog, st.Connected))
		}
	}
	return out
}

// Notes are /readyz's lines that do not fail it: the wall clock not
// trusted yet.
func (h *probes) Notes() []string { return clockNotes(h.d.wall) }

// Status is the STATUS= line for systemd now (statusLine).
func (h *probes) Status() string {
	var up *uplink.Stats
	if h.d.uplink != nil {
		s := h.d.uplink.Stats()
		up = &s
	}
	var ss []sensors.SensorStats
	if h.d.poller != nil {
		ss = h.d.poller.Stats()
	}
	return statusLine(ss, up, h.Live())
}

// watchdogEvery returns half of systemd's watchdog interval when the
// watchdog is on for this process (WATCHDOG_USEC, and WATCHDOG_PID
// unset or ours), as sd_watchdog_enabled does.
func watchdogEvery() (time.Duration, bool) {
	usec, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 63)
	if err != nil || usec == 0 {
		return 0, false
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, false
	}
	return max(time.Duration(usec)*time.Microsecond/2, time.Millisecond), true
}

// livenessEvery is how often liveness is checked and logged without a
// systemd watchdog.
const livenessEvery = 5 * time.Second

// watch checks liveness every half watchdog interval (or livenessEvery),
// sends WATCHDOG=1 only when every main loop comes round, so systemd
// restarts an edged with a stuck loop, and logs each change once. Under
// systemd it also sends STATUS= (statusLine) when the line has changed,
// at most once per statusEvery. It returns when ctx is done.
func (h *probes) watch(ctx context.Context, log *slog.Logger) {
	every, feed := watchdogEvery()
	if !feed {
		every = livenessEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	// The status ticker runs only for systemd: without $NOTIFY_SOCKET
	// nobody reads the line.
	var statusC <-chan time.Time
	if os.Getenv("NOTIFY_SOCKET") != "" {
		st := time.NewTicker(statusEvery)
		defer st.Stop()
		statusC = st.C
	}
	stuck := false
	lastStatus := ""
	sendStatus := func() {
		if line := h.Status(); line != lastStatus {
			sdNotify("STATUS=" + line)
			lastStatus = line
		}
	}
	check := func() {
		problems := h.Live()
		switch {
		case len(problems) > 0 && !stuck:
			// The stacks say where the loop hangs: once, not per check.
			stacks := make([]byte, 1<<20)
			stacks = stacks[:runtime.Stack(stacks, true)]
			log.Error("a main loop is stuck; /healthz fails and the systemd watchdog is not fed", "problems", problems, "goroutines", string(stacks))
		case len(problems) == 0 && stuck:
			log.Info("every main loop comes round again")
		}
		stuck = len(problems) > 0
		if feed && !stuck {
			sdNotify("WATCHDOG=1")
		}
	}
	check()
	if statusC != nil {
		sendStatus() // the first line at once, then on change
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		case <-statusC:
			sendStatus()
		}
	}
}
