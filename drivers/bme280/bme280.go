// Package bme280 drives a Bosch BME280 pressure, humidity and temperature
// sensor on I2C in forced mode, from the BME280 datasheet
// (BST-BME280-DS002; section numbers below are that datasheet's).
//
// It is written on i2c.Dev instead of wrapping
// periph.io/x/devices/v3/bmxx80, whose I2C traffic is fine but whose
// forced-mode Sense waits with a package-level time.Sleep that cannot be
// injected or cancelled, then polls the status register in a loop with no
// delay at all, allocates on every reading, and cannot notice a sensor
// that was reset by a supply glitch and silently lost its oversampling
// settings. The register protocol is small; owning it costs less than
// working around that.
//
// The package owns the register traffic, the datasheet's measurement
// time, the trimming (calibration) parameters and the integer
// compensation formulas of 4.2.3, and returns °C, %RH and Pa; it does not
// own the bus.
package bme280

import (
	"context"
	"errors"
	"fmt"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/sensors"
)

// The two addresses the SDO pin selects (6.2).
const (
	Addr    uint16 = 0x76 // SDO to GND
	AltAddr uint16 = 0x77 // SDO to VDDIO
)

// Registers (5.3, table 18).
const (
	regCalib00  = 0x88 // 0x88..0xA1: dig_T1..dig_P9, dig_H1
	regChipID   = 0xD0
	regCalib26  = 0xE1 // 0xE1..0xE7: dig_H2..dig_H6
	regCtrlHum  = 0xF2
	regCtrlMeas = 0xF4
	regConfig   = 0xF5
)

// chipID is the BME280's id (5.4.1); a BMP280 answers 0x56..0x58.
const chipID = 0x60

// Mode bits of ctrl_meas (5.4.5, table 25).
const (
	modeSleep  = 0x00
	modeForced = 0x01
)

// statusMeasuring is bit 3 of the status register (5.4.4).
const statusMeasuring = 0x08

// Opts are the bme280 keys of a sensor's YAML block.
type Opts struct {
	i2cbus.Opts `yaml:",inline"`
	// Oversampling of each measurement: 1, 2, 4, 8 or 16 (5.4.3, 5.4.5).
	// More lowers the noise (3.6) and lengthens the measurement (9.1).
	TemperatureOversampling int `yaml:"temperature_oversampling"`
	PressureOversampling    int `yaml:"pressure_oversampling"`
	HumidityOversampling    int `yaml:"humidity_oversampling"`
	// IIRFilter is the filter coefficient for temperature and pressure
	// (3.4.4, table 6): 0 (off), 2, 4, 8 or 16. It smooths door slams and
	// wind gusts out of pressure, at the cost of a slower response.
	IIRFilter int `yaml:"iir_filter"`
}

// DefaultOpts returns bus "1", address 0x76 and the datasheet's "weather
// monitoring" settings (3.5.1): oversampling 1 for all three, filter off.
func DefaultOpts() Opts {
	return Opts{
		Opts:                    i2cbus.DefaultOpts(Addr),
		TemperatureOversampling: 1,
		PressureOversampling:    1,
		HumidityOversampling:    1,
	}
}

// osrs maps an oversampling factor to its register code (table 20, 23, 24).
var osrs = map[int]byte{1: 1, 2: 2, 4: 3, 8: 4, 16: 5}

// filters maps an IIR coefficient to its register code (table 28).
var filters = map[int]byte{0: 0, 2: 1, 4: 2, 8: 3, 16: 4}

// Validate checks the options; errors are *sensors.FieldError naming the key.
func (o *Opts) Validate() error {
	if err := o.Opts.Validate(); err != nil {
		return err
	}
	if o.Address != Addr && o.Address != AltAddr {
		return sensors.FieldErrorf("address", "%#x is not a BME280 address (0x76 or 0x77)", o.Address)
	}
	for _, f := range []struct {
		key string
		v   int
	}{
		{"temperature_oversampling", o.TemperatureOversampling},
		{"pressure_oversampling", o.PressureOversampling},
		{"humidity_oversampling", o.HumidityOversampling},
	} {
		if _, ok := osrs[f.v]; !ok {
			return sensors.FieldErrorf(f.key, "%d is not one of 1, 2, 4, 8, 16", f.v)
		}
	}
	if _, ok := filters[o.IIRFilter]; !ok {
		return sensors.FieldErrorf("iir_filter", "%d is not one of 0 (off), 2, 4, 8, 16", o.IIRFilter)
	}
	return nil
}

