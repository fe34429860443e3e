package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/edged/edged/drivers"
	"github.com/edged/edged/drivers/i2cbus"
)

// cmdI2C runs `edged i2c scan [--bus NAME]`: probe every address of one
// bus the way i2cdetect does and name the devices edged knows. A missing
// bus exits 1 with the hint that enables it.
func cmdI2C(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "scan" {
		return &exitError{code: 2, err: errors.New("edged i2c: want: edged i2c scan [--bus NAME]")}
	}
	fs := flag.NewFlagSet("edged i2c scan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("bus", "1", `I2C bus name, alias or number ("1" is header pins 3 and 5)`)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: 2, err: errors.New("")}
	}
	if fs.NArg() != 0 {
		return &exitError{code: 2, err: fmt.Errorf("edged i2c scan: unexpected argument %q (use --bus NAME)", fs.Arg(0))}
	}
	bus, quick, err := i2cbus.OpenScan(*name)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("edged i2c scan: %w", err)}
	}
	defer bus.Close()
	if !quick {
		// Without i2c-dev quick writes, an empty Tx would find every
		// address; read-probe all of them instead, as i2cdetect -r does.
		fmt.Fprintln(stderr, "edged i2c scan: no SMBus quick write on this bus; probing every address with a one-byte read")
		return i2cbus.WriteTable(stdout, *name, i2cbus.Scan(i2cbus.ReadOnly{Bus: bus}), drivers.Default.AtAddress)
	}
	return i2cbus.WriteTable(stdout, *name, i2cbus.Scan(bus), drivers.Default.AtAddress)
}
