package drivers

// simDrivers lists the simulated devices (drivers/sim).
func simDrivers() []Driver { return nil }