// Quantities lists what the sensor measures, in the order Sense fills dst.
func (o *Opts) Quantities() []sensors.Quantity {
	return []sensors.Quantity{sensors.Temperature, sensors.Humidity, sensors.Pressure}
}

// MeasureTime is the maximum measurement time of datasheet 9.1 for the
// given oversampling factors: 1.25 + 2.3*t + (2.3*p + 0.575) +
// (2.3*h + 0.575) ms.
func MeasureTime(t, p, h int) time.Duration {
	us := 1250 + 2300*t + 2300*p + 575 + 2300*h + 575
	return time.Duration(us) * time.Microsecond
}

// Errors callers may branch on; each is returned wrapped with the device.
var (
	// ErrChipID: the device at the address is not a BME280.
	ErrChipID = errors.New("bme280: wrong chip id")
	// ErrCalibration: the trimming parameters read back as zero, which no
	// factory-trimmed sensor has (a floating or shorted bus).
	ErrCalibration = errors.New("bme280: invalid calibration data")
	// ErrBusy: the measurement was still running after the datasheet's
	// maximum time.
	ErrBusy = errors.New("bme280: still measuring")
	// ErrReset: the sensor's settings were lost (a supply glitch reset
	// it); the next Sense sets it up again.
	ErrReset = errors.New("bme280: sensor was reset")
	// ErrNoData: a result register holds its "skipped" value 0x80000 (or
	// 0x8000 for humidity), so no measurement was made.
	ErrNoData = errors.New("bme280: no measurement data")
	// ErrRange: a compensated value outside the sensor's operating range
	// (-40..85 °C, 300..1100 hPa).
	ErrRange = errors.New("bme280: value out of range")
)

// Dev is one BME280. Like every sensors.Sensor it is not safe for
// concurrent use; the shared bus is.
type Dev struct {
	dev    i2c.Dev
	name   string
	w      *sensors.Waiter
	wait   time.Duration
	setup  [6]byte // ctrl_hum, config, ctrl_meas in sleep mode (5.4.3: ctrl_meas last)
	forced [2]byte
	reg    [1]byte
	buf    [26]byte
	ctrlHm byte
	config byte
	meas   byte // ctrl_meas without the mode bits
	cal    Calibration
	ready  bool
	q      []sensors.Quantity
}

var _ sensors.Sensor = (*Dev)(nil)

// New returns the BME280 at opts.Address on bus. It sends nothing: the
// first Sense checks the chip id, reads the calibration and writes the
// settings, so a sensor that is unplugged at start-up is reported by the
// poller like any failing sensor. clock times the measurement wait (nil
// means the system clock).
func New(bus i2c.Bus, clock sensors.Clock, opts Opts) (*Dev, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("bme280: %w", err)
	}
	d := &Dev{
		dev:    i2c.Dev{Bus: bus, Addr: opts.Address},
		name:   fmt.Sprintf("bme280(%s, %#x)", bus, opts.Address),
		w:      sensors.NewWaiter(clock),
		wait:   MeasureTime(opts.TemperatureOversampling, opts.PressureOversampling, opts.HumidityOversampling),
		ctrlHm: osrs[opts.HumidityOversampling],
		config: filters[opts.IIRFilter] << 2, // t_sb 0: unused in forced mode
		meas:   osrs[opts.TemperatureOversampling]<<5 | osrs[opts.PressureOversampling]<<2,
		q:      opts.Quantities(),
	}
	d.setup = [6]byte{regCtrlHum, d.ctrlHm, regConfig, d.config, regCtrlMeas, d.meas | modeSleep}
	d.forced = [2]byte{regCtrlMeas, d.meas | modeForced}
	return d, nil
}

// String names the device and where it sits, e.g. "bme280(i2c 1, 0x76)".
func (d *Dev) String() string { return d.name }

// Quantities returns temperature, humidity and pressure.
func (d *Dev) Quantities() []sensors.Quantity { return d.q }

