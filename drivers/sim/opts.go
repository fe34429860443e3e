package sim

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/edged/edged/sensors"
)

// TimeOfDay is a local time of day, written "06:30" or "06:30:15" in YAML.
// It is the offset from local midnight.
type TimeOfDay time.Duration

// UnmarshalText parses "HH:MM" or "HH:MM:SS" (00:00 to 24:00).
func (t *TimeOfDay) UnmarshalText(b []byte) error {
	parts := strings.Split(string(b), ":")
	if len(parts) < 2 || len(parts) > 3 {
		return fmt.Errorf("sim: time of day %q: want HH:MM, e.g. 06:30", b)
	}
	limits := []int{24, 59, 59}
	var v [3]int
	for i, p := range parts {
		if len(p) != 2 || p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9' {
			return fmt.Errorf("sim: time of day %q: want HH:MM, e.g. 06:30", b)
		}
		n := int(p[0]-'0')*10 + int(p[1]-'0')
		if n > limits[i] {
			return fmt.Errorf("sim: time of day %q: want HH:MM, e.g. 06:30", b)
		}
		v[i] = n
	}
	d := time.Duration(v[0])*time.Hour + time.Duration(v[1])*time.Minute + time.Duration(v[2])*time.Second
	if d > 24*time.Hour {
		return fmt.Errorf("sim: time of day %q is past 24:00", b)
	}
	*t = TimeOfDay(d)
	return nil
}

