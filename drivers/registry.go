package drivers

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"periph.io/x/conn/v3/i2c"

	"github.com/edged/edged/drivers/ads1x15"
	"github.com/edged/edged/drivers/aht20"
	"github.com/edged/edged/drivers/am2320"
	"github.com/edged/edged/drivers/bh1750"
	"github.com/edged/edged/drivers/bme280"
	"github.com/edged/edged/drivers/dht22"
	"github.com/edged/edged/drivers/ds18b20"
	"github.com/edged/edged/drivers/htu21d"
	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/drivers/pca9685"
	"github.com/edged/edged/drivers/relay"
	"github.com/edged/edged/drivers/sht3x"
	"github.com/edged/edged/drivers/sht4x"
	"github.com/edged/edged/drivers/sim"
	"github.com/edged/edged/drivers/sysfspwm"
	"github.com/edged/edged/drivers/tsl2561"
	"github.com/edged/edged/drivers/veml7700"
	"github.com/edged/edged/sensors"
)

// Default holds every driver edged ships: the one table of driver names,
// what each measures or drives, and where an I2C device can answer.
// `edged drivers`, `edged i2c scan` and the README's driver tables are
// derived from it (TestREADMEDriverAddresses keeps the README in step).
var Default = newRegistry(
	// Simulated devices (drivers/sim). They share plants through the Env,
	// so a sim_relay and a sim_climate that name the same plant see each
	// other whatever order they open in.
	sensor("sim_light", "simulated light sensor: a day curve between sunrise and sunset with seeded clouds",
		sim.DefaultLightOpts, func(env *Env, _ string, o sim.LightOpts) (*sim.Light, error) {
			return sim.NewLight(env.Clock, o)
		}),
	sensor("sim_climate", "simulated temperature and humidity sensor in a thermal plant (sets the plant's physics)",
		sim.DefaultClimateOpts, func(env *Env, _ string, o sim.ClimateOpts) (*sim.Climate, error) {
			return sim.NewClimate(env.Clock, env, o)
		}),
	onOff(actuator("sim_relay", "simulated on/off heater in a thermal plant (level >= 0.5 is on)",
		sim.DefaultHeaterOpts, func(env *Env, _ string, o sim.HeaterOpts) (*sim.Relay, error) {
			return sim.NewRelay(env.Clock, env, o)
		})),
	actuator("sim_pwm", "simulated proportional heater in a thermal plant (level 0..1 is the power)",
		sim.DefaultHeaterOpts, func(env *Env, _ string, o sim.HeaterOpts) (*sim.PWM, error) {
			return sim.NewPWM(env.Clock, env, o)
		}),

	// I2C sensors open on the Env's shared, serialised bus of their bus
	// name. The addresses are the datasheet's choices, the default first.
	i2cSensor("sht3x", "Sensirion SHT30/31/35 temperature and humidity", sht3x.DefaultOpts, sht3x.New,
		sht3x.Addr, sht3x.AltAddr),
	i2cSensor("sht4x", "Sensirion SHT40/41/43/45 temperature and humidity", sht4x.DefaultOpts, sht4x.New,
		sht4x.Addr, sht4x.AltAddrB, sht4x.AltAddrC),
	i2cSensor("bme280", "Bosch BME280 temperature, humidity and pressure, forced mode", bme280.DefaultOpts, bme280.New,
		bme280.Addr, bme280.AltAddr),
	i2cSensor("aht20", "Aosong AHT20 temperature and humidity", aht20.DefaultOpts, aht20.New,
		aht20.Addr),
	i2cSensor("htu21d", "TE HTU21D / Silicon Labs Si7021 temperature and humidity", htu21d.DefaultOpts, htu21d.New,
		htu21d.Addr),
	i2cSensor("si7021", "Silicon Labs Si7021 temperature and humidity; same driver as htu21d", htu21d.DefaultOpts, htu21d.New,
		htu21d.Addr),
	i2cSensor("am2320", "Aosong AM2320 temperature and humidity (100 kHz); poll every 2s or slower", am2320.DefaultOpts, am2320.New,
		am2320.Addr),
	i2cSensor("bh1750", "ROHM BH1750 illuminance in lux", bh1750.DefaultOpts, bh1750.New,
		bh1750.Addr, bh1750.AltAddr),
	i2cSensor("tsl2561", "TAOS/ams TSL2561 illuminance in lux, auto gain", tsl2561.DefaultOpts, tsl2561.New,
		tsl2561.AddrFloat, tsl2561.AddrLow, tsl2561.AddrHigh),
	i2cSensor("veml7700", "Vishay VEML7700 illuminance in lux, auto-range", veml7700.DefaultOpts, veml7700.New,
		veml7700.Addr),
	i2cSensor("ads1x15", "TI ADS1115/ADS1015 voltage of one input; optional approximate lux from an LDR divider", ads1x15.DefaultOpts, ads1x15.New,
		ads1x15.AddrGND, ads1x15.AddrVDD, ads1x15.AddrSDA, ads1x15.AddrSCL),

	// Kernel sysfs drivers read and write under the Env's SysfsRoot.
	sensor("ds18b20", "DS18B20 1-wire temperature probe through the kernel's w1 sysfs (dtoverlay=w1-gpio)",
		ds18b20.DefaultOpts, func(env *Env, _ string, o ds18b20.Opts) (*ds18b20.Dev, error) {
			o.SysfsRoot = env.SysfsRoot
			return ds18b20.New(o)
		}),
	sensor("dht22", "DHT22/AM2302 temperature and humidity through the kernel's IIO dht11 driver (dtoverlay=dht11,gpiopin=N)",
		dht22.DefaultOpts, func(env *Env, _ string, o dht22.Opts) (*dht22.Dev, error) {
			o.SysfsRoot = env.SysfsRoot
			return dht22.New(o)
		}),
	actuator("sysfspwm", "hardware PWM channel through the kernel's /sys/class/pwm (dtoverlay=pwm,pin=18,func=2), level = duty cycle",
		sysfspwm.DefaultOpts, func(env *Env, _ string, o sysfspwm.Opts) (*sysfspwm.Dev, error) {
			o.SysfsRoot = env.SysfsRoot
			// The export wait is bounded by the driver (one second).
			return sysfspwm.Open(context.Background(), env.Clock, o)
		}),

	// Outputs on GPIO and I2C. The channels of one PCA9685 share one
	// pca9685.Chip through the Env, on the Env's shared I2C bus; every
	// PCA9685 also answers at the all-call address 0x70 until edged
	// starts it (A5..A0 jumpers move the chip itself up to 0x77).
	onOff(actuator("relay", "relay or other on/off load on a GPIO pin (on for level >= 0.5)",
		relay.DefaultOpts, func(_ *Env, _ string, o relay.Opts) (*relay.Dev, error) {
			return relay.Open(o)
		})),
	onI2C(actuator("pca9685", "one channel of an NXP PCA9685 16-channel PWM board, level = duty cycle",
		pca9685.DefaultOpts, openPCA9685), pca9685.Addr, pca9685.AllCallAddr),
)

