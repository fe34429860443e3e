package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
)

// loadConfig loads path with the real driver registry and environment.
func loadConfig(path string) (*configs.Config, error) {
	return configs.Load(path, drivers.Default, os.LookupEnv)
}

func cmdValidate(args []string, stdout, stderr io.Writer) error {
	path, rest, err := configFlag("validate", args, stderr)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return &exitError{code: 2, err: fmt.Errorf("edged validate: unexpected arguments %q", rest)}
	}
	cfg, err := loadConfig(path)
	if err != nil {
		var list *configs.Errors
		if errors.As(err, &list) {
			fmt.Fprintln(stdout, list.Error())
			return &exitError{code: 1}
		}
		return &exitError{code: 1, err: err}
	}
	fmt.Fprintf(stderr, "%s: ok (%d sensors, %d actuators, %d controllers, uplink %s)\n",
		path, len(cfg.Sensors), len(cfg.Actuators), len(cfg.Controllers), onOff(cfg.Uplink != nil))
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func cmdDrivers(stdout io.Writer) {
	for _, kind := range []struct {
		name      string
		actuators bool
	}{{"sensors", false}, {"actuators", true}} {
		fmt.Fprintf(stdout, "%s:\n", kind.name)
		for _, n := range drivers.Default.Names(kind.actuators) {
			fmt.Fprintf(stdout, "  %-12s %s\n", n, drivers.Default[n].Summary())
		}
	}
}