// MarshalText writes "HH:MM", or "HH:MM:SS" when there are seconds.
func (t TimeOfDay) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// String returns the time as "HH:MM" or "HH:MM:SS".
func (t TimeOfDay) String() string {
	s := int64(time.Duration(t) / time.Second)
	if s%60 != 0 {
		return fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%02d:%02d", s/3600, s/60%60)
}

// Faults injects the failures real sensors have, so the Poller, the
// availability topics and the control loop's fail-safe can be exercised
// without hardware. The zero value injects nothing. Everything is
// deterministic for a given Seed and sequence of Sense calls.
type Faults struct {
	// ErrorRate is the probability (0..1) that one Sense fails with
	// ErrInjected.
	ErrorRate float64 `yaml:"error_rate"`
	// StuckAfter, if set, freezes the value this long after open: every
	// later Sense returns the last value read before then.
	StuckAfter time.Duration `yaml:"stuck_after"`
	// Slow makes every Sense wait this long on the clock before it
	// measures, like a slow conversion; the wait honours the context.
	Slow time.Duration `yaml:"slow"`
	// Seed drives the error draws.
	Seed uint64 `yaml:"seed"`
}

// Validate checks the fault options; errors name the key inside faults.
func (f *Faults) Validate() error {
	if math.IsNaN(f.ErrorRate) || f.ErrorRate < 0 || f.ErrorRate > 1 {
		return sensors.FieldErrorf("error_rate", "%v is out of range (0..1)", f.ErrorRate)
	}
	if f.StuckAfter < 0 {
		return sensors.FieldErrorf("stuck_after", "must not be negative")
	}
	if f.Slow < 0 || f.Slow > time.Minute {
		return sensors.FieldErrorf("slow", "%v is out of range (0..1m)", f.Slow)
	}
	return nil
}

// faultsField wraps an error of Faults.Validate so that the outer key
// names the faults block and the inner one the key within it.
func faultsField(err error) error {
	if err == nil {
		return nil
	}
	return &sensors.FieldError{Field: "faults", Err: err}
}

// LightOpts configures sim_light, a light sensor that follows a day curve.
type LightOpts struct {
	// Sunrise and Sunset bound daylight in the clock's local time; the
	// light is zero outside them and a smooth bell between them.
	Sunrise TimeOfDay `yaml:"sunrise"`
	Sunset  TimeOfDay `yaml:"sunset"`
	// PeakLux is the illuminance at the middle of the day under a clear sky.
	PeakLux float64 `yaml:"peak_lux"`
	// Noise is the largest fraction of light that passing clouds take
	// away (0 = clear sky all day).
	Noise float64 `yaml:"noise"`
	// Seed picks the cloud pattern.
	Seed   uint64 `yaml:"seed"`
	Faults Faults `yaml:"faults"`
}

// DefaultLightOpts returns a 06:00 to 20:00 day peaking at 20000 lx with
// light cloud.
func DefaultLightOpts() LightOpts {
	return LightOpts{
		Sunrise: TimeOfDay(6 * time.Hour),
		Sunset:  TimeOfDay(20 * time.Hour),
		PeakLux: 20000,
		Noise:   0.2,
		Seed:    1,
	}
}

var (
	lightQuantities   = []sensors.Quantity{sensors.Illuminance}
	climateQuantities = []sensors.Quantity{sensors.Temperature, sensors.Humidity}
)

// Quantities lists what sim_light measures, so the config loader can check
// controller inputs before anything is opened.
func (o *LightOpts) Quantities() []sensors.Quantity { return lightQuantities }

// Validate checks the options; errors name the YAML key.
func (o *LightOpts) Validate() error {
	if o.Sunrise < 0 || o.Sunrise > TimeOfDay(24*time.Hour) {
		return sensors.FieldErrorf("sunrise", "%v is not a time of day", o.Sunrise)
	}
	if o.Sunset < 0 || o.Sunset > TimeOfDay(24*time.Hour) {
		return sensors.FieldErrorf("sunset", "%v is not a time of day", o.Sunset)
	}
	if o.Sunset <= o.Sunrise {
		return sensors.FieldErrorf("sunset", "%v is not after sunrise %v", o.Sunset, o.Sunrise)
	}
	if math.IsNaN(o.PeakLux) || o.PeakLux <= 0 || o.PeakLux > 200000 {
		return sensors.FieldErrorf("peak_lux", "%v is out of range (0..200000 lx]", o.PeakLux)
	}
	if math.IsNaN(o.Noise) || o.Noise < 0 || o.Noise > 1 {
		return sensors.FieldErrorf("noise", "%v is out of range (0..1)", o.Noise)
	}
	return faultsField(o.Faults.Validate())
}

// PlantParams are the physics of a simulated thermal plant (a greenhouse,
// a box with a heater in it).
type PlantParams struct {
	// Ambient is the temperature (°C) the plant relaxes to with the heater off.
	Ambient float64 `yaml:"ambient"`
	// Tau is the plant's thermal time constant: after Tau a step of heater
	// power has done 63% of its effect on the temperature.
	Tau time.Duration `yaml:"tau"`
	// HeaterGain is how far (°C) the heater at full power lifts the
	// steady-state temperature above Ambient.
	HeaterGain float64 `yaml:"heater_gain"`
	// HeaterLag is the time constant of the heater element itself (0 = it
	// heats at once): a first-order lag between the command and the heat.
	HeaterLag time.Duration `yaml:"heater_lag"`
	// DeadTime delays every heater command before it has any effect, as
	// air transport does in a large house. It makes PID tuning honest.
	DeadTime time.Duration `yaml:"dead_time"`
	// BaseHumidity is the relative humidity (%) at Ambient. The air's
	// water content stays fixed, so RH falls as the air warms.
	BaseHumidity float64 `yaml:"base_humidity"`
}

// ClimateOpts configures sim_climate, a temperature and humidity sensor in
// a simulated plant. The plant's physics are set here; actuators only name
// the plant.
type ClimateOpts struct {
	// Plant names the simulated plant the sensor sits in; sim_relay and
	// sim_pwm actuators with the same name heat it.
	Plant       string `yaml:"plant"`
	PlantParams `yaml:",inline"`
	// Bias (°C) is added to the temperature this sensor reports, like the
	// error of a real sensor that an offset filter corrects. It is the
	// sensor's, not the plant's: the plant holds the true temperature.
	Bias   float64 `yaml:"bias"`
	Faults Faults  `yaml:"faults"`
}

// DefaultClimateOpts returns a small greenhouse: 12 °C outside, a heater
// that can add 15 °C, a 20 minute time constant.
func DefaultClimateOpts() ClimateOpts {
	return ClimateOpts{
		Plant: DefaultPlant,
		PlantParams: PlantParams{
			Ambient:      12,
			Tau:          20 * time.Minute,
			HeaterGain:   15,
			HeaterLag:    30 * time.Second,
			BaseHumidity: 70,
		},
	}
}

// DefaultPlant is the plant name used when the `plant:` key is absent.
const DefaultPlant = "greenhouse"

// Quantities lists what sim_climate measures, in Sense order.
func (o *ClimateOpts) Quantities() []sensors.Quantity { return climateQuantities }

// Validate checks the options; errors name the YAML key.
func (o *ClimateOpts) Validate() error {
	if err := validatePlantName(o.Plant); err != nil {
		return err
	}
	if err := o.PlantParams.Validate(); err != nil {
		return err
	}
	if math.IsNaN(o.Bias) || o.Bias < -10 || o.Bias > 10 {
		return sensors.FieldErrorf("bias", "%v °C is out of range (-10..10)", o.Bias)
	}
	return faultsField(o.Faults.Validate())
}

// Validate checks the physics; errors name the YAML key.
func (p *PlantParams) Validate() error {
	if math.IsNaN(p.Ambient) || p.Ambient < -40 || p.Ambient > 60 {
		return sensors.FieldErrorf("ambient", "%v °C is out of range (-40..60)", p.Ambient)
	}
	if p.Tau < time.Second || p.Tau > 24*time.Hour {
		return sensors.FieldErrorf("tau", "%v is out of range (1s..24h)", p.Tau)
	}
	if math.IsNaN(p.HeaterGain) || p.HeaterGain < 0 || p.HeaterGain > 100 {
		return sensors.FieldErrorf("heater_gain", "%v °C is out of range (0..100)", p.HeaterGain)
	}
	if p.HeaterLag < 0 || p.HeaterLag > 24*time.Hour {
		return sensors.FieldErrorf("heater_lag", "%v is out of range (0..24h)", p.HeaterLag)
	}
	if p.DeadTime < 0 || p.DeadTime > time.Hour {
		return sensors.FieldErrorf("dead_time", "%v is out of range (0..1h)", p.DeadTime)
	}
	if math.IsNaN(p.BaseHumidity) || p.BaseHumidity < 0 || p.BaseHumidity > 100 {
		return sensors.FieldErrorf("base_humidity", "%v %% is out of range (0..100)", p.BaseHumidity)
	}
	return nil
}

// HeaterOpts configures sim_relay and sim_pwm, the simulated heaters.
type HeaterOpts struct {
	// Plant names the simulated plant the heater warms.
	Plant string `yaml:"plant"`
}

// DefaultHeaterOpts returns options for a heater in DefaultPlant.
func DefaultHeaterOpts() HeaterOpts { return HeaterOpts{Plant: DefaultPlant} }

// Validate checks the options; errors name the YAML key.
func (o *HeaterOpts) Validate() error { return validatePlantName(o.Plant) }

func validatePlantName(name string) error {
	if name == "" {
		return sensors.FieldErrorf("plant", "must not be empty")
	}
	if len(name) > 64 || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return sensors.FieldErrorf("plant", "%q: want a short printable name, e.g. greenhouse", name)
	}
	return nil
}
