//go:build !linux

package i2cbus

import "errors"

// quick has no implementation off Linux: there is no i2c-dev.
type quick struct{}

func openQuick(string) (*quick, error) {
	return nil, errors.New("i2cbus: quick write needs Linux i2c-dev")
}

func (*quick) write(uint16) error { return errors.New("i2cbus: quick write needs Linux i2c-dev") }

func (*quick) close() error { return nil }
