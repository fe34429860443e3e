package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
)

// cmdSafe is `edged safe -c FILE`: it opens every actuator of the config,
// which drives it to its safe state, halts it and exits. The systemd unit
// runs it as ExecStopPost, so the outputs go safe after any end of
// `edged run`, also the ones where edged cannot do it itself (kill -9,
// the watchdog's SIGKILL after TimeoutStopSec, the OOM killer, a panic):
// a released GPIO line keeps its last level on Raspberry Pi OS kernels,
// and a PWM channel (sysfs or PCA9685) keeps running (README, "Outputs
// when edged dies"). It fails while `edged run` holds the outputs.
func cmdSafe(args []string, stdout, stderr io.Writer) error {
	path, rest, err := configFlag("safe", args, stderr)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return &exitError{code: 2, err: fmt.Errorf("edged safe: unexpected arguments %q", rest)}
	}
	// The outputs must go safe on a machine that lacks a secret of the
	// config (an uplink password): only the actuators matter here.
	cfg, err := configs.Load(path, drivers.Default, lookupOrPlaceholder)
	if err != nil {
		// A file edited after edged started (a reload refused it) must
		// not keep the outputs on: its actuators section alone will do.
		fmt.Fprintf(stderr, "edged safe: %s has problems; using its actuators section only:\n%v\n", path, err)
		if cfg, err = configs.LoadActuators(path, drivers.Default, lookupOrPlaceholder); err != nil {
			return &exitError{code: 1, err: fmt.Errorf("edged safe: %s: cannot tell which outputs to make safe:\n%w", path, err)}
		}
	}
	log := newLogger(cfg.Log, stderr)
	env := drivers.NewEnv(log.With("component", "drivers"))
	if err := driveSafe(cfg, env, stdout); err != nil {
		log.Error("not every output is in its safe state", "error", err)
		return &exitError{code: 1}
	}
	return nil
}

// lookupOrPlaceholder is os.LookupEnv, with an unset variable read as
// its own reference.
func lookupOrPlaceholder(name string) (string, bool) {
	if v, ok := os.LookupEnv(name); ok {
		return v, true
	}
	return "${" + name + "}", true
}

// driveSafe opens every actuator of cfg on env (OpenActuator returns it in
// its safe state), halts it, and prints one line per actuator to out.
// Every actuator is tried, whatever happened to the others; env is closed
// at the end.
func driveSafe(cfg *configs.Config, env *drivers.Env, out io.Writer) error {
	var errs []error
	for _, ac := range cfg.Actuators {
		a, err := drivers.Default.OpenActuator(env, ac.Driver, ac.ID, ac.Opts) // names the actuator
		if err == nil {
			if err = a.Halt(); err != nil {
				err = fmt.Errorf("actuator %q: %w", ac.ID, err)
			}
		}
		if err != nil {
			errs = append(errs, err)
			fmt.Fprintf(out, "%s: NOT SAFE: %v\n", ac.ID, err)
			continue
		}
		fmt.Fprintf(out, "%s: safe, level %g (%s)\n", ac.ID, a.Level(), a)
	}
	errs = append(errs, env.Close())
	return errors.Join(errs...)
}
