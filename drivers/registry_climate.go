package drivers

import (
	"github.com/edged/edged/drivers/aht20"
	"github.com/edged/edged/drivers/am2320"
	"github.com/edged/edged/drivers/bme280"
	"github.com/edged/edged/drivers/dht22"
	"github.com/edged/edged/drivers/htu21d"
	"github.com/edged/edged/drivers/sht4x"
	"github.com/edged/edged/sensors"
)

// climateDrivers lists the temperature/humidity/pressure sensors beyond
// sht3x and ds18b20 (sht4x, bme280, aht20, htu21d and its alias si7021,
// am2320, dht22). The I2C ones open on the Env's shared, serialised bus;
// dht22 reads the kernel's IIO sysfs under the Env's SysfsRoot.
func climateDrivers() []Driver {
	return []Driver{
		i2cSensor("sht4x", "Sensirion SHT40/41/43/45 temperature and humidity on I2C (0x44, 0x45, 0x46)", sht4x.DefaultOpts, sht4x.New),
		i2cSensor("bme280", "Bosch BME280 temperature, humidity and pressure on I2C (0x76, 0x77), forced mode", bme280.DefaultOpts, bme280.New),
		i2cSensor("aht20", "Aosong AHT20 temperature and humidity on I2C (0x38)", aht20.DefaultOpts, aht20.New),
		i2cSensor("htu21d", "TE HTU21D / Silicon Labs Si7021 temperature and humidity on I2C (0x40)", htu21d.DefaultOpts, htu21d.New),
		i2cSensor("si7021", "Silicon Labs Si7021 temperature and humidity on I2C (0x40); same driver as htu21d", htu21d.DefaultOpts, htu21d.New),
		i2cSensor("am2320", "Aosong AM2320 temperature and humidity on I2C (0x5C, 100 kHz); poll every 2s or slower", am2320.DefaultOpts, am2320.New),
		{
			Name:    "dht22",
			Doc:     "DHT22/AM2302 temperature and humidity through the kernel's IIO dht11 driver (dtoverlay=dht11,gpiopin=N)",
			NewOpts: func() any { o := dht22.DefaultOpts(); return &o },
			OpenSensor: func(env *Env, id string, opts any) (sensors.Sensor, error) {
				o, err := optsOf[dht22.Opts]("dht22", opts)
				if err != nil {
					return nil, err
				}
				oo := *o
				oo.SysfsRoot = env.SysfsRoot
				return asSensor(dht22.New(oo))
			},
		},
	}
}
