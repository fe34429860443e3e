package configs_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
)

var update = flag.Bool("update", false, "rewrite testdata/broken/*.golden from the current output")

// testEnv is the environment the golden files are written against.
func testEnv(name string) (string, bool) {
	v, ok := map[string]string{"EDGED_CLOUD_PASSWORD": "from-env"}[name]
	return v, ok
}

// TestExamples loads every shipped example with the real driver registry:
// an example that does not load is a broken promise to users.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := configs.Load(f, drivers.Default, testEnv)
			if err != nil {
				t.Fatalf("%s does not load:\n%v", f, err)
			}
			if c.Path != f {
				t.Errorf("Path = %q, want %q", c.Path, f)
			}
			if c.Device.TopicPrefix != "edged/"+c.Device.ID {
				t.Errorf("topic prefix %q, want the default edged/%s", c.Device.TopicPrefix, c.Device.ID)
			}
			if len(c.Sensors) == 0 || len(c.Actuators) == 0 || len(c.Controllers) == 0 {
				t.Errorf("example has %d sensors, %d actuators, %d controllers; want some of each",
					len(c.Sensors), len(c.Actuators), len(c.Controllers))
			}
			for _, s := range c.Sensors {
				if s.Opts == nil {
					t.Errorf("sensor %q has no driver options", s.ID)
				}
			}
			for _, a := range c.Actuators {
				if a.Opts == nil {
					t.Errorf("actuator %q has no driver options", a.ID)
				}
			}
		})
	}
}

// TestBrokenGolden loads every testdata/broken/NAME.yaml and compares the
// problems with NAME.golden, line for line. Run `go test ./configs -update`
// to rewrite the golden files, then review the diff.
func TestBrokenGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/broken/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden cases found: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			c, err := configs.Load(f, drivers.Default, testEnv)
			if err == nil {
				t.Fatalf("%s loaded without error; a broken config must not", f)
			}
			if c != nil {
				t.Errorf("a broken config returned a config as well as the error")
			}
			var errs *configs.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want *configs.Errors: %v", err, err)
			}
			for _, e := range errs.List {
				if e.File != f || e.Line < 1 || e.Col < 1 {
					t.Errorf("badly positioned error %+v", e)
				}
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./configs -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("problems differ from %s\ngot:\n%swant:\n%s", golden, got, want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := configs.Load(filepath.Join(t.TempDir(), "nope.yaml"), drivers.Default, testEnv)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want a wrapped os.ErrNotExist", err)
	}
	if !strings.HasPrefix(err.Error(), "configs: ") {
		t.Errorf("err = %q, want the configs: prefix", err)
	}
}
