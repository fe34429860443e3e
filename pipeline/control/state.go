package control

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"time"

	"github.com/edged/edged/sensors"
)

// State is a loop's state, published retained as JSON on StateTopic and
// returned as the reply to a command.
type State struct {
	Setpoint float64 `json:"setpoint"`
	// Input is the latest fresh reading, nil when there is none (no
	// reading yet, stale, sensor offline): a dashboard must not show an
	// old value as the current one. Fault says why.
	Input *float64 `json:"input"`
	// Output is the duty (0..1) the loop applies; in the safe state, the
	// level the actuator reports (1 for a relay with safe_state: on).
	Output float64 `json:"output"`
	// Applied says what drives the output: pid or hysteresis (auto),
	// manual, safe, hold or fixed (on_input_failure), cutoff. Fault says
	// why, when it is not what the mode asks for.
	Applied string `json:"applied"`
	Mode    Mode   `json:"mode"`
	// Fault says why the output is not what the mode asks for; "" when
	// all is well.
	Fault string     `json:"fault"`
	Gains StateGains `json:"gains"`
	// Autotune is the running relay test's progress, or how the latest
	// one ended; absent before the first since edged started.
	Autotune *AutotuneState `json:"autotune,omitempty"`
	// TS is the time of the state, RFC 3339 in UTC with milliseconds.
	TS string `json:"ts,omitempty"`
}

// StateGains are the PID gains in State.
type StateGains struct {
	Kp float64 `json:"kp"`
	Ki float64 `json:"ki"`
	Kd float64 `json:"kd"`
}

// tsLayout matches the sensor readings' "ts".
const tsLayout = "2006-01-02T15:04:05.000Z07:00"

// State returns the loop's current state.
func (l *Loop) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stateLocked()
	s.TS = l.clock.Now().UTC().Format(tsLayout)
	return s
}

// stateLocked returns the state without its time stamp.
func (l *Loop) stateLocked() State {
	s := State{
		Setpoint: l.setpoint,
		Output:   l.output,
		Applied:  l.appliedLocked(),
		Mode:     l.mode,
		Fault:    l.faultLocked(),
	}
	g := l.gainsLocked()
	s.Gains = StateGains(g)
	s.Autotune = l.autotuneStateLocked()
	if l.hasInput && l.inputFault == "" {
		// Rounded as the sensor topics round it (pipeline.AppendPayload),
		// so 21.37 does not travel as 21.369999999999997.
		v := math.Round(l.input*1e4) / 1e4
		s.Input = &v
	}
	return s
}

// publish hands the state to the state publisher (publishLoop) if it
// changed since the last message, at most once per minPublishInterval: a
// change inside the interval arms pubTimer to send the state as it is
// when the interval ends. It runs on the Run goroutine only, and never
// waits for the Publisher.
func (l *Loop) publish(pubTimer sensors.Timer) {
	if l.pub == nil {
		return
	}
	l.mu.Lock()
	s := l.stateLocked()
	l.mu.Unlock()
	body, err := json.Marshal(s)
	if err != nil || bytes.Equal(body, l.lastBody) {
		return // err is impossible: State holds finite numbers and strings
	}
	now := l.clock.Now()
	if !l.lastPub.IsZero() && now.Sub(l.lastPub) < minPublishInterval {
		if !l.pubArmed {
			pubTimer.Reset(l.lastPub.Add(minPublishInterval).Sub(now))
			l.pubArmed = true
		}
		return
	}
	s.TS = now.UTC().Format(tsLayout)
	payload, _ := json.Marshal(s)
	l.lastPub, l.lastBody = now, body
	// The newest state replaces one the publisher has not taken yet.
	for {
		select {
		case l.pubq <- payload:
			return
		default:
		}
		select {
		case <-l.pubq:
		default:
		}
	}
}

// publishLoop publishes the states publish hands it, until ctx is done.
// It runs apart from the Run goroutine because Publish may wait: the
// broker stores the state for the uplink on the disk before it returns,
// and a stalled SD card must not hold the actuator's next switch. Only
// the newest state waits; a failed one is tried again each
// minPublishInterval until it, or a newer state, is published.
func (l *Loop) publishLoop(ctx context.Context) {
	retry := l.clock.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var pending []byte
	fails := 0
	send := func() {
		if pending == nil {
			return
		}
		if err := l.pub.Publish(l.stateTopic, pending, true); err != nil {
			if fails == 0 {
				l.log.Warn("cannot publish state; retrying each second", "topic", l.stateTopic, "error", err)
			}
			fails++
			retry.Reset(minPublishInterval)
			return
		}
		if fails > 0 {
			l.log.Info("state published again", "topic", l.stateTopic, "failures", fails)
			fails = 0
		}
		pending = nil
		retry.Stop()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case pending = <-l.pubq:
		case <-retry.C():
		}
		send()
	}
}
