package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// piConfig writes the Pi example with free loopback ports and a temp
// state dir; if sensorsOnly, without its actuators and controllers.
func piConfig(t *testing.T, sensorsOnly bool) (path string, addrs []string) {
	t.Helper()
	data, err := os.ReadFile("../../configs/examples/pi-greenhouse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	dir := t.TempDir()
	repl := map[string]string{"state_dir: /var/lib/edged": "state_dir: " + filepath.Join(dir, "state")}
	for _, old := range []string{"0.0.0.0:1883", "0.0.0.0:8083", "0.0.0.0:8080"} {
		a := freePort(t)
		repl[old] = a
		addrs = append(addrs, a)
	}
	for old, new := range repl {
		if !strings.Contains(s, old) {
			t.Fatalf("pi-greenhouse.yaml no longer contains %q; update the test", old)
		}
		s = strings.ReplaceAll(s, old, new)
	}
	if sensorsOnly {
		i, j := strings.Index(s, "\nactuators:"), strings.Index(s, "\nbroker:")
		if i < 0 || j < i {
			t.Fatal("pi-greenhouse.yaml: no actuators section before broker; update the test")
		}
		s = s[:i] + s[j:]
	}
	path = filepath.Join(dir, "pi.yaml")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, addrs
}

// runQemu runs the ARMv7 binary under qemu-arm-static and returns its
// combined output and exit code; a hang past a minute is a failure.
func runQemu(t *testing.T, qemu string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(qemu, args...)
	cmd.Env = append(os.Environ(), "EDGED_CLOUD_PASSWORD=test-secret")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill() // by PID: the process we started
		<-done
		t.Fatalf("%v did not exit within a minute:\n%s", args, out)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("%v: %v", args, err)
	return "", 0
}

// TestPiExampleUnderQemuIntegration runs the Pi 2 build of the Pi example
// under qemu-arm-static, where there is no GPIO and no I2C: edged must
// refuse to start with an error that names the missing device and how to
// enable it, exit 1, never panic, and leave nothing listening.
func TestPiExampleUnderQemuIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped under -short")
	}
	qemu := requireTool(t, "qemu-arm-static", "EDGED_REQUIRE_QEMU")
	bin := armv7Binary(t)

	checkFailedStart := func(t *testing.T, cfg string, addrs []string, want ...string) {
		t.Helper()
		out, code := runQemu(t, qemu, bin, "run", "-c", cfg)
		out = strings.ReplaceAll(out, `\"`, `"`) // slog's text handler quotes the error
		if code != 1 {
			t.Errorf("exit %d, want 1:\n%s", code, out)
		}
		for _, w := range append([]string{"not started"}, want...) {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
		for _, bad := range []string{"panic", "goroutine ", "SIGSEGV"} {
			if strings.Contains(out, bad) {
				t.Errorf("output contains %q:\n%s", bad, out)
			}
		}
		for _, a := range addrs {
			if c, err := net.DialTimeout("tcp", a, 200*time.Millisecond); err == nil {
				c.Close()
				t.Errorf("%s is listening after a failed start", a)
			}
		}
	}

	t.Run("whole example: every missing device at once", func(t *testing.T) {
		// Every device is tried, so a Pi without them reports them all:
		// the relay's GPIO, both I2C sensors' bus, the 1-wire probe.
		cfg, addrs := piConfig(t, false)
		checkFailedStart(t, cfg, addrs, "4 of 4 devices did not open", `actuator "heater"`, `"GPIO17"`, "gpioinfo",
			`sensor "light"`, `sensor "air"`, `no such bus "1"`, "raspi-config nonint do_i2c 0", `sensor "soil"`, "w1-gpio")
	})
	t.Run("sensors only: the missing I2C bus", func(t *testing.T) {
		cfg, addrs := piConfig(t, true)
		checkFailedStart(t, cfg, addrs, `sensor "light"`, `no such bus "1"`, "raspi-config nonint do_i2c 0", "dtparam=i2c_arm=on")
	})
	t.Run("i2c scan", func(t *testing.T) {
		out, code := runQemu(t, qemu, bin, "i2c", "scan", "--bus", "1")
		if code != 1 {
			t.Errorf("exit %d, want 1:\n%s", code, out)
		}
		for _, w := range []string{`edged i2c scan: i2cbus: no such bus "1"`, "raspi-config nonint do_i2c 0"} {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
		if strings.Contains(out, "panic") {
			t.Errorf("edged panicked:\n%s", out)
		}
	})
}
