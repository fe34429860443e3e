package drivers

import (
	"context"
	"fmt"

	"github.com/edged/edged/drivers/pca9685"
	"github.com/edged/edged/drivers/sysfspwm"
	"github.com/edged/edged/sensors"
)

// outputDrivers lists the outputs beyond relay (kernel sysfs PWM, PCA9685).
// The PCA9685 channels of one chip share one pca9685.Chip through the Env,
// on the Env's shared I2C bus.
func outputDrivers() []Driver {
	return []Driver{
		{
			Name:    "sysfspwm",
			Doc:     "hardware PWM channel through the kernel's /sys/class/pwm (dtoverlay=pwm,pin=18,func=2), level = duty cycle",
			NewOpts: func() any { o := sysfspwm.DefaultOpts(); return &o },
			OpenActuator: func(env *Env, id string, opts any) (sensors.Actuator, error) {
				o, err := optsOf[sysfspwm.Opts]("sysfspwm", opts)
				if err != nil {
					return nil, err
				}
				oo := *o
				oo.SysfsRoot = env.SysfsRoot
				// The export wait is bounded by the driver (one second).
				d, err := sysfspwm.Open(context.Background(), env.Clock, oo)
				if err != nil {
					return nil, err
				}
				return d, nil
			},
		},
		{
			Name:    "pca9685",
			Doc:     "one channel of an NXP PCA9685 16-channel PWM board on I2C (0x40 by default), level = duty cycle",
			NewOpts: func() any { o := pca9685.DefaultOpts(); return &o },
			OpenActuator: func(env *Env, id string, opts any) (sensors.Actuator, error) {
				o, err := optsOf[pca9685.Opts]("pca9685", opts)
				if err != nil {
					return nil, err
				}
				if err := o.Validate(); err != nil {
					return nil, fmt.Errorf("pca9685: %w", err)
				}
				chip, err := sharedPCA9685(env, o)
				if err != nil {
					return nil, err
				}
				d, err := chip.Channel(id, *o)
				if err != nil {
					return nil, err
				}
				return d, nil
			},
		},
	}
}

// sharedPCA9685 returns the one Chip at o's bus and address, starting it
// (all outputs off, o's frequency) the first time a channel asks for it.
func sharedPCA9685(env *Env, o *pca9685.Opts) (*pca9685.Chip, error) {
	bus, err := sharedI2C(env, o.I2C.Bus)
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("pca9685/%s/%#x", o.I2C.Bus, o.I2C.Address)
	v, err := env.Shared(key, func() (any, error) {
		return pca9685.NewChip(bus, env.Clock, o.I2C.Address, o.Frequency)
	})
	if err != nil {
		return nil, err
	}
	c, ok := v.(*pca9685.Chip)
	if !ok {
		return nil, fmt.Errorf("drivers: shared resource %s is a %T, not a *pca9685.Chip", key, v)
	}
	return c, nil
}