// newRegistry indexes the table by name.
func newRegistry(ds ...Driver) Registry {
	r := Registry{}
	for _, d := range ds {
		if _, dup := r[d.Name]; dup {
			panic("drivers: duplicate driver name " + d.Name) // programming error, caught by tests
		}
		r[d.Name] = d
	}
	return r
}

// sensor is the Driver of a sensor with options T: defaults from def,
// opened by open.
func sensor[T any, S sensors.Sensor](name, doc string, def func() T, open func(env *Env, id string, o T) (S, error)) Driver {
	return Driver{
		Name:    name,
		Doc:     doc,
		NewOpts: func() any { o := def(); return &o },
		OpenSensor: func(env *Env, id string, opts any) (sensors.Sensor, error) {
			o, err := optsOf[T](name, opts)
			if err != nil {
				return nil, err
			}
			s, err := open(env, id, *o)
			if err != nil {
				return nil, err // not s: a nil *Dev in a non-nil interface
			}
			return s, nil
		},
	}
}

// actuator is sensor's twin for actuators.
func actuator[T any, A sensors.Actuator](name, doc string, def func() T, open func(env *Env, id string, o T) (A, error)) Driver {
	return Driver{
		Name:    name,
		Doc:     doc,
		NewOpts: func() any { o := def(); return &o },
		OpenActuator: func(env *Env, id string, opts any) (sensors.Actuator, error) {
			o, err := optsOf[T](name, opts)
			if err != nil {
				return nil, err
			}
			a, err := open(env, id, *o)
			if err != nil {
				return nil, err
			}
			return a, nil
		},
	}
}

// i2cSensor is the Driver of an I2C sensor whose options T embed
// i2cbus.Opts, opened by open (the package's New) on the Env's shared,
// serialised bus and clock; it answers at addrs, the default first.
func i2cSensor[T any, PT interface {
	*T
	I2CAddr() (bus string, addr uint16)
}, S sensors.Sensor](name, doc string, def func() T, open func(i2c.Bus, sensors.Clock, T) (S, error), addrs ...uint16) Driver {
	return onI2C(sensor(name, doc, def, func(env *Env, _ string, o T) (S, error) {
		busName, _ := PT(&o).I2CAddr()
		bus, err := sharedI2C(env, busName)
		if err != nil {
			var none S
			return none, err
		}
		return open(bus, env.Clock, o)
	}), addrs...)
}

// onI2C sets the addresses an I2C device answers at.
func onI2C(d Driver, addrs ...uint16) Driver {
	d.I2C = addrs
	return d
}

