package drivers

import (
	"github.com/edged/edged/drivers/aht20"
	"github.com/edged/edged/drivers/am2320"
	"github.com/edged/edged/drivers/bme280"
	"github.com/edged/edged/drivers/dht22"
	"github.com/edged/edged/drivers/htu21d"
	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/drivers/sht4x"
	"github.com/edged/edged/sensors"
)

// climateDrivers lists the temperature/humidity/pressure sensors beyond
// sht3x and ds18b20 (sht4x, bme280, aht20, htu21d and its alias si7021,
// am2320, dht22). The I2C ones open on the Env's shared, serialised bus;
// dht22 reads the kernel's IIO sysfs under the Env's SysfsRoot.
func climateDrivers() []Driver {
	return []Driver{
		climateI2C("sht4x", "Sensirion SHT40/41/43/45 temperature and humidity on I2C (0x44, 0x45, 0x46)",
			sht4x.DefaultOpts, func(o *sht4x.Opts) string { return o.Bus },
			func(b *i2cbus.Bus, c sensors.Clock, o sht4x.Opts) (sensors.Sensor, error) {
				return climateSensor(sht4x.New(b, c, o))
			}),
		climateI2C("bme280", "Bosch BME280 temperature, humidity and pressure on I2C (0x76, 0x77), forced mode",
			bme280.DefaultOpts, func(o *bme280.Opts) string { return o.Bus },
			func(b *i2cbus.Bus, c sensors.Clock, o bme280.Opts) (sensors.Sensor, error) {
				return climateSensor(bme280.New(b, c, o))
			}),
		climateI2C("aht20", "Aosong AHT20 temperature and humidity on I2C (0x38)",
			aht20.DefaultOpts, func(o *aht20.Opts) string { return o.Bus },
			func(b *i2cbus.Bus, c sensors.Clock, o aht20.Opts) (sensors.Sensor, error) {
				return climateSensor(aht20.New(b, c, o))
			}),
		climateI2C("htu21d", "TE HTU21D / Silicon Labs Si7021 temperature and humidity on I2C (0x40)",
			htu21d.DefaultOpts, func(o *htu21d.Opts) string { return o.Bus },
			func(b *i2cbus.Bus, c sensors.Clock, o htu21d.Opts) (sensors.Sensor, error) {
				return climateSensor(htu21d.New(b, c, o))
			}),
		climateI2C("si7021", "Silicon Labs Si7021 temperature and humidity on I2C (0x40); same driver as htu21d",
			htu21d.DefaultOpts, func(o *htu21d.Opts) string { return o.Bus },
			func(b *i2cbus.Bus, c sensors.Clock, o htu21d.Opts) (sensors.Sensor, error) {
				return climateSensor(htu21d.New(b, c, o))
			}),
		climateI2C("am2320", "Aosong AM2320 temperature and humidity on I2C (0x5C, 100 kHz); poll every 2s or slower",
			am2320.DefaultOpts, func(o *am2320.Opts) string { return o.Bus },
			func(b *i2cbus.Bus, c sensors.Clock, o am2320.Opts) (sensors.Sensor, error) {
				return climateSensor(am2320.New(b, c, o))
			}),
		{
			Name:    "dht22",
			Doc:     "DHT22/AM2302 temperature and humidity through the kernel's IIO dht11 driver (dtoverlay=dht11,gpiopin=N)",
			NewOpts: func() any { o := dht22.DefaultOpts(); return &o },
			OpenSensor: func(env *Env, id string, opts any) (sensors.Sensor, error) {
				o, err := simOpts[dht22.Opts]("dht22", opts)
				if err != nil {
					return nil, err
				}
				oo := *o
				oo.SysfsRoot = env.SysfsRoot
				return climateSensor(dht22.New(oo))
			},
		},
	}
}

// climateI2C builds the Driver of an I2C sensor whose options type is T:
// defaults from def, the bus name from busOf, and open on the Env's shared
// bus and clock.
func climateI2C[T any](name, doc string, def func() T, busOf func(*T) string, open func(*i2cbus.Bus, sensors.Clock, T) (sensors.Sensor, error)) Driver {
	return Driver{
		Name:    name,
		Doc:     doc,
		NewOpts: func() any { o := def(); return &o },
		OpenSensor: func(env *Env, id string, opts any) (sensors.Sensor, error) {
			o, err := simOpts[T](name, opts)
			if err != nil {
				return nil, err
			}
			bus, err := sharedI2C(env, busOf(o))
			if err != nil {
				return nil, err
			}
			return open(bus, env.Clock, *o)
		},
	}
}

// climateSensor turns a constructor's (*Dev, error) into (sensors.Sensor, error)
// without the non-nil interface holding a nil pointer that a direct
// conversion would give on error.
func climateSensor[S sensors.Sensor](s S, err error) (sensors.Sensor, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}
