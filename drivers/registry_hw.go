package drivers

import (
	"fmt"

	"github.com/edged/edged/drivers/bh1750"
	"github.com/edged/edged/drivers/ds18b20"
	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/drivers/relay"
	"github.com/edged/edged/drivers/sht3x"
	"github.com/edged/edged/sensors"
)

// hardwareDrivers lists the real devices. I2C devices on one bus share one
// serialised i2cbus.Bus through the Env; sysfs drivers take the Env's
// SysfsRoot.
func hardwareDrivers() []Driver {
	return []Driver{
		{
			Name:    "sht3x",
			Doc:     "Sensirion SHT30/31/35 temperature and humidity on I2C (0x44, 0x45)",
			NewOpts: func() any { o := sht3x.DefaultOpts(); return &o },
			OpenSensor: func(env *Env, id string, opts any) (sensors.Sensor, error) {
				o, err := simOpts[sht3x.Opts]("sht3x", opts)
				if err != nil {
					return nil, err
				}
				bus, err := sharedI2C(env, o.Bus)
				if err != nil {
					return nil, err
				}
				d, err := sht3x.New(bus, env.Clock, *o)
				if err != nil {
					return nil, err
				}
				return d, nil
			},
		},
		{
			Name:    "bh1750",
			Doc:     "ROHM BH1750 illuminance in lux on I2C (0x23, 0x5C)",
			NewOpts: func() any { o := bh1750.DefaultOpts(); return &o },
			OpenSensor: func(env *Env, id string, opts any) (sensors.Sensor, error) {
				o, err := simOpts[bh1750.Opts]("bh1750", opts)
				if err != nil {
					return nil, err
				}
				bus, err := sharedI2C(env, o.Bus)
				if err != nil {
					return nil, err
				}
				d, err := bh1750.New(bus, env.Clock, *o)
				if err != nil {
					return nil, err
				}
				return d, nil
			},
		},
		{
			Name:    "ds18b20",
			Doc:     "DS18B20 1-wire temperature probe through the kernel's w1 sysfs (dtoverlay=w1-gpio)",
			NewOpts: func() any { o := ds18b20.DefaultOpts(); return &o },
			OpenSensor: func(env *Env, id string, opts any) (sensors.Sensor, error) {
				o, err := simOpts[ds18b20.Opts]("ds18b20", opts)
				if err != nil {
					return nil, err
				}
				oo := *o
				oo.SysfsRoot = env.SysfsRoot
				d, err := ds18b20.New(oo)
				if err != nil {
					return nil, err
				}
				return d, nil
			},
		},
		{
			Name:    "relay",
			Doc:     "relay or other on/off load on a GPIO pin (on for level >= 0.5)",
			NewOpts: func() any { o := relay.DefaultOpts(); return &o },
			OpenActuator: func(env *Env, id string, opts any) (sensors.Actuator, error) {
				o, err := simOpts[relay.Opts]("relay", opts)
				if err != nil {
					return nil, err
				}
				d, err := relay.Open(*o)
				if err != nil {
					return nil, err
				}
				return d, nil
			},
		},
	}
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
