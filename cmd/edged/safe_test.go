package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
	"github.com/edged/edged/sensors/sensorstest"
)

// pwmChannel makes /sys/class/pwm/pwmchip0/pwmN under root as a killed
// edged left it: exported, enabled, duty = period (full on).
func pwmChannel(t *testing.T, root string, n int) string {
	t.Helper()
	chip := filepath.Join(root, "sys/class/pwm/pwmchip0")
	dir := filepath.Join(chip, "pwm"+string(rune('0'+n)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{
		chip + "/export": "", chip + "/unexport": "", chip + "/npwm": "2\n",
		dir + "/period": "1000000\n", dir + "/duty_cycle": "1000000\n", dir + "/enable": "1\n", dir + "/polarity": "normal\n",
	} {
		if err := os.WriteFile(name, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestDriveSafe is `edged safe` after a kill -9 left a fan's PWM channel
// full on: the channel goes to its safe duty 0 (still enabled, so "off" is
// driven), a sim relay goes safe, and a channel that is not there (never
// exported: the export write changes nothing in a fake tree) is reported
// by id without keeping the others from going safe.
func TestDriveSafe(t *testing.T) {
	root := t.TempDir()
	fan := pwmChannel(t, root, 0)
	cfg, err := configs.Parse("safe.yaml", []byte(`
device: {id: gh-01}
actuators:
  - {id: fan, driver: sysfspwm, channel: 0}
  - {id: lamp, driver: sysfspwm, channel: 1}
  - {id: heater, driver: sim_relay, plant: house}
`), drivers.Default, nil)
	if err != nil {
		t.Fatal(err)
	}
	env := drivers.NewEnv(nil)
	env.SysfsRoot = root
	env.Clock = sensorstest.NewInstantClock()
	var out strings.Builder
	err = driveSafe(cfg, env, &out)
	if err == nil || !strings.Contains(err.Error(), `actuator "lamp"`) {
		t.Errorf("driveSafe = %v, want an error naming actuator \"lamp\"", err)
	}
	for name, want := range map[string]string{"duty_cycle": "0", "enable": "1"} {
		b, err := os.ReadFile(filepath.Join(fan, name))
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("fan %s = %q, %v; want %q", name, b, err, want)
		}
	}
	for _, want := range []string{"fan: safe, level 0 (", "lamp: NOT SAFE: actuator \"lamp\": ", "heater: safe, level 0 ("} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestSafeCommand runs `edged safe` as systemd's ExecStopPost does: a
// config whose uplink password comes from an unset variable still makes
// its outputs safe (the secret is not needed for that), and a broken
// config exits 1 naming file, line and column.
func TestSafeCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(`device: {id: gh-01}
state_dir: `+dir+`
actuators:
  - {id: heater, driver: sim_relay, plant: house}
uplink:
  url: mqtts://cloud.example:8883
  username: gh-01
  password: ${EDGED_TEST_SAFE_UNSET_PASSWORD}
  forward:
    - {local: "edged/gh-01/sensor/#"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Unsetenv("EDGED_TEST_SAFE_UNSET_PASSWORD")
	var stdout, stderr strings.Builder
	if code := realMain([]string{"safe", "-c", good}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "heater: safe, level 0") {
		t.Errorf("edged safe on a good config: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("device: {id: gh-01}\nactuators:\n  - {id: heater, driver: no_such_driver}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	if code := realMain([]string{"safe", "-c", bad}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), bad+":3:") {
		t.Errorf("edged safe on a bad config: exit %d, stderr %q; want 1 and %s:3:COL", code, stderr.String(), bad)
	}
}
