package drivers

import (
	"github.com/edged/edged/drivers/bh1750"
	"github.com/edged/edged/drivers/ds18b20"
	"github.com/edged/edged/drivers/relay"
	"github.com/edged/edged/drivers/sht3x"
	"github.com/edged/edged/sensors"
)

// hardwareDrivers lists the real devices. I2C devices on one bus share one
// serialised i2cbus.Bus through the Env; sysfs drivers take the Env's
// SysfsRoot.
func hardwareDrivers() []Driver {
	return []Driver{
		i2cSensor("sht3x", "Sensirion SHT30/31/35 temperature and humidity on I2C (0x44, 0x45)", sht3x.DefaultOpts, sht3x.New),
		i2cSensor("bh1750", "ROHM BH1750 illuminance in lux on I2C (0x23, 0x5C)", bh1750.DefaultOpts, bh1750.New),
		{
			Name:    "ds18b20",
			Doc:     "DS18B20 1-wire temperature probe through the kernel's w1 sysfs (dtoverlay=w1-gpio)",
			NewOpts: func() any { o := ds18b20.DefaultOpts(); return &o },
			OpenSensor: func(env *Env, id string, opts any) (sensors.Sensor, error) {
				o, err := optsOf[ds18b20.Opts]("ds18b20", opts)
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
			OnOff:   true,
			Doc:     "relay or other on/off load on a GPIO pin (on for level >= 0.5)",
			NewOpts: func() any { o := relay.DefaultOpts(); return &o },
			OpenActuator: func(env *Env, id string, opts any) (sensors.Actuator, error) {
				o, err := optsOf[relay.Opts]("relay", opts)
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
