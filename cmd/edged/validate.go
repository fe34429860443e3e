package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
)

// loadConfig loads path with the real driver registry and environment.
func loadConfig(path string) (*configs.Config, error) {
	return configs.Load(path, drivers.Default, os.LookupEnv)
}

// cmdValidate checks a config. An unset ${NAME} is a warning (the laptop
// before a deploy has no secrets; `edged run` still refuses to start
// without them) unless --strict makes it an error.
func cmdValidate(args []string, stdout, stderr io.Writer) error {
	var strict bool
	path, rest, err := configFlag("validate", args, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&strict, "strict", false, "an unset ${ENV} reference is an error, as it is for edged run")
	})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return &exitError{code: 2, err: fmt.Errorf("edged validate: unexpected arguments %q", rest)}
	}
	if strict {
		return validateStrict(path, stdout, stderr)
	}
	cfg, unset, err := configs.LoadForCheck(path, drivers.Default, os.LookupEnv)
	var list *configs.Errors
	if err != nil && !errors.As(err, &list) {
		return &exitError{code: 1, err: err}
	}
	problems := append([]configs.Error(nil), unset...)
	if list != nil {
		problems = append(problems, list.List...)
	}
	sort.SliceStable(problems, func(i, j int) bool {
		a, b := problems[i], problems[j]
		return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
	})
	for _, p := range problems {
		if p.Unset != "" {
			fmt.Fprintf(stdout, "%s:%d:%d: warning: %s (edged run needs it; --strict makes this an error)\n", p.File, p.Line, p.Col, p.Msg)
		} else {
			fmt.Fprintln(stdout, p.Error())
		}
	}
	if err != nil {
		return &exitError{code: 1}
	}
	printOK(path, cfg, len(unset), stderr)
	return nil
}

// validateStrict checks path as `edged run` loads it.
func validateStrict(path string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(path)
	if err != nil {
		var list *configs.Errors
		if errors.As(err, &list) {
			fmt.Fprintln(stdout, list.Error())
			return &exitError{code: 1}
		}
		return &exitError{code: 1, err: err}
	}
	printOK(path, cfg, 0, stderr)
	return nil
}

func printOK(path string, cfg *configs.Config, warnings int, stderr io.Writer) {
	w := ""
	if warnings > 0 {
		w = fmt.Sprintf(", %d warning(s)", warnings)
	}
	fmt.Fprintf(stderr, "%s: ok (%d sensors, %d actuators, %d controllers, uplink %s%s)\n",
		path, len(cfg.Sensors), len(cfg.Actuators), len(cfg.Controllers), onOff(cfg.Uplink != nil), w)
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
