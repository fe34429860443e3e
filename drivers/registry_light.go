package drivers

import (
	"github.com/edged/edged/drivers/ads1x15"
	"github.com/edged/edged/drivers/tsl2561"
	"github.com/edged/edged/drivers/veml7700"
	"github.com/edged/edged/sensors"
)

// lightDrivers lists the light sensors beyond bh1750 (tsl2561, veml7700,
// ads1x15). Each opens on the Env's shared, serialised I2C bus.
func lightDrivers() []Driver {
	return []Driver{
		{
			Name:    "tsl2561",
			Doc:     "TAOS/ams TSL2561 illuminance in lux on I2C (0x29, 0x39, 0x49), auto gain",
			NewOpts: func() any { o := tsl2561.DefaultOpts(); return &o },
			OpenSensor: func(env *Env, id string, opts any) (sensors.Sensor, error) {
				o, err := simOpts[tsl2561.Opts]("tsl2561", opts)
				if err != nil {
					return nil, err
				}
				bus, err := sharedI2C(env, o.Bus)
				if err != nil {
					return nil, err
				}
				d, err := tsl2561.New(bus, env.Clock, *o)
				if err != nil {
					return nil, err
				}
				return d, nil
			},
		},
		{
			Name:    "veml7700",
			Doc:     "Vishay VEML7700 illuminance in lux on I2C (0x10), auto-range",
			NewOpts: func() any { o := veml7700.DefaultOpts(); return &o },
			OpenSensor: func(env *Env, id string, opts any) (sensors.Sensor, error) {
				o, err := simOpts[veml7700.Opts]("veml7700", opts)
				if err != nil {
					return nil, err
				}
				bus, err := sharedI2C(env, o.Bus)
				if err != nil {
					return nil, err
				}
				d, err := veml7700.New(bus, env.Clock, *o)
				if err != nil {
					return nil, err
				}
				return d, nil
			},
		},
		{
			Name:    "ads1x15",
			Doc:     "TI ADS1115/ADS1015 voltage of one input on I2C (0x48-0x4B); optional approximate lux from an LDR divider",
			NewOpts: func() any { o := ads1x15.DefaultOpts(); return &o },
			OpenSensor: func(env *Env, id string, opts any) (sensors.Sensor, error) {
				o, err := simOpts[ads1x15.Opts]("ads1x15", opts)
				if err != nil {
					return nil, err
				}
				bus, err := sharedI2C(env, o.Bus)
				if err != nil {
					return nil, err
				}
				d, err := ads1x15.New(bus, env.Clock, *o)
				if err != nil {
					return nil, err
				}
				return d, nil
			},
		},
	}
}
