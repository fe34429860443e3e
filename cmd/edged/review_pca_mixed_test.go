package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestReloadPCA9685NewChannelOtherFrequency (review of d8cfb82): a
// reload that adds a channel asking for another frequency than the
// other channels of its (started) chip is reported as "restart needed"
// (actuators[servo].frequency) and the channel is opened and driven at
// the chip's rate. But the file it reports that about cannot start:
// different frequencies on one chip are refused when edged starts
// (README "pca9685"). A reload must not tell the operator a restart
// applies a file that a restart refuses. Fails on main: the restart the
// reload asks for does not start.
func TestReloadPCA9685NewChannelOtherFrequency(t *testing.T) {
	registerPCABus(t)
	path, _, _, _ := simConfig(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pca := "actuators:\n" +
		"  - {id: fan, driver: pca9685, bus: " + pcaBusName + ", channel: 0, frequency: 200}\n"
	base := strings.Replace(string(data), "actuators:\n", pca, 1)
	if base == string(data) {
		t.Fatal("sim.yaml has no actuators section")
	}
	if err := os.WriteFile(path, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := start(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	stop := func(d *daemon) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), stopBudget)
		defer cancel()
		if err := d.stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	}
	// A servo added on channel 1 at 50 Hz; the fan stays at 200 Hz.
	mixed := strings.Replace(base, pca, pca+"  - {id: servo, driver: pca9685, bus: "+pcaBusName+", channel: 1, frequency: 50}\n", 1)
	if err := os.WriteFile(path, []byte(mixed), 0o644); err != nil {
		t.Fatal(err)
	}
	d.reload(path)
	o := d.reloads.lastOutcome()
	stop(d)
	t.Logf("reload: result %s, changes %q, restart needed %q, errors %q", o.Result, o.Changes, o.RestartNeeded, o.Errors)
	// The file is refused as a whole, naming the other channel, as edged's start
	// and `edged validate` refuse it.
	if fmt.Sprint(o.Result) != "refused" || len(o.Errors) != 1 || !strings.Contains(o.Errors[0], `actuator "fan"`) || !strings.Contains(o.Errors[0], "set one frequency") {
		t.Errorf("reload of a file with two frequencies on one chip: %s, %q; want refused, naming the fan it conflicts with", o.Result, o.Errors)
	}
	if !slices.Contains(o.RestartNeeded, "actuators[servo].frequency") {
		return // the reload did not promise that a restart applies it
	}
	cfg2, err := loadConfig(path)
	if err != nil {
		t.Fatalf("the reload said restart needed, but the file does not load: %v", err)
	}
	d2, err := start(cfg2, log)
	if err != nil {
		t.Fatalf("the reload said %q needs a restart, but a restart refuses the file: %v", o.RestartNeeded, err)
	}
	stop(d2)
}
