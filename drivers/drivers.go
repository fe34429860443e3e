// Package drivers maps the YAML `driver:` names to the code that opens the
// hardware, and holds what the opened devices share (I2C buses, the
// simulated world). Each device lives in its own subpackage; this package
// is the only place that lists them all.
//
// Only drivers/ imports periph.io/x/host and periph.io/x/devices.
package drivers

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"

	"github.com/edged/edged/sensors"
)

// Driver describes one `driver:` name. Exactly one of OpenSensor and
// OpenActuator is set.
type Driver struct {
	Name string
	// Doc says in one line what the device is and measures or drives;
	// Summary adds the I2C addresses for `edged drivers`.
	Doc string
	// I2C lists the addresses an I2C device can answer at, the default
	// (its DefaultOpts address) first; nil for drivers not on I2C.
	// `edged i2c scan` names the driver at each of them.
	I2C []uint16
	// NewOpts returns a pointer to a fresh options struct with defaults
	// applied. The config loader decodes the driver-specific YAML keys into
	// it and calls its Validate() error method if it has one.
	NewOpts func() any
	// OpenSensor opens a sensor from options made by NewOpts.
	OpenSensor func(env *Env, id string, opts any) (sensors.Sensor, error)
	// OpenActuator opens an actuator from options made by NewOpts. The
	// actuator is in its safe state when it returns.
	OpenActuator func(env *Env, id string, opts any) (sensors.Actuator, error)
	// OnOff is true for actuators that only switch on and off (relays):
	// a controller must drive them with a cycle or hysteresis.
	OnOff bool
}

// Registry is the explicit map from driver name to Driver.
type Registry map[string]Driver

// SensorOpts returns fresh options for the named sensor driver.
func (r Registry) SensorOpts(name string) (any, bool) {
	d, ok := r[name]
	if !ok || d.OpenSensor == nil {
		return nil, false
	}
	return d.NewOpts(), true
}

// ActuatorOpts returns fresh options for the named actuator driver.
func (r Registry) ActuatorOpts(name string) (any, bool) {
	d, ok := r[name]
	if !ok || d.OpenActuator == nil {
		return nil, false
	}
	return d.NewOpts(), true
}

// OnOff reports whether the named actuator driver only switches on and
// off, so the config loader can ask for a cycle or hysteresis.
func (r Registry) OnOff(name string) bool { return r[name].OnOff }

// Names returns the sorted driver names of one kind.
func (r Registry) Names(actuators bool) []string {
	var out []string
	for n, d := range r {
		if (d.OpenActuator != nil) == actuators {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// OpenSensor opens sensor id with the named driver.
func (r Registry) OpenSensor(env *Env, driver, id string, opts any) (sensors.Sensor, error) {
	d, ok := r[driver]
	if !ok || d.OpenSensor == nil {
		return nil, fmt.Errorf("drivers: sensor %q: unknown sensor driver %q", id, driver)
	}
	s, err := d.OpenSensor(env, id, opts)
	if err != nil {
		return nil, fmt.Errorf("sensor %q: %w", id, err)
	}
	return s, nil
}

// OpenActuator opens actuator id with the named driver.
func (r Registry) OpenActuator(env *Env, driver, id string, opts any) (sensors.Actuator, error) {
	d, ok := r[driver]
	if !ok || d.OpenActuator == nil {
		return nil, fmt.Errorf("drivers: actuator %q: unknown actuator driver %q", id, driver)
	}
	a, err := d.OpenActuator(env, id, opts)
	if err != nil {
		return nil, fmt.Errorf("actuator %q: %w", id, err)
	}
	return a, nil
}

// Env is what opened devices share. The zero value is not usable; call
// NewEnv. Close releases every shared resource.
type Env struct {
	Clock sensors.Clock
	Log   *slog.Logger
	// SysfsRoot prefixes every sysfs path ("/" on a real system), so tests
	// run sysfs drivers against a fake tree in a temp dir.
	SysfsRoot string

	mu     sync.Mutex
	shared map[string]any
	order  []string
}

// NewEnv returns an Env on the real clock and root file system.
func NewEnv(log *slog.Logger) *Env {
	log = sensors.LogOrDiscard(log)
	return &Env{Clock: sensors.SystemClock, Log: log, SysfsRoot: "/"}
}

// Shared returns the resource stored under key, opening it with open the
// first time. Resources that implement io.Closer are closed by Close in
// reverse order of opening. open runs under the Env's lock: it must not
// call Shared.
func (e *Env) Shared(key string, open func() (any, error)) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if v, ok := e.shared[key]; ok {
		return v, nil
	}
	v, err := open()
	if err != nil {
		return nil, err
	}
	if e.shared == nil {
		e.shared = map[string]any{}
	}
	e.shared[key] = v
	e.order = append(e.order, key)
	return v, nil
}

// opened returns the resource stored under key, if it was opened.
func (e *Env) opened(key string) (any, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v, ok := e.shared[key]
	return v, ok
}

// Close closes the shared resources.
func (e *Env) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for i := len(e.order) - 1; i >= 0; i-- {
		if c, ok := e.shared[e.order[i]].(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	e.shared, e.order = nil, nil
	return errors.Join(errs...)
}