// Sense sets the sensor up if needed, starts a forced measurement (3.3.3),
// waits the maximum measurement time and reads ctrl_hum through the last
// data register in one burst (4: the burst read keeps the data of one
// measurement together). The read-back settings reveal a sensor that was
// reset since it was set up. It writes temperature (°C) into dst[0],
// relative humidity (%) into dst[1] and pressure (Pa) into dst[2], and
// does not allocate unless it fails.
func (d *Dev) Sense(ctx context.Context, dst []float64) error {
	if len(dst) < 3 {
		return fmt.Errorf("bme280: %s: dst has %d elements, want 3", d.name, len(dst))
	}
	if !d.ready {
		if err := d.init(); err != nil {
			return err
		}
	}
	if err := d.dev.Tx(d.forced[:], nil); err != nil {
		return fmt.Errorf("bme280: %s: start forced measurement: %w", d.name, err)
	}
	if err := d.w.Wait(ctx, d.wait); err != nil {
		return fmt.Errorf("bme280: %s: waiting for measurement: %w", d.name, err)
	}
	d.reg[0] = regCtrlHum
	b := d.buf[:13] // 0xF2..0xFE
	if err := d.dev.Tx(d.reg[:], b); err != nil {
		return fmt.Errorf("bme280: %s: read measurement: %w", d.name, err)
	}
	ctrlHum, status, ctrlMeas, config := b[0], b[1], b[2], b[3]
	if ctrlHum&0x07 != d.ctrlHm || ctrlMeas&^0x03 != d.meas || config&^0x03 != d.config {
		d.ready = false
		return fmt.Errorf("%w: %s: ctrl_hum %#02x, ctrl_meas %#02x, config %#02x", ErrReset, d.name, ctrlHum, ctrlMeas, config)
	}
	if status&statusMeasuring != 0 || ctrlMeas&0x03 != modeSleep {
		return fmt.Errorf("%w: %s: after %v (status %#02x)", ErrBusy, d.name, d.wait, status)
	}
	// Data registers (5.4.7-5.4.9): 20-bit pressure and temperature with
	// the xlsb in bits 7:4, 16-bit humidity.
	adcP := int32(b[5])<<12 | int32(b[6])<<4 | int32(b[7])>>4
	adcT := int32(b[8])<<12 | int32(b[9])<<4 | int32(b[10])>>4
	adcH := int32(b[11])<<8 | int32(b[12])
	if adcT == 0x80000 || adcP == 0x80000 || adcH == 0x8000 {
		return fmt.Errorf("%w: %s: raw % x", ErrNoData, d.name, b[5:13])
	}
	t, p, h := d.cal.Compensate(adcT, adcP, adcH)
	if t < -40 || t > 85 || p < 30000 || p > 110000 {
		return fmt.Errorf("%w: %s: %.2f °C, %.2f Pa", ErrRange, d.name, t, p)
	}
	dst[0], dst[1], dst[2] = t, h, p
	return nil
}

// init checks the chip id, reads the trimming parameters (4.2.2) and
// writes the settings in sleep mode, ctrl_meas last so that ctrl_hum takes
// effect (5.4.3). Register writes are address/value pairs in one
// transaction (6.2.1).
func (d *Dev) init() error {
	d.reg[0] = regChipID
	if err := d.dev.Tx(d.reg[:], d.buf[:1]); err != nil {
		return fmt.Errorf("bme280: %s: read chip id: %w", d.name, err)
	}
	switch id := d.buf[0]; id {
	case chipID:
	case 0x56, 0x57, 0x58:
		return fmt.Errorf("%w: %s: %#02x is a BMP280, which has no humidity sensor", ErrChipID, d.name, id)
	default:
		return fmt.Errorf("%w: %s: %#02x, want %#02x", ErrChipID, d.name, id, chipID)
	}
	var tph [26]byte
	var h [7]byte
	d.reg[0] = regCalib00
	if err := d.dev.Tx(d.reg[:], tph[:]); err != nil {
		return fmt.Errorf("bme280: %s: read calibration 0x88: %w", d.name, err)
	}
	d.reg[0] = regCalib26
	if err := d.dev.Tx(d.reg[:], h[:]); err != nil {
		return fmt.Errorf("bme280: %s: read calibration 0xe1: %w", d.name, err)
	}
	cal, err := ParseCalibration(tph, h)
	if err != nil {
		return fmt.Errorf("%w: %s", err, d.name)
	}
	if err := d.dev.Tx(d.setup[:], nil); err != nil {
		return fmt.Errorf("bme280: %s: write settings: %w", d.name, err)
	}
	d.cal, d.ready = cal, true
	return nil
}

// Halt sends nothing: after a forced measurement the sensor is back in
// sleep mode by itself (3.3.3), and the bus is not the device's to close.
// It releases the wait timer; Sense may still be called afterwards.
func (d *Dev) Halt() error {
	d.w.Stop()
	return nil
}

