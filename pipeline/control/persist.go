package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"time"
)

// persisted is what a loop keeps in <state dir>/control/<id>.json: what
// commands set, so a setpoint never commanded follows the config, and
// the PID's integral, so a restart does not start it from zero.
type persisted struct {
	Setpoint *float64 `json:"setpoint,omitempty"`
	Mode     Mode     `json:"mode,omitempty"`
	// Output is the manual output, kept with mode manual.
	Output *float64 `json:"output,omitempty"`
	// Gains are the PID gains set by a gains command.
	Gains *StateGains `json:"gains,omitempty"`
	// Integral is the PID's integral term (output units) for a warm
	// start; absent when it is 0.
	Integral *float64 `json:"integral,omitempty"`
	// IntegralFor is the config the integral was saved under
	// (integralFingerprint): it is restored into that config only.
	IntegralFor string `json:"integral_for,omitempty"`
}

func (l *Loop) persistedLocked() persisted {
	var p persisted
	if l.spSet {
		v := l.setpoint
		p.Setpoint = &v
	}
	if l.modeSet {
		p.Mode = l.mode
		if l.mode == ModeManual {
			v := l.manual
			p.Output = &v
		}
	}
	if l.tune.gainsSet {
		g := l.gainsLocked()
		p.Gains = &StateGains{Kp: g.Kp, Ki: g.Ki, Kd: g.Kd}
	}
	if c := l.ctl(); c != nil {
		v := c.Integral()
		if v != 0 {
			p.Integral, p.IntegralFor = &v, integralFingerprint(l.opts)
		}
		l.tune.savedIntegral, l.tune.savedAt = v, l.clock.Now()
	}
	return p
}

// minSaveInterval bounds how often a running loop writes its state file:
// each write is a write, an fsync, a rename and a directory fsync, and a
// burst of commands (a slider dragged on a dashboard) must not turn into
// as many SD card writes.
const minSaveInterval = time.Second

// Saves returns how many times the loop has written its state file.
func (l *Loop) Saves() uint64 { return l.saves.Load() }

// persist wakes saveLoop when commands changed what the state file
// keeps, or the integral is due. It runs on the Run goroutine only and
// never waits: a write in progress on a stalled SD card must not hold a
// pulse's end, a cutoff or a stale timeout.
func (l *Loop) persist() {
	l.mu.Lock()
	l.integralDueLocked(l.clock.Now(), false)
	dirty := l.dirty
	l.mu.Unlock()
	if !dirty {
		return
	}
	select {
	case l.saveq <- struct{}{}:
	default: // a wake-up is pending; the write takes the newest state
	}
}

// saveLoop writes the state file when persist asks, until ctx is done:
// at once when the last write is minSaveInterval old, else when the
// interval ends, so a burst of commands costs one write per interval and
// the last state is always written (each write takes the newest
// snapshot). A failed write is tried again each interval.
func (l *Loop) saveLoop(ctx context.Context) {
	timer := l.clock.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var last time.Time
	armed := false
	save := func() {
		l.mu.Lock()
		dirty := l.dirty
		l.mu.Unlock()
		if !dirty || armed {
			return
		}
		now := l.clock.Now()
		if !last.IsZero() && now.Sub(last) < minSaveInterval {
			timer.Reset(last.Add(minSaveInterval).Sub(now))
			armed = true
			return
		}
		last = now
		if !l.flush() {
			timer.Reset(minSaveInterval)
			armed = true
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.saveq:
			save()
		case <-timer.C():
			armed = false
			save()
		}
	}
}

// flush writes the state file if commands changed what it keeps since the
// last write. It reports false when the write failed; the state stays
// dirty so that the next flush tries again.
func (l *Loop) flush() bool {
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	l.mu.Lock()
	if !l.dirty {
		l.mu.Unlock()
		return true
	}
	l.dirty = false
	p := l.persistedLocked()
	l.mu.Unlock()
	if l.statePath == "" {
		return true
	}
	if err := l.save(p); err != nil {
		l.mu.Lock()
		l.dirty = true
		l.mu.Unlock()
		if !l.saveFailing {
			l.log.Warn("command applied but not saved: it will not survive a restart; retrying", "path", l.statePath, "error", err)
			l.saveFailing = true
		}
		return false
	}
	l.saves.Add(1)
	if l.saveFailing {
		l.log.Info("state file written again", "path", l.statePath)
		l.saveFailing = false
	}
	return true
}

// save writes p to the state file: a temp file, fsync, rename, fsync of
// the directory, so a power cut leaves the old file or the new one.
func (l *Loop) save(p persisted) error {
	if l.statePath == "" {
		return nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	return l.writeFile(l.statePath, append(b, '\n'))
}

// restore loads what commands set before a restart. Nothing in the file
// can stop the loop from starting: an unreadable or corrupt file, or a
// value the current config does not allow, is logged and ignored.
func (l *Loop) restore() {
	b, err := os.ReadFile(l.statePath)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		l.log.Warn("ignoring unreadable state file; using the config", "path", l.statePath, "error", err)
		return
	}
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		l.log.Warn("ignoring corrupt state file; using the config", "path", l.statePath, "error", err)
		return
	}
	if p.Setpoint != nil {
		if err := l.checkSetpoint(*p.Setpoint); err != nil {
			l.log.Warn("ignoring saved setpoint: the config no longer allows it", "path", l.statePath, "error", err, "setpoint", l.setpoint)
		} else {
			l.setpoint, l.spSet = *p.Setpoint, true
			l.log.Info("setpoint restored from state file", "setpoint", l.setpoint)
		}
	}
	l.restoreTuning(p)
	switch p.Mode {
	case "":
	case ModeAuto, ModeOff:
		l.mode, l.modeSet = p.Mode, true
		l.log.Info("mode restored from state file", "mode", l.mode)
	case ModeManual:
		// A fixed output that nobody watches must not come back by itself
		// after a reboot (a heater stuck on overnight): start off, and
		// keep the saved output so the operator can see what it was.
		l.mode, l.modeSet = ModeOff, true
		if p.Output != nil && *p.Output >= 0 && *p.Output <= 1 && !math.IsNaN(*p.Output) {
			l.manual = *p.Output
		}
		l.log.Warn("the saved mode was manual; starting in mode off instead: send {\"mode\":\"manual\"} or {\"mode\":\"auto\"} to resume",
			"path", l.statePath, "saved_output", l.manual)
	default:
		l.log.Warn("ignoring saved mode", "path", l.statePath, "mode", p.Mode)
	}
}
