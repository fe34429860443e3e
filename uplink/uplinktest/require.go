package uplinktest

import (
	"os"
	"os/exec"
	"testing"
)

// RequireTool returns the path of tool, or skips the test when it is not
// installed, unless the environment variable requireVar is set: then CI
// installed it on purpose and a skip would hide a broken setup, so the
// test fails.
func RequireTool(t testing.TB, tool, requireVar string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv(requireVar) != "" {
			t.Fatalf("%s not found but %s is set: install it (apt-get install ...)", tool, requireVar)
		}
		t.Skipf("%s not installed (set %s=1 to make this a failure)", tool, requireVar)
	}
	return p
}

// MosquittoBin is RequireTool for mosquitto, for an integration test: it
// also skips under -short.
func MosquittoBin(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped under -short")
	}
	return RequireTool(t, "mosquitto", "EDGED_REQUIRE_MOSQUITTO")
}
