package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/edged/edged/configs"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/i2c/i2ctest"
)

// pcaBusName is a fake I2C bus in periph's registry, so `edged run`'s
// own bus opening (i2cbus.Open) finds it in a test: every write is
// recorded, nothing is read (a PCA9685 is only written).
const pcaBusName = "edgedtest_pca"

var (
	pcaBusOnce sync.Once
	pcaBusRec  = &i2ctest.Record{}
)

type recordCloser struct{ *i2ctest.Record }

func (recordCloser) Close() error { return nil }

func registerPCABus(t *testing.T) *i2ctest.Record {
	t.Helper()
	var err error
	pcaBusOnce.Do(func() {
		err = i2creg.Register(pcaBusName, nil, -1, func() (i2c.BusCloser, error) { return recordCloser{pcaBusRec}, nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return pcaBusRec
}

// prescaleWrites counts the writes of PRE_SCALE (register 0xFE): one
// per chip start.
func prescaleWrites(rec *i2ctest.Record) int {
	rec.Lock()
	defer rec.Unlock()
	n := 0
	for _, op := range rec.Ops {
		if len(op.W) == 2 && op.W[0] == 0xFE {
			n++
		}
	}
	return n
}

// TestReloadPCA9685Frequency pins the bug where a reload that changed a
// PCA9685's chip-wide frequency failed (the chip, started once and
// shared, refused a channel at another frequency) and every later reload
// failed the same way until a restart. The change is now reported as
// restart needed, the channels keep the running frequency, and the rest
// of the same reload and of later ones is applied.
func TestReloadPCA9685Frequency(t *testing.T) {
	rec := registerPCABus(t)
	path, _, _, _ := simConfig(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pca := "actuators:\n" +
		"  - {id: fan, driver: pca9685, bus: " + pcaBusName + ", channel: 0, frequency: 200}\n" +
		"  - {id: lamp, driver: pca9685, bus: " + pcaBusName + ", channel: 1, frequency: 200}\n"
	base := strings.Replace(string(data), "actuators:\n", pca, 1)
	if base == string(data) {
		t.Fatal("sim.yaml has no actuators section")
	}
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit := func(s string, pairs ...string) string {
		t.Helper()
		for i := 0; i < len(pairs); i += 2 {
			if !strings.Contains(s, pairs[i]) {
				t.Fatalf("no %q", pairs[i])
			}
			s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
		}
		return s
	}
	write(base)
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	before := prescaleWrites(rec)
	d := startInProcess(t, cfg)
	if n := prescaleWrites(rec) - before; n != 1 {
		t.Fatalf("%d chip starts, want 1", n)
	}
	wantRestart := []string{"actuators[fan].frequency", "actuators[lamp].frequency"}
	reload := func(step, file string, wantChanges []string) {
		t.Helper()
		write(file)
		d.reload(path)
		o := d.reloads.lastOutcome()
		if o.Result != reloadApplied || !slices.Equal(o.RestartNeeded, wantRestart) || !slices.Equal(o.Changes, wantChanges) {
			t.Fatalf("%s: %+v, want applied, changes %q, restart needed %q", step, o, wantChanges, wantRestart)
		}
		for _, id := range []string{"fan", "lamp"} {
			a := d.actuators[id]
			if a == nil {
				t.Fatalf("%s: actuator %s is not running", step, id)
			}
			if err := a.Set(0.5); err != nil {
				t.Fatalf("%s: actuator %s: %v", step, id, err)
			}
		}
	}
	// Both channels to 1000 Hz, with a sensor added in the same file.
	fast := edit(base, "frequency: 200}", "frequency: 1000}")
	fastPlus := edit(fast, "sensors:\n", "sensors:\n  - {id: dark, driver: sim_light, interval: 1s}\n")
	reload("frequency and a sensor", fastPlus, []string{"sensor dark added", "homeassistant"})
	// A later reload still applies: the sensor goes, and the lamp's
	// safe state (a live change of its entry) reopens it at the running
	// frequency.
	reload("a later reload", edit(fast, "channel: 1, frequency: 1000}", `channel: 1, frequency: 1000, safe_state: "on"}`),
		[]string{"sensor dark removed", "actuator lamp changed (reopened)", "homeassistant"})
	if n := prescaleWrites(rec) - before; n != 1 {
		t.Errorf("%d chip starts, want 1: the chip is started once", n)
	}
}

// startInProcess starts the daemon of cfg in this process; the test's
// cleanup stops it, and a failed stop fails the test.
func startInProcess(t *testing.T, cfg *configs.Config) *daemon {
	t.Helper()
	d, err := start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopBudget)
		defer cancel()
		if err := d.stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return d
}