// onOff marks an actuator that only switches on and off.
func onOff(d Driver) Driver {
	d.OnOff = true
	return d
}

// optsOf type-asserts options made by a driver's NewOpts. A mismatch is a
// wiring bug in the caller, reported rather than panicking.
func optsOf[T any](driver string, opts any) (*T, error) {
	o, ok := opts.(*T)
	if !ok || o == nil {
		return nil, fmt.Errorf("drivers: %s: options are %T, want %T (use the driver's NewOpts)", driver, opts, o)
	}
	return o, nil
}

// Summary is the driver's line in `edged drivers`: Doc, then the I2C
// addresses if it has any.
func (d Driver) Summary() string {
	doc := strings.TrimSpace(d.Doc)
	if len(d.I2C) == 0 {
		return doc
	}
	return doc + "; I2C " + FormatAddrs(d.I2C)
}

// FormatAddrs writes addresses as the README does: "0x44, 0x45", with a
// run of three or more consecutive ones as "0x48-0x4B".
func FormatAddrs(addrs []uint16) string {
	var parts []string
	for i := 0; i < len(addrs); {
		j := i
		for j+1 < len(addrs) && addrs[j+1] == addrs[j]+1 {
			j++
		}
		if j-i >= 2 {
			parts = append(parts, fmt.Sprintf("0x%02X-0x%02X", addrs[i], addrs[j]))
			i = j + 1
			continue
		}
		parts = append(parts, fmt.Sprintf("0x%02X", addrs[i]))
		i++
	}
	return strings.Join(parts, ", ")
}

// AtAddress returns the sorted names of the drivers whose device can
// answer at addr, for `edged i2c scan`; nil if none.
func (r Registry) AtAddress(addr uint16) []string {
	var out []string
	for n, d := range r {
		if slices.Contains(d.I2C, addr) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// sharedI2C returns the one serialised Bus of the named I2C bus, opening
// the host bus the first time a device asks for it. Env.Close closes it.
func sharedI2C(env *Env, name string) (*i2cbus.Bus, error) {
	v, err := env.Shared("i2c/"+name, func() (any, error) {
		b, err := i2cbus.Open(name)
		if err != nil {
			return nil, err
		}
		return i2cbus.NewBus(name, b), nil
	})
	if err != nil {
		return nil, err
	}
	b, ok := v.(*i2cbus.Bus)
	if !ok {
		return nil, fmt.Errorf("drivers: shared resource i2c/%s is a %T, not an *i2cbus.Bus", name, v)
	}
	return b, nil
}

// openPCA9685 opens one channel of the Chip at o's bus and address.
func openPCA9685(env *Env, id string, o pca9685.Opts) (*pca9685.Dev, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("pca9685: %w", err)
	}
	chip, err := sharedPCA9685(env, &o)
	if err != nil {
		return nil, err
	}
	return chip.Channel(id, o)
}

// RunningOpts returns opts as the device can open now in env, for a
// reload, and the yaml names of the keys it had to keep: an option that
// a shared resource fixed when it started keeps the running value. So
// far that is a PCA9685's chip-wide frequency, written when the chip's
// first channel opened; a channel of that chip asking for another one
// gets the chip's (old's, when old is that channel on that chip at the
// chip's rate, so that an unchanged entry stays equal). Opts that fit,
// and other drivers', come back as they are. Neither opts nor old is
// changed; old may be nil.
func RunningOpts(env *Env, driver string, opts, old any) (any, []string) {
	o, ok := opts.(*pca9685.Opts)
	if driver != "pca9685" || !ok {
		return opts, nil
	}
	v, started := env.opened(pca9685Key(o))
	chip, ok := v.(*pca9685.Chip)
	if !started || !ok {
		return opts, nil
	}
	if p, err := pca9685.Prescale(o.Frequency); err == nil && p == chip.Prescale() {
		return opts, nil
	}
	r := *o
	r.Frequency = chip.StartedHz()
	if was, ok := old.(*pca9685.Opts); ok && pca9685Key(was) == pca9685Key(o) {
		if p, err := pca9685.Prescale(was.Frequency); err == nil && p == chip.Prescale() {
			r.Frequency = was.Frequency
		}
	}
	return &r, []string{"frequency"}
}

// pca9685Key is the Env key of the chip at o's bus and address.
func pca9685Key(o *pca9685.Opts) string {
	return fmt.Sprintf("pca9685/%s/%#x", o.I2C.Bus, o.I2C.Address)
}

// sharedPCA9685 returns the one Chip at o's bus and address, starting it
// (all outputs off, o's frequency) the first time a channel asks for it.
func sharedPCA9685(env *Env, o *pca9685.Opts) (*pca9685.Chip, error) {
	bus, err := sharedI2C(env, o.I2C.Bus)
	if err != nil {
		return nil, err
	}
	key := pca9685Key(o)
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
