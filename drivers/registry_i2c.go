package drivers

import (
	"fmt"

	"periph.io/x/conn/v3/i2c"

	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/sensors"
)

// i2cSensor is the Driver of an I2C sensor whose options T embed
// i2cbus.Opts: defaults from def, opened by open (the package's New) on
// the Env's shared, serialised bus and clock.
func i2cSensor[T any, PT interface {
	*T
	I2CAddr() (bus string, addr uint16)
}, S sensors.Sensor](name, doc string, def func() T, open func(i2c.Bus, sensors.Clock, T) (S, error)) Driver {
	return Driver{
		Name:    name,
		Doc:     doc,
		NewOpts: func() any { o := def(); return &o },
		OpenSensor: func(env *Env, id string, opts any) (sensors.Sensor, error) {
			o, err := optsOf[T](name, opts)
			if err != nil {
				return nil, err
			}
			busName, _ := PT(o).I2CAddr()
			bus, err := sharedI2C(env, busName)
			if err != nil {
				return nil, err
			}
			return asSensor(open(bus, env.Clock, *o))
		},
	}
}

// optsOf type-asserts options made by a driver's NewOpts. A mismatch is a
// wiring bug in the caller, reported rather than panicking.
func optsOf[T any](driver string, opts any) (*T, error) {
	o, ok := opts.(*T)
	if !ok || o == nil {
		return nil, fmt.Errorf("drivers: %s: options are %T, want %T (use the driver's NewOpts)", driver, opts, o)
	}
	return o, nil
}

// asSensor turns a constructor's (*Dev, error) into (sensors.Sensor,
// error) without the non-nil interface holding a nil pointer that a
// direct conversion would give on error.
func asSensor[S sensors.Sensor](s S, err error) (sensors.Sensor, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}

// sharedI2C returns the one serialised Bus of the named I2C bus, opening
// the host bus the first time a device asks for it. Env.Close closes it.
func sharedI2C(env *Env, name string) (*i2cbus.Bus, error) {
	v, err := env.Shared("i2c/"+name, func() (any, error) {
		b, err := i2cbus.Open(name)
		if err != nil {
			return nil, err
		}
		return i2cbus.NewBus(name, b), nil
	})
	if err != nil {
		return nil, err
	}
	b, ok := v.(*i2cbus.Bus)
	if !ok {
		return nil, fmt.Errorf("drivers: shared resource i2c/%s is a %T, not an *i2cbus.Bus", name, v)
	}
	return b, nil
}
