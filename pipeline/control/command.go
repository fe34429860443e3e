package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
)

// maxCommandSize bounds a command payload; real ones are tens of bytes.
const maxCommandSize = 1024

// ErrCommand is wrapped by every error Command returns for a bad command.
var ErrCommand = errors.New("control: bad command")

// command is one parsed command; nil fields were not given.
type command struct {
	setpoint      *float64
	mode          *Mode
	output        *float64
	gains         *Gains
	resetIntegral bool
	autotune      *autotuneReq
	source        string // who sent it (the MQTT client id), for the log
}

// commandKeys lists the keys of a command, for error messages.
const commandKeys = "setpoint, mode, output, gains, reset or autotune"

// parseCommand reads a command strictly: one JSON object with only the
// keys setpoint, mode, output, gains, reset and autotune, spelled exactly,
// with non-null values of the right type, and nothing after it. gains is
// an object with exactly kp, ki and kd; reset is "integral"; autotune is
// an object (see parseAutotune).
func parseCommand(payload []byte) (command, error) {
	var c command
	if len(payload) > maxCommandSize {
		return c, fmt.Errorf("%w: %d bytes is too long (at most %d)", ErrCommand, len(payload), maxCommandSize)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	var fields map[string]json.RawMessage
	if err := dec.Decode(&fields); err != nil {
		return c, fmt.Errorf("%w: want a JSON object such as {\"setpoint\": 21.5}: %v", ErrCommand, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return c, fmt.Errorf("%w: unexpected data after the JSON object", ErrCommand)
	}
	if fields == nil {
		return c, fmt.Errorf("%w: want a JSON object such as {\"setpoint\": 21.5}, not null", ErrCommand)
	}
	if len(fields) == 0 {
		return c, fmt.Errorf("%w: empty command (want %s)", ErrCommand, commandKeys)
	}
	number := func(key string, raw json.RawMessage) (*float64, error) {
		var v float64
		if bytes.Equal(raw, []byte("null")) || json.Unmarshal(raw, &v) != nil {
			return nil, fmt.Errorf("%w: %s: want a number, have %s", ErrCommand, key, raw)
		}
		return &v, nil
	}
	for key, raw := range fields {
		var err error
		switch key {
		case "setpoint":
			c.setpoint, err = number(key, raw)
		case "output":
			c.output, err = number(key, raw)
		case "mode":
			var s string
			if bytes.Equal(raw, []byte("null")) || json.Unmarshal(raw, &s) != nil {
				return c, fmt.Errorf("%w: mode: want \"auto\", \"manual\" or \"off\", have %s", ErrCommand, raw)
			}
			m := Mode(s)
			c.mode = &m
		case "gains":
			c.gains, err = parseGains(raw, number)
		case "reset":
			var s string
			if bytes.Equal(raw, []byte("null")) || json.Unmarshal(raw, &s) != nil || s != "integral" {
				return c, fmt.Errorf("%w: reset: want \"integral\", have %s", ErrCommand, raw)
			}
			c.resetIntegral = true
		case "autotune":
			c.autotune, err = parseAutotune(raw, number)
		default:
			err = fmt.Errorf("%w: unknown field %s (want %s)", ErrCommand, strconv.Quote(key), commandKeys)
		}
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

// parseGains reads {"kp": .., "ki": .., "kd": ..}: all three, numbers,
// nothing else.
func parseGains(raw json.RawMessage, number func(string, json.RawMessage) (*float64, error)) (*Gains, error) {
	const example = `{"gains": {"kp": 0.4, "ki": 0.002, "kd": 0}}`
	var fields map[string]json.RawMessage
	if bytes.Equal(raw, []byte("null")) || json.Unmarshal(raw, &fields) != nil {
		return nil, fmt.Errorf("%w: gains: want an object such as %s, have %s", ErrCommand, example, raw)
	}
	var g Gains
	dst := map[string]*float64{"kp": &g.Kp, "ki": &g.Ki, "kd": &g.Kd}
	for key, v := range fields {
		p, ok := dst[key]
		if !ok {
			return nil, fmt.Errorf("%w: gains: unknown field %s (want kp, ki and kd)", ErrCommand, strconv.Quote(key))
		}
		n, err := number("gains: "+key, v)
		if err != nil {
			return nil, err
		}
		*p = *n
	}
	for _, k := range []string{"kp", "ki", "kd"} {
		if _, ok := fields[k]; !ok {
			return nil, fmt.Errorf("%w: gains: %s missing: give kp, ki and kd, e.g. %s", ErrCommand, k, example)
		}
	}
	return &g, nil
}

// Command applies a JSON command from PREFIX/control/<id>/set:
//
//	{"setpoint": 21.0}
//	{"mode": "auto"} | {"mode": "manual"} | {"mode": "off"}
//	{"mode": "manual", "output": 0.3}
//	{"gains": {"kp": 0.4, "ki": 0.002, "kd": 0}}
//	{"reset": "integral"}
//	{"autotune": {"output_high": 1, "output_low": 0, "rule": "tl_pi"}}
//
// Keys may be combined, except autotune, which goes alone (see
// autotune.go). A command is checked whole before anything
// changes: a bad one changes nothing and returns an error (wrapping
// ErrCommand) that says why, with the reply {"error": "..."}. A good one
// returns the state after it as the reply. The setpoint and mode it sets
// are kept in the state dir across restarts: while Run runs, the loop
// writes them at most once per second (see persist); before Run starts
// and after it returns, Command writes them itself. If writing fails the
// command still applies and the failure is logged.
func (l *Loop) Command(payload []byte) (reply []byte, err error) {
	c, err := parseCommand(payload)
	if err == nil {
		err = l.checkStatic(c)
	}
	if err != nil {
		return errorReply(err), err
	}
	return l.apply(c)
}

// errorReply is the reply to a command that was not applied.
func errorReply(err error) []byte {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{err.Error()})
	return b
}

// apply applies a parsed command that passed checkStatic.
func (l *Loop) apply(c command) (reply []byte, err error) {
	l.mu.Lock()
	if err := l.checkLocked(c); err != nil {
		l.mu.Unlock()
		return errorReply(err), err
	}
	l.applyLocked(c)
	if c.autotune == nil {
		// Starting a relay test changes nothing the state file keeps;
		// only its result does.
		l.dirty = true
	}
	running := l.running
	s := l.stateLocked()
	s.TS = l.clock.Now().UTC().Format(tsLayout)
	l.mu.Unlock()

	if running {
		// The Run goroutine publishes the state and saves it (see persist).
		select {
		case l.kick <- struct{}{}:
		default:
		}
	} else {
		// Nobody else will save it; a stopped loop takes few commands.
		l.flush()
	}
	return json.Marshal(s)
}

// checkStatic checks what does not depend on the loop's state: the
// setpoint bounds, the mode's name, the output's range, an output given
// with a mode other than manual, and gains against the config's limits. What passes may still be refused
// by checkLocked (an output without a mode while the mode is not manual).
func (l *Loop) checkStatic(c command) error {
	if c.setpoint != nil {
		if err := l.checkSetpoint(*c.setpoint); err != nil {
			return fmt.Errorf("%w: %w", ErrCommand, err)
		}
	}
	if c.mode != nil {
		switch *c.mode {
		case ModeAuto, ModeManual, ModeOff:
		default:
			return fmt.Errorf("%w: mode %q: want \"auto\", \"manual\" or \"off\"", ErrCommand, string(*c.mode))
		}
	}
	if (c.gains != nil || c.resetIntegral) && l.ctl() == nil {
		return fmt.Errorf("%w: gains and reset apply to a PID loop; this one has hysteresis", ErrCommand)
	}
	if c.gains != nil {
		if err := l.opts.checkGains(*c.gains); err != nil {
			return fmt.Errorf("%w: %w", ErrCommand, err)
		}
	}
	if c.autotune != nil {
		if c.fields() != fieldAutotune {
			return fmt.Errorf("%w: autotune goes alone in a command, e.g. %s", ErrCommand, autotuneExample)
		}
		if l.ctl() == nil {
			return fmt.Errorf("%w: autotune tunes a PID loop; this one has hysteresis (on/off control has no gains to tune)", ErrCommand)
		}
		if _, err := l.autotuneOpts(*c.autotune); err != nil {
			return fmt.Errorf("%w: %w", ErrCommand, err)
		}
	}
	if c.output != nil {
		if c.mode != nil && *c.mode != ModeManual {
			return errOutputMode
		}
		if v := *c.output; !(v >= 0 && v <= 1) {
			return fmt.Errorf("%w: output %v is out of range (0..1)", ErrCommand, v)
		}
	}
	return nil
}

var errOutputMode = fmt.Errorf("%w: output is set in manual mode only, e.g. {\"mode\": \"manual\", \"output\": 0.3}", ErrCommand)

// checkLocked checks what checkStatic cannot: an output without a mode
// needs the loop to be in manual mode, and autotune a running loop in
// auto with a fresh input (checkAutotuneLocked).
func (l *Loop) checkLocked(c command) error {
	if c.output != nil && c.mode == nil && l.mode != ModeManual {
		return errOutputMode
	}
	if c.autotune != nil {
		o, err := l.autotuneOpts(*c.autotune)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCommand, err)
		}
		return l.checkAutotuneLocked(o)
	}
	return nil
}

// checkSetpoint checks a setpoint against setpoint_min and setpoint_max.
func (l *Loop) checkSetpoint(v float64) error {
	lo, hi := l.opts.SetpointMin, l.opts.SetpointMax
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return fmt.Errorf("setpoint must be a finite number")
	case lo != nil && hi != nil && (v < *lo || v > *hi):
		return fmt.Errorf("setpoint %v is out of range (%v..%v)", v, *lo, *hi)
	case lo != nil && v < *lo:
		return fmt.Errorf("setpoint %v is below setpoint_min %v", v, *lo)
	case hi != nil && v > *hi:
		return fmt.Errorf("setpoint %v is above setpoint_max %v", v, *hi)
	}
	return nil
}