// Calibration holds the trimming parameters of datasheet 4.2.2, table 16.
type Calibration struct {
	T1                             uint16
	T2, T3                         int16
	P1                             uint16
	P2, P3, P4, P5, P6, P7, P8, P9 int16
	H1                             uint8
	H2                             int16
	H3                             uint8
	H4, H5                         int16 // 12-bit signed
	H6                             int8
}

// ParseCalibration decodes registers 0x88..0xA1 (tph) and 0xE1..0xE7 (h):
// little-endian words, except dig_H4 and dig_H5, which share 0xE5 as
// 12-bit values (table 16).
func ParseCalibration(tph [26]byte, h [7]byte) (Calibration, error) {
	u := func(i int) uint16 { return uint16(tph[i]) | uint16(tph[i+1])<<8 }
	s := func(i int) int16 { return int16(u(i)) }
	c := Calibration{
		T1: u(0), T2: s(2), T3: s(4),
		P1: u(6), P2: s(8), P3: s(10), P4: s(12), P5: s(14), P6: s(16), P7: s(18), P8: s(20), P9: s(22),
		H1: tph[25],
		H2: int16(uint16(h[0]) | uint16(h[1])<<8),
		H3: h[2],
		H4: int16(int8(h[3]))<<4 | int16(h[4]&0x0F),
		H5: int16(int8(h[5]))<<4 | int16(h[4]>>4),
		H6: int8(h[6]),
	}
	if c.T1 == 0 || c.P1 == 0 {
		return c, fmt.Errorf("%w: dig_T1 %d, dig_P1 %d", ErrCalibration, c.T1, c.P1)
	}
	return c, nil
}

// Compensate converts raw readings to °C, Pa and %RH with the integer
// formulas of datasheet 4.2.3: temperature in 0.01 °C, pressure in Q24.8
// Pa (the 64-bit version) and humidity in Q22.10 %RH.
func (c *Calibration) Compensate(adcT, adcP, adcH int32) (celsius, pascal, rh float64) {
	tFine, t := c.temperature(adcT)
	return float64(t) / 100, float64(c.pressure(adcP, tFine)) / 256, float64(c.humidity(adcH, tFine)) / 1024
}

// The formulas below keep the datasheet's C grouping with explicit
// parentheses: Go gives shifts the precedence of multiplication, C puts
// them below addition.

func (c *Calibration) temperature(adc int32) (tFine, centi int32) {
	t1 := int32(c.T1)
	var1 := (((adc >> 3) - (t1 << 1)) * int32(c.T2)) >> 11
	var2 := (((((adc >> 4) - t1) * ((adc >> 4) - t1)) >> 12) * int32(c.T3)) >> 14
	tFine = var1 + var2
	return tFine, (tFine*5 + 128) >> 8
}

func (c *Calibration) pressure(adc, tFine int32) uint32 {
	var1 := int64(tFine) - 128000
	var2 := var1 * var1 * int64(c.P6)
	var2 += (var1 * int64(c.P5)) << 17
	var2 += int64(c.P4) << 35
	var1 = ((var1 * var1 * int64(c.P3)) >> 8) + ((var1 * int64(c.P2)) << 12)
	var1 = (((int64(1) << 47) + var1) * int64(c.P1)) >> 33
	if var1 == 0 {
		return 0 // the datasheet's guard against division by zero
	}
	p := int64(1048576 - adc)
	p = (((p << 31) - var2) * 3125) / var1
	var1 = (int64(c.P9) * (p >> 13) * (p >> 13)) >> 25
	var2 = (int64(c.P8) * p) >> 19
	p = ((p + var1 + var2) >> 8) + (int64(c.P7) << 4)
	return uint32(p)
}

func (c *Calibration) humidity(adc, tFine int32) uint32 {
	v := tFine - 76800
	left := ((adc << 14) - (int32(c.H4) << 20) - (int32(c.H5) * v) + 16384) >> 15
	inner := (((v * int32(c.H6)) >> 10) * (((v * int32(c.H3)) >> 11) + 32768)) >> 10
	right := ((inner+2097152)*int32(c.H2) + 8192) >> 14
	v = left * right
	v -= ((((v >> 15) * (v >> 15)) >> 7) * int32(c.H1)) >> 4
	v = min(max(v, 0), 419430400)
	return uint32(v >> 12)
}
