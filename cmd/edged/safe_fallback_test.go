package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSafeWithEditedConfig: edged run is killed (OOM, watchdog
// SIGKILL) after someone saved a config with one typo that the refused
// reload never applied; ExecStopPost=edged safe reads that file and must
// still drive the heater off. It exits 1 without touching any output.
func TestSafeWithEditedConfig(t *testing.T) {
	good, err := os.ReadFile("../../configs/examples/sim.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "edged.yaml")
	if err := os.WriteFile(path, append(good, "\nsampling_intervall: 5s\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := realMain([]string{"safe", "-c", path}, &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "heater: safe") {
		t.Fatalf("edged safe with a typo elsewhere in the file: exit %d, stdout %q: the heater was not driven safe\n%s", code, out.String(), errOut.String())
	}
}
