// Package pihost starts the periph.io host drivers edged uses: the GPIO
// character device (gpioioctl), sysfs (I2C buses as /dev/i2c-*), and on
// ARM the Raspberry Pi's SoC and header (bcm283x, rpi). It replaces
// periph's host.Init, which also registers every other board periph knows
// (Allwinner, BeagleBone, C.H.I.P., ODROID-C1, Pine64, the netlink 1-wire
// gateway): 256 KiB of the ARMv7 binary that edged never uses (README
// "Measured"). On such a board, GPIO and I2C still work through the
// generic character device and sysfs drivers.
//
// It owns that list and nothing else.
package pihost

import (
	"periph.io/x/conn/v3/driver/driverreg"

	// Registered for driverreg.Init; bcm283x and rpi only on ARM.
	_ "periph.io/x/host/v3/bcm283x"
	_ "periph.io/x/host/v3/gpioioctl"
	_ "periph.io/x/host/v3/rpi"
	_ "periph.io/x/host/v3/sysfs"
)

// Init initialises the drivers above, once (driverreg.Init is
// idempotent). A driver that finds no hardware (no GPIO chip, not a Pi)
// is skipped, not an error.
func Init() error {
	_, err := driverreg.Init()
	return err
}
