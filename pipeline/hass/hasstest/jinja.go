// Package hasstest renders Home Assistant templates the way Home
// Assistant does, with a real Jinja2 (Python's, sandboxed as Home
// Assistant's is), so tests can check that the discovery configs' value
// templates read edged's payloads and their command templates write
// edged's commands. It is for tests only.
package hasstest

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// RequireVar makes a missing Jinja2 a failure instead of a skip (CI
// installs Debian's python3-jinja2 and sets it).
const RequireVar = "EDGED_REQUIRE_JINJA"

// render is the Python side: each request is a template with its
// variables; "payload" sets value and, when it parses as JSON,
// value_json, as Home Assistant's MQTT value templates do.
const render = `
import json, sys
from jinja2.sandbox import ImmutableSandboxedEnvironment
env = ImmutableSandboxedEnvironment()
out = []
for r in json.load(sys.stdin):
    v = dict(r.get("vars") or {})
    if "payload" in r:
        v["value"] = r["payload"]
        try:
            v["value_json"] = json.loads(r["payload"])
        except ValueError:
            pass
    out.append(env.from_string(r["template"]).render(**v))
json.dump(out, sys.stdout)
`

// Request is one template to render. Payload, when set, is an MQTT
// payload for a value template (value and value_json); Vars are the
// variables of a command template (value: the new temperature or mode).
type Request struct {
	Template string         `json:"template"`
	Vars     map[string]any `json:"vars,omitempty"`
	Payload  *string        `json:"payload,omitempty"`
}

// Command is a command template's request with value v.
func Command(tpl string, v any) Request {
	return Request{Template: tpl, Vars: map[string]any{"value": v}}
}

// Value is a value template's request over an MQTT payload.
func Value(tpl string, payload []byte) Request {
	p := string(payload)
	return Request{Template: tpl, Payload: &p}
}

var (
	findOnce sync.Once
	python   string
	findErr  error
)

// Python returns the python3 that has jinja2, or skips the test (fails
// it when RequireVar is set).
func Python(t testing.TB) string {
	t.Helper()
	findOnce.Do(func() {
		python, findErr = exec.LookPath("python3")
		if findErr == nil {
			findErr = exec.Command(python, "-c", "import jinja2.sandbox").Run()
		}
	})
	if findErr != nil {
		if os.Getenv(RequireVar) != "" {
			t.Fatalf("python3 with jinja2 not found (%v) but %s is set: apt-get install python3-jinja2", findErr, RequireVar)
		}
		t.Skipf("python3 with jinja2 not found (%v): apt-get install python3-jinja2, or set %s=1 to make this a failure", findErr, RequireVar)
	}
	return python
}

// Render renders every request with Jinja2 and returns the outputs in
// order. A template Jinja2 cannot parse or render fails the test.
func Render(t testing.TB, reqs ...Request) []string {
	t.Helper()
	py := Python(t)
	in, err := json.Marshal(reqs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", render)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("jinja2: %v\n%s\nrequests: %s", err, stderr.String(), in)
	}
	var res []string
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(reqs) {
		t.Fatalf("jinja2 answered %q (%v)", out, err)
	}
	return res
}
