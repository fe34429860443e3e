package main

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/edged/edged/"

// allowedImports is the dependency direction of README "How it works"
// (Arrows): for each package (by path prefix, longest match wins), the
// module packages and the third-party roots it may import directly. Everything may import
// the standard library.
var allowedImports = map[string][]string{
	"cmd/":      {"configs", "drivers", "pipeline", "localbroker", "uplink", "sensors", "golang.org/x/term", "cmd/internal/benchrig"},
	"cmd/edged": {"configs", "drivers", "pipeline", "localbroker", "uplink", "sensors", "golang.org/x/term", "cmd/edged/web", "cmd/edged/dashboard", "cmd/edged/metrics"},
	// The Prometheus exposition reads the rooms' own Stats types, so a
	// new field is one line there; nothing imports it but cmd/edged.
	"cmd/edged/metrics": {"sensors", "pipeline", "localbroker", "uplink", "github.com/prometheus/client_golang", "github.com/prometheus/common/expfmt"},
	// The HTTP surface sees the rooms it serves through its own
	// interfaces only.
	"cmd/edged/web": {},
	// The dashboard's browser harness, for tests only (the binary must
	// not link chromedp).
	"cmd/edged/dashboard/dashboardtest": {"github.com/chromedp/chromedp", "github.com/chromedp/cdproto"},
	// The dashboard is files and their handler: it knows no edged package
	// (it reads the REST API from the browser).
	"cmd/edged/dashboard": {},
	"configs":             {"sensors", "pipeline", "localbroker", "uplink", "gopkg.in/yaml.v3"},
	"drivers":             {"drivers", "sensors", "periph.io/x/conn/v3", "periph.io/x/host/v3", "periph.io/x/devices/v3"},
	"pipeline":            {"sensors", "pipeline"},
	"localbroker":         {"sensors", "github.com/mochi-mqtt/server/v2", "github.com/gorilla/websocket", "golang.org/x/crypto"},
	"uplink":              {"sensors", "uplink", "github.com/eclipse/paho.golang"},
	"sensors":             {"sensors"},
	// Clock trust asks the kernel (adjtimex, CLOCK_MONOTONIC).
	"sensors/wallclock": {"sensors", "golang.org/x/sys/unix"},

	// The measuring commands' harness speaks MQTT to both brokers as a
	// LAN client would; the daemon never imports it.
	"cmd/internal/benchrig": {"uplink", "github.com/eclipse/paho.golang"},
}

// testOnly is the package that only _test.go files may import; go list's
// Imports leaves those out, so any importer it lists is a mistake.
const testOnly = "cmd/edged/dashboard/dashboardtest"

// TestDependencyDirection keeps the layering true: only localbroker
// imports mochi, only uplink imports paho, only drivers import periph's
// host and devices, nothing imports cmd, and the arrows point down.
func TestDependencyDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		rule, ok := ruleFor(pkg)
		if !ok {
			t.Errorf("%s: no dependency rule; add one to allowedImports", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			if isStd(imp) {
				continue
			}
			if imp == module+testOnly {
				t.Errorf("%s imports %s, which only tests may import (the binary must not link chromedp)", pkg, imp)
			}
			if !allowed(rule, imp) {
				t.Errorf("%s imports %s, which README \"How it works\" (Arrows) does not allow", pkg, imp)
			}
		}
	}
}

func ruleFor(pkg string) ([]string, bool) {
	best := ""
	for prefix := range allowedImports {
		if (pkg == prefix || strings.HasPrefix(pkg, strings.TrimSuffix(prefix, "/")+"/")) && len(prefix) > len(best) {
			best = prefix
		}
	}
	r, ok := allowedImports[best]
	return r, ok
}

func allowed(rule []string, imp string) bool {
	for _, a := range rule {
		full := a
		if !strings.Contains(a, ".") {
			full = module + a
		}
		if imp == full || strings.HasPrefix(imp, full+"/") {
			return true
		}
	}
	return false
}

// isStd reports whether imp is a standard library package (no dot in its
// first element).
func isStd(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}
