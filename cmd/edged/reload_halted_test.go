package main

import (
	"os"
	"strings"
	"testing"
)

// TestReloadAfterHaltOpensNothing (review): when the stop budget runs out
// while a reload applies, edged puts its outputs in their safe state
// (haltActuatorsNow) and exits, while the reload goroutine may still be
// going. An actuator it opens after that must not be left registered
// and driven, and no control loop may start: here the halt comes first,
// then a reload that adds a heater and the loop that drives it.
func TestReloadAfterHaltOpensNothing(t *testing.T) {
	path, _, _, _ := simConfig(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	d := startInProcess(t, cfg)
	more := strings.Replace(string(data), "\ncontrollers:\n",
		"\n  - {id: heater2, driver: sim_relay, plant: greenhouse}\n\ncontrollers:\n"+
			"  - {id: heat2, input: air/temperature, output: heater2, setpoint: 20, pid: {kp: 0.4}, cycle: 60s, stale_after: 30s}\n", 1)
	if more == string(data) {
		t.Fatal("sim.yaml has no controllers section")
	}
	if err := os.WriteFile(path, []byte(more), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.haltActuatorsNow(); err != nil {
		t.Fatal(err)
	}
	d.reload(path)
	d.mu.RLock()
	_, opened := d.actuators["heater2"]
	d.mu.RUnlock()
	if opened {
		t.Error("an actuator a reload opened after the halt is registered")
	}
	if d.control.loop("heat2") != nil {
		t.Error("a control loop a reload started after the halt runs")
	}
	t.Logf("reload outcome: %+v", d.reloads.lastOutcome())
}
