package control

import (
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/edged/edged/pipeline/pid"
)

// The integral is runtime state, not set by a command, but a restart
// that forgets it costs the plant a dip of about a degree (issue 9). It
// is written with the state file when it moved by integralSaveStep and
// the last write of it is integralSaveEvery old, and on a clean stop: a
// few writes an hour while it settles, none while it holds.
const (
	integralSaveEvery = 10 * time.Minute
	integralSaveStep  = 0.01 // output units: 1% of a heater
)

// tuning is what the loop keeps about its PID beyond Opts.
type tuning struct {
	gainsSet      bool      // gains set by command (or restored): persisted
	savedIntegral float64   // the integral the state file holds
	savedAt       time.Time // when it was written

	at      *autotune      // the relay test running; nil when none
	atState *AutotuneState // the latest test's progress or result; nil before the first
}

// ctl returns the loop's PID controller, nil for hysteresis.
func (l *Loop) ctl() *pid.Controller {
	c, _ := l.pid.(*pid.Controller)
	return c
}

// gainsLocked returns the gains in use.
func (l *Loop) gainsLocked() Gains {
	if c := l.ctl(); c != nil {
		return Gains(c.Gains)
	}
	return l.opts.PID
}

// integralDueLocked marks the state dirty when the integral should be
// written: it moved by integralSaveStep and its last write is
// integralSaveEvery old, or, with always (a clean stop), it moved at all.
func (l *Loop) integralDueLocked(now time.Time, always bool) {
	c := l.ctl()
	if c == nil || l.statePath == "" {
		return
	}
	moved := math.Abs(c.Integral() - l.tune.savedIntegral)
	if always && moved > 0 || moved >= integralSaveStep && (l.tune.savedAt.IsZero() || now.Sub(l.tune.savedAt) >= integralSaveEvery) {
		l.dirty = true
	}
}

// applyTuningLocked applies the gains, reset and autotune fields of a
// checked command; any other command ends a running autotune.
func (l *Loop) applyTuningLocked(c command) {
	ctl := l.ctl()
	if ctl == nil {
		return // checkStatic refused it
	}
	l.abortAutotuneByCommandLocked(c)
	if c.autotune != nil {
		o, _ := l.autotuneOpts(*c.autotune) // checkLocked checked it
		l.startAutotuneLocked(o, l.clock.Now(), c.source)
	}
	if c.gains != nil {
		old := Gains(ctl.Gains)
		ctl.Gains = pid.Gains(*c.gains)
		l.tune.gainsSet = true
		if old != *c.gains {
			l.changes.Log(l.log, slog.LevelInfo, "gains", "gains changed", "from", fmtGains(old), "to", fmtGains(*c.gains), "client", c.source)
		}
		if c.gains.Ki == 0 && ctl.Integral() != 0 {
			// Nothing would integrate it away: it would stay a fixed bias.
			l.changes.Log(l.log, slog.LevelInfo, "ki0", "integral zeroed: ki is 0", "from", ctl.Integral(), "client", c.source)
			ctl.SetIntegral(0)
		}
	}
	if c.resetIntegral {
		l.changes.Log(l.log, slog.LevelInfo, "reset", "integral reset", "from", ctl.Integral(), "client", c.source)
		ctl.SetIntegral(0)
	}
}

// integralFingerprint names what a saved integral depends on besides
// the gains it was saved with: the config's gains and output limits. An
// integral saved under another config (a loop that was a PI and is a P
// now, other limits, another controller under the same id) is the
// output another plant or tuning needed, and is not restored.
func integralFingerprint(o Opts) string {
	return fmt.Sprintf("kp=%v ki=%v kd=%v output=%v..%v", o.PID.Kp, o.PID.Ki, o.PID.Kd, o.OutputMin, o.OutputMax)
}

func fmtGains(g Gains) string { return fmt.Sprintf("kp=%v ki=%v kd=%v", g.Kp, g.Ki, g.Kd) }

// restoreTuning takes the gains and integral of the state file. A
// value the current config does not allow is logged and ignored.
func (l *Loop) restoreTuning(p persisted) {
	ctl := l.ctl()
	if ctl == nil {
		if p.Gains != nil || p.Integral != nil {
			l.log.Warn("ignoring saved gains and integral: the loop has no PID now", "path", l.statePath)
		}
		return
	}
	gainsRefused := false
	if p.Gains != nil {
		g := Gains{Kp: p.Gains.Kp, Ki: p.Gains.Ki, Kd: p.Gains.Kd}
		if err := l.opts.checkGains(g); err != nil {
			l.log.Warn("ignoring saved gains: the config no longer allows them", "path", l.statePath, "error", err, "gains", fmtGains(l.opts.PID))
			gainsRefused = true
		} else {
			ctl.Gains, l.tune.gainsSet = pid.Gains(g), true
			l.log.Info("gains restored from state file", "gains", fmtGains(g))
		}
	}
	if p.Integral != nil {
		v := *p.Integral
		why := ""
		switch {
		case !(v >= l.opts.OutputMin && v <= l.opts.OutputMax):
			why = "outside the output limits"
		case gainsRefused:
			why = "the gains it was saved with are refused"
		case ctl.Gains.Ki == 0:
			why = "ki is 0, so nothing would integrate it away: it would be a fixed bias"
		case p.IntegralFor != integralFingerprint(l.opts):
			why = "saved under another config (gains or output limits)"
		}
		if why != "" {
			l.log.Warn("ignoring saved integral: "+why, "path", l.statePath, "integral", v, "saved_for", p.IntegralFor, "config", integralFingerprint(l.opts))
			return
		}
		ctl.SetIntegral(v)
		l.tune.savedIntegral = v
		l.log.Info("integral restored from state file", "integral", v)
	}
}
