//go:build !cpuprofile

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The default build refuses --cpuprofile before starting anything, and
// says how to get a binary that has it.
func TestRunCPUProfileNeedsTag(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "edged.yaml")
	if err := os.WriteFile(cfg, []byte("device: {id: prof-test}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "cpu.prof")
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"run", "-c", cfg, "--cpuprofile", out}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit code %d, want 1; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "-tags cpuprofile") {
		t.Errorf("stderr does not say how to build with profiling:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), "READY") || strings.Contains(stderr.String(), "listening") {
		t.Errorf("edged started before refusing the flag:\n%s", stderr.String())
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("profile file exists (err %v): nothing should be written", err)
	}
}
