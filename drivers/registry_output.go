package drivers

// outputDrivers lists the outputs beyond relay (kernel sysfs PWM, PCA9685).
func outputDrivers() []Driver { return nil }
