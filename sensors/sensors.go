// Package sensors holds edged's domain types: physical quantities with fixed
// canonical units, readings, the Sensor and Actuator interfaces that drivers
// implement, and the Poller that samples sensors on schedule and runs each
// value through its filters.
//
// It does no I/O of its own and imports only the standard library: drivers
// bring the hardware, pipeline takes the readings away.
package sensors

import (
	"context"
	"fmt"
	"time"
)

// Quantity is a physical quantity with one fixed canonical unit. Every value
// that leaves a driver is in that unit, so nothing downstream converts.
type Quantity uint8

// The quantities edged knows. The zero value is invalid on purpose.
const (
	Temperature Quantity = iota + 1 // degrees Celsius
	Humidity                        // relative humidity, percent
	Illuminance                     // lux
	Pressure                        // pascal
	Voltage                         // volt
	Level                           // output level of an actuator, 0..1
)

var quantityInfo = [...]struct{ name, unit string }{
	Temperature: {"temperature", "°C"},
	Humidity:    {"humidity", "%"},
	Illuminance: {"illuminance", "lx"},
	Pressure:    {"pressure", "Pa"},
	Voltage:     {"voltage", "V"},
	Level:       {"level", ""},
}

// Valid reports whether q is one of the known quantities.
func (q Quantity) Valid() bool { return q > 0 && int(q) < len(quantityInfo) }

// String returns the name used in topics and YAML, e.g. "temperature".
func (q Quantity) String() string {
	if !q.Valid() {
		return fmt.Sprintf("quantity(%d)", uint8(q))
	}
	return quantityInfo[q].name
}

// Unit returns the canonical unit symbol, e.g. "°C".
func (q Quantity) Unit() string {
	if !q.Valid() {
		return ""
	}
	return quantityInfo[q].unit
}

// MarshalText implements encoding.TextMarshaler.
func (q Quantity) MarshalText() ([]byte, error) {
	if !q.Valid() {
		return nil, fmt.Errorf("sensors: invalid quantity %d", uint8(q))
	}
	return []byte(q.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler, so YAML can say
// `quantity: temperature`.
func (q *Quantity) UnmarshalText(b []byte) error {
	p, err := ParseQuantity(string(b))
	if err != nil {
		return err
	}
	*q = p
	return nil
}

// ParseQuantity returns the quantity with the given name.
func ParseQuantity(s string) (Quantity, error) {
	for i := 1; i < len(quantityInfo); i++ {
		if quantityInfo[i].name == s {
			return Quantity(i), nil
		}
	}
	return 0, fmt.Errorf("sensors: unknown quantity %q (want one of temperature, humidity, illuminance, pressure, voltage, level)", s)
}

// Reading is one filtered value of one quantity of one sensor.
type Reading struct {
	Sensor   string // sensor id from the config
	Quantity Quantity
	Value    float64 // in Quantity's canonical unit
	Time     time.Time
	// Mono is the sample's time on the Poller's monotonic clock
	// (sensors.MonoOf; 0 when the clock has none): what a stamp taken
	// before the wall clock was trusted is corrected from.
	Mono time.Duration
}

// Sensor is a device that measures one or more quantities.
//
// Implementations live in drivers/. They are not safe for concurrent use;
// the Poller calls Sense from one goroutine per sensor.
type Sensor interface {
	// String names the device and where it sits, e.g. "sht3x(i2c 1, 0x44)".
	String() string
	// Quantities lists what Sense measures, in the order it fills dst.
	// The slice must not change over the sensor's life.
	Quantities() []Quantity
	// Sense takes one measurement and writes one value per quantity into
	// dst, which has len(Quantities()) elements. It honours ctx for any wait
	// (conversion time), and must not allocate on the steady path.
	Sense(ctx context.Context, dst []float64) error
	// Halt stops the device and releases what it holds.
	Halt() error
}

// Actuator is an output: a relay, a PWM channel.
//
// An actuator has a safe state (usually off) that it enters on open, on
// Halt and whenever the caller cannot be sure of the right level.
type Actuator interface {
	String() string
	// Set drives the output to level, 0 (off) to 1 (fully on). A relay is
	// on for level >= 0.5. Values outside 0..1 are an error, not clamped.
	Set(level float64) error
	// Level returns the level last set successfully. It is kept in
	// software: outputs are never read back from the hardware.
	Level() float64
	// Safe drives the output to its safe state.
	Safe() error
	// Halt applies the safe state and releases the output.
	Halt() error
}

// FieldError is an options error that names the YAML key at fault, so the
// config loader can point at that key's line and column. Driver and filter
// Validate methods return it.
type FieldError struct {
	Field string // YAML key, e.g. "address"
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// FieldErrorf returns a *FieldError for field with a formatted message.
func FieldErrorf(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}
