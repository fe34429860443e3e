package control

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// writeStateFile writes the state file of controller heat under dir.
func writeStateFile(t *testing.T, dir, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "control"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "control", "heat.json"), []byte(body+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Regression for a restored integral that became a permanent bias
// (issue 9 review): a saved integral of 0.8 restored into a loop with ki
// 0 kept the heater at 0.8 less P for good, 5 °C above the setpoint,
// since nothing integrates it away. It is no longer restored when the
// effective ki is 0, nor when the config it was saved under (gains,
// output limits) changed or the saved gains are refused.
func TestIntegralRestoredOnlyForItsConfig(t *testing.T) {
	pi := testOpts()
	pi.PID = Gains{Kp: 0.1, Ki: 0.001}
	fp := integralFingerprint(pi) // what pi saves its integral under
	wider := pi
	wider.OutputMax = 0.9
	for _, tc := range []struct {
		name string
		o    Opts
		file string
		want float64 // the integral after New
		log  string
	}{
		{"same config", pi, `{"integral":0.5,"integral_for":"` + fp + `"}`, 0.5, "integral restored"},
		{"ki 0 now", testOpts(), `{"integral":0.8,"integral_for":"` + integralFingerprint(testOpts()) + `"}`, 0, "ignoring saved integral"},
		{"saved gains with ki 0", pi, `{"gains":{"kp":0.1,"ki":0,"kd":0},"integral":0.8,"integral_for":"` + fp + `"}`, 0, "ignoring saved integral"},
		{"saved gains refused", pi, `{"gains":{"kp":5,"ki":0.001,"kd":0},"integral":0.8,"integral_for":"` + fp + `"}`, 0, "ignoring saved integral"},
		{"config changed", wider, `{"integral":0.5,"integral_for":"` + fp + `"}`, 0, "ignoring saved integral"},
		{"no fingerprint", pi, `{"integral":0.5}`, 0, "ignoring saved integral"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dir := t.TempDir()
				writeStateFile(t, dir, tc.file)
				h := newHarness(t, tc.o, dir)
				if got := h.l.ctl().Integral(); !near(got, tc.want) {
					t.Errorf("integral %v after New, want %v", got, tc.want)
				}
				if h.logs.count(tc.log) != 1 {
					t.Errorf("log does not say %q once:\n%s", tc.log, h.logs)
				}
			})
		})
	}
}

// TestIntegralNoBiasInPLoop is the reviewer's case end to end: 2 h at
// 25 °C (setpoint 20) after restoring an integral of 0.8 into a P loop.
func TestIntegralNoBiasInPLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		o := testOpts() // kp 0.1, ki 0
		writeStateFile(t, dir, `{"integral":0.8,"integral_for":"`+integralFingerprint(o)+`"}`)
		h := startHarness(t, o, dir)
		for at := time.Duration(0); at <= 2*time.Hour; at += 5 * time.Second {
			h.advanceTo(h.at(at))
			h.read(25)
		}
		if h.act.Level() > 0 {
			t.Errorf("heater at %v, 5 °C above the setpoint", h.act.Level())
		}
	})
}

// TestGainsKiZeroZeroesIntegral: a gains command that sets ki to 0
// zeroes the integral, which would otherwise stay as a fixed bias.
func TestGainsKiZeroZeroesIntegral(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := testOpts()
		o.PID = Gains{Kp: 0.1, Ki: 0.001}
		h := startHarness(t, o, "")
		for i := range 60 {
			h.advanceTo(h.at(time.Duration(i) * 5 * time.Second))
			h.read(19)
		}
		if h.l.ctl().Integral() == 0 {
			t.Fatal("no integral to zero")
		}
		s := h.command(`{"gains":{"kp":0.1,"ki":0,"kd":0}}`)
		if got := h.l.ctl().Integral(); got != 0 || !near(s.Output, 0.1) {
			t.Errorf("after ki 0: integral %v, output %v; want 0 and P alone 0.1", got, s.Output)
		}
		if !strings.Contains(h.logs.String(), "integral zeroed") {
			t.Errorf("not logged:\n%s", h.logs)
		}
	})
}
