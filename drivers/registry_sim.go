package drivers

import (
	"github.com/edged/edged/drivers/sim"
	"github.com/edged/edged/sensors"
)

// simDrivers lists the simulated devices (drivers/sim). They share plants
// through the Env, so a sim_relay and a sim_climate that name the same
// plant see each other whatever order they open in.
func simDrivers() []Driver {
	return []Driver{
		{
			Name:    "sim_light",
			Doc:     "simulated light sensor: a day curve between sunrise and sunset with seeded clouds",
			NewOpts: func() any { o := sim.DefaultLightOpts(); return &o },
			OpenSensor: func(env *Env, id string, opts any) (sensors.Sensor, error) {
				o, err := optsOf[sim.LightOpts]("sim_light", opts)
				if err != nil {
					return nil, err
				}
				d, err := sim.NewLight(env.Clock, *o)
				if err != nil {
					return nil, err
				}
				return d, nil
			},
		},
		{
			Name:    "sim_climate",
			Doc:     "simulated temperature and humidity sensor in a thermal plant (sets the plant's physics)",
			NewOpts: func() any { o := sim.DefaultClimateOpts(); return &o },
			OpenSensor: func(env *Env, id string, opts any) (sensors.Sensor, error) {
				o, err := optsOf[sim.ClimateOpts]("sim_climate", opts)
				if err != nil {
					return nil, err
				}
				d, err := sim.NewClimate(env.Clock, env, *o)
				if err != nil {
					return nil, err
				}
				return d, nil
			},
		},
		{
			Name:    "sim_relay",
			OnOff:   true,
			Doc:     "simulated on/off heater in a thermal plant (level >= 0.5 is on)",
			NewOpts: func() any { o := sim.DefaultHeaterOpts(); return &o },
			OpenActuator: func(env *Env, id string, opts any) (sensors.Actuator, error) {
				o, err := optsOf[sim.HeaterOpts]("sim_relay", opts)
				if err != nil {
					return nil, err
				}
				d, err := sim.NewRelay(env.Clock, env, *o)
				if err != nil {
					return nil, err
				}
				return d, nil
			},
		},
		{
			Name:    "sim_pwm",
			Doc:     "simulated proportional heater in a thermal plant (level 0..1 is the power)",
			NewOpts: func() any { o := sim.DefaultHeaterOpts(); return &o },
			OpenActuator: func(env *Env, id string, opts any) (sensors.Actuator, error) {
				o, err := optsOf[sim.HeaterOpts]("sim_pwm", opts)
				if err != nil {
					return nil, err
				}
				d, err := sim.NewPWM(env.Clock, env, *o)
				if err != nil {
					return nil, err
				}
				return d, nil
			},
		},
	}
}
