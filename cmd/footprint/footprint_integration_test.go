package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// budgetWindow keeps the measurement short enough for `make test`;
// `make footprint` measures 60 s.
const budgetWindow = 20 * time.Second

// build builds cmd/edged into dir with env added, as `make pi` does.
func build(t *testing.T, dir, name string, env ...string) string {
	t.Helper()
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "nethttpomithttp2", "-ldflags", "-s -w -X main.version=budget", "-o", bin, "../edged") // as the Makefile's TAGS
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", env, err, out)
	}
	return bin
}

// TestFootprintBudgetIntegration keeps issue 13's budgets in CI: the
// stripped ARMv7 and ARMv6 builds at most 12 MB, and `edged run` with
// ten simulated sensors sampled at 1 Hz and a PID loop, idle on the LAN,
// at most 20 MB resident and under 0.5 % of a core over budgetWindow.
func TestFootprintBudgetIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped under -short")
	}
	dir := t.TempDir()
	for _, arm := range []string{"6", "7"} {
		bin := build(t, dir, "edged-armv"+arm, "GOOS=linux", "GOARCH=arm", "GOARM="+arm)
		size, over, err := armOverBudget(bin)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("ARMv%s binary: %d bytes (budget %d)", arm, size, maxARMBytes)
		if over != "" {
			t.Errorf("ARMv%s: %s", arm, over)
		}
	}
	bin := build(t, dir, "edged")
	yaml, err := withFreePorts(tenSensors, dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ten.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := measure(bin, cfg, budgetWindow)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("10 sensors at 1 Hz over %v: RSS %.1f MB (max %.1f), CPU %.3f %% of a core", budgetWindow, float64(m.rss)/1e6, float64(m.maxRSS)/1e6, m.cpuPct)
	for _, o := range overBudget(m) {
		t.Error(o)
	}
}
