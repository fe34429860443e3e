package drivers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/drivers"
	"github.com/edged/edged/drivers/sim"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

var simT0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func simEnv(t *testing.T) (*drivers.Env, *sensorstest.Clock) {
	t.Helper()
	clk := sensorstest.NewClock(simT0)
	env := drivers.NewEnv(nil)
	env.Clock = clk
	t.Cleanup(func() {
		if err := env.Close(); err != nil {
			t.Errorf("env.Close: %v", err)
		}
	})
	return env, clk
}

// TestSimOpenInAnyOrder opens a plant's heater before its climate sensor
// and the other way round through the registry, and checks the heater
// warms the plant with the climate sensor's physics either way.
func TestSimOpenInAnyOrder(t *testing.T) {
	for _, heaterFirst := range []bool{false, true} {
		env, clk := simEnv(t)
		co := drivers.Default["sim_climate"].NewOpts().(*sim.ClimateOpts)
		co.Plant, co.Ambient, co.HeaterGain, co.HeaterLag = "house", 4, 10, 0
		ho := drivers.Default["sim_pwm"].NewOpts().(*sim.HeaterOpts)
		ho.Plant = "house"
		var s sensors.Sensor
		var a sensors.Actuator
		var err error
		if heaterFirst {
			if a, err = drivers.Default.OpenActuator(env, "sim_pwm", "heater", ho); err == nil {
				s, err = drivers.Default.OpenSensor(env, "sim_climate", "air", co)
			}
		} else {
			if s, err = drivers.Default.OpenSensor(env, "sim_climate", "air", co); err == nil {
				a, err = drivers.Default.OpenActuator(env, "sim_pwm", "heater", ho)
			}
		}
		if err != nil {
			t.Fatalf("heater first %v: %v", heaterFirst, err)
		}
		if err := a.Set(0.5); err != nil {
			t.Fatal(err)
		}
		clk.Advance(100 * co.Tau)
		v := make([]float64, 2)
		if err := s.Sense(context.Background(), v); err != nil {
			t.Fatal(err)
		}
		if want := 4 + 0.5*10.0; v[0] < want-1e-9 || v[0] > want+1e-9 {
			t.Errorf("heater first %v: %v °C at steady state, want %v", heaterFirst, v[0], want)
		}
		s.Halt()
		a.Halt()
	}
}

func TestSimOpenErrors(t *testing.T) {
	env, _ := simEnv(t)
	if _, err := drivers.Default.OpenSensor(env, "sim_light", "sun", &sim.ClimateOpts{}); err == nil || !strings.Contains(err.Error(), `sensor "sun"`) {
		t.Errorf("sim_light with climate options: %v, want an error naming the sensor", err)
	}
	if _, err := drivers.Default.OpenActuator(env, "sim_relay", "heater", nil); err == nil {
		t.Error("sim_relay with nil options opened; want an error")
	}
	if _, err := drivers.Default.OpenSensor(env, "sim_climate", "air", (*sim.ClimateOpts)(nil)); err == nil {
		t.Error("sim_climate with a nil pointer opened; want an error")
	}
	a := drivers.Default["sim_climate"].NewOpts().(*sim.ClimateOpts)
	b := drivers.Default["sim_climate"].NewOpts().(*sim.ClimateOpts)
	b.Tau *= 2
	if _, err := drivers.Default.OpenSensor(env, "sim_climate", "one", a); err != nil {
		t.Fatal(err)
	}
	if _, err := drivers.Default.OpenSensor(env, "sim_climate", "two", b); err == nil {
		t.Error("two sim_climate sensors with different physics in one plant opened; want an error")
	}
}

// simConfig uses every sim driver and every sim option through the real
// config loader, as a user would write it.
const simConfig = `device: {id: sim-01}
sensors:
  - id: sun
    driver: sim_light
    interval: 1m
    sunrise: "06:30"
    sunset: 19:45
    peak_lux: 50000
    noise: 0.1
    seed: 3
  - id: air
    driver: sim_climate
    plant: house
    ambient: 8.5
    tau: 15m
    heater_gain: 14
    heater_lag: 20s
    dead_time: 30s
    base_humidity: 65
    faults: {error_rate: 0.05, stuck_after: 24h, slow: 200ms, seed: 9}
actuators:
  - {id: heater, driver: sim_relay, plant: house}
  - {id: fan_heater, driver: sim_pwm, plant: house}
controllers:
  - {id: heat, input: air/temperature, output: fan_heater, setpoint: 20, pid: {kp: 0.5, ki: 0.01}}
`

func TestSimConfig(t *testing.T) {
	cfg, err := configs.Parse("sim.yaml", []byte(simConfig), drivers.Default, nil)
	if err != nil {
		t.Fatal(err)
	}
	light := cfg.Sensors[0].Opts.(*sim.LightOpts)
	wantLight := sim.LightOpts{
		Sunrise: sim.TimeOfDay(6*time.Hour + 30*time.Minute), Sunset: sim.TimeOfDay(19*time.Hour + 45*time.Minute),
		PeakLux: 50000, Noise: 0.1, Seed: 3,
	}
	if *light != wantLight {
		t.Errorf("sim_light options %+v, want %+v", *light, wantLight)
	}
	climate := cfg.Sensors[1].Opts.(*sim.ClimateOpts)
	wantClimate := sim.ClimateOpts{
		Plant: "house",
		PlantParams: sim.PlantParams{Ambient: 8.5, Tau: 15 * time.Minute, HeaterGain: 14,
			HeaterLag: 20 * time.Second, DeadTime: 30 * time.Second, BaseHumidity: 65},
		Faults: sim.Faults{ErrorRate: 0.05, StuckAfter: 24 * time.Hour, Slow: 200 * time.Millisecond, Seed: 9},
	}
	if *climate != wantClimate {
		t.Errorf("sim_climate options %+v, want %+v", *climate, wantClimate)
	}
	for _, a := range cfg.Actuators {
		if o := a.Opts.(*sim.HeaterOpts); o.Plant != "house" {
			t.Errorf("%s: plant %q, want house", a.ID, o.Plant)
		}
	}

	env, _ := simEnv(t)
	for _, s := range cfg.Sensors {
		d, err := drivers.Default.OpenSensor(env, s.Driver, s.ID, s.Opts)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Halt()
		if s.ID == "sun" {
			v := make([]float64, 1)
			if err := d.Sense(context.Background(), v); err != nil || v[0] <= 0 {
				t.Errorf("sun at noon: %v lx, %v; want daylight", v[0], err)
			}
		}
	}
	for _, a := range cfg.Actuators {
		d, err := drivers.Default.OpenActuator(env, a.Driver, a.ID, a.Opts)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Halt()
	}
}

// TestSimConfigErrors checks that option errors point at the key at fault.
func TestSimConfigErrors(t *testing.T) {
	checkConfigErrors(t, "sensors", []configError{
		{"bad sunrise", "  - {id: s, driver: sim_light,\n     sunrise: \"6:30\"}\n", 4, "sunrise"},
		{"sunset first", "  - id: s\n    driver: sim_light\n    sunrise: \"08:00\"\n    sunset: \"07:00\"\n", 6, "sunset"},
		{"error rate", "  - id: s\n    driver: sim_climate\n    faults:\n      seed: 1\n      error_rate: 2\n", 7, "error_rate"},
		{"tau", "  - id: s\n    driver: sim_climate\n    tau: 0s\n", 5, "tau"},
		{"unknown key", "  - id: s\n    driver: sim_climate\n    heater_gian: 3\n", 5, "heater_gain"},
	})
}
