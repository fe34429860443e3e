package drivers_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/sensors/sensorstest"
)

// playbackEnv returns an Env whose I2C bus "1" is pb (as if opened from
// the host), on a clock whose waits end at once, with a temp-dir sysfs
// root. With pb nil, bus "1" is opened from the host like any other.
func playbackEnv(t *testing.T, pb *i2ctest.Playback) *drivers.Env {
	t.Helper()
	env := drivers.NewEnv(nil)
	env.Clock = sensorstest.NewInstantClock()
	env.SysfsRoot = t.TempDir()
	if pb != nil {
		if _, err := env.Shared("i2c/1", func() (any, error) { return i2cbus.NewBus("1", pb), nil }); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// configError is a config snippet that must fail to load with a problem
// at line (of the whole file) whose text contains msg.
type configError struct {
	name, yaml string
	line       int
	msg        string
}

// checkConfigErrors loads each case's YAML as the list under section
// ("sensors" or "actuators") of a minimal config through the real loader
// and driver registry, and requires the positioned problem.
func checkConfigErrors(t *testing.T, section string, cases []configError) {
	t.Helper()
	for _, tc := range cases {
		_, err := configs.Parse("bad.yaml", []byte("device: {id: x}\n"+section+":\n"+tc.yaml), drivers.Default, nil)
		var errs *configs.Errors
		if !errors.As(err, &errs) {
			t.Errorf("%s: %v, want *configs.Errors", tc.name, err)
			continue
		}
		if !strings.Contains(err.Error(), "bad.yaml:"+strconv.Itoa(tc.line)+":") || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want an error at line %d mentioning %q", tc.name, err, tc.line, tc.msg)
		}
	}
}