// applyLocked applies a checked command and drives the actuator at once.
func (l *Loop) applyLocked(c command) {
	now := l.clock.Now()
	fresh := l.hasInput && l.inputFault == ""
	if c.setpoint != nil {
		if *c.setpoint != l.setpoint {
			l.changes.Log(l.log, slog.LevelInfo, "setpoint", "setpoint changed", "from", l.setpoint, "to", *c.setpoint)
		}
		l.setpoint, l.spSet = *c.setpoint, true
	}
	if c.mode != nil {
		m := *c.mode
		if m != l.mode {
			l.changes.Log(l.log, slog.LevelInfo, "mode", "mode changed", "from", l.mode, "to", m)
			switch {
			case m == ModeAuto && l.mode == ModeOff && l.ctl() != nil:
				// Warm start: the integral the PID had (or restored) is
				// the output the plant needed; from zero the air would
				// dip by about a degree (issue 9).
				l.ctl().Restart()
			case m == ModeAuto:
				// Bumpless transfer: take over from the output applied now.
				l.pid.Reset(l.output)
			case m == ModeManual:
				l.manual = l.output
			}
			l.mode = m
		}
		l.modeSet = true
	}
	if c.output != nil {
		if *c.output != l.manual {
			l.changes.Log(l.log, slog.LevelInfo, "output", "manual output changed", "from", l.manual, "to", *c.output)
		}
		l.manual = *c.output
	}
	l.applyTuningLocked(c)
	if l.mode == ModeAuto && fresh && (c.setpoint != nil || c.mode != nil || c.gains != nil || c.resetIntegral) {
		// Act on the new setpoint now rather than at the next reading. A
		// dt of 0 integrates nothing; the next reading integrates the
		// whole interval since the last one.
		l.pid.Update(l.setpoint, l.input, 0)
	}
	l.stepLocked(now)
}
