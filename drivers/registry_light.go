package drivers

import (
	"github.com/edged/edged/drivers/ads1x15"
	"github.com/edged/edged/drivers/tsl2561"
	"github.com/edged/edged/drivers/veml7700"
)

// lightDrivers lists the light sensors beyond bh1750 (tsl2561, veml7700,
// ads1x15). Each opens on the Env's shared, serialised I2C bus.
func lightDrivers() []Driver {
	return []Driver{
		i2cSensor("tsl2561", "TAOS/ams TSL2561 illuminance in lux on I2C (0x29, 0x39, 0x49), auto gain", tsl2561.DefaultOpts, tsl2561.New),
		i2cSensor("veml7700", "Vishay VEML7700 illuminance in lux on I2C (0x10), auto-range", veml7700.DefaultOpts, veml7700.New),
		i2cSensor("ads1x15", "TI ADS1115/ADS1015 voltage of one input on I2C (0x48-0x4B); optional approximate lux from an LDR divider", ads1x15.DefaultOpts, ads1x15.New),
	}
}
