package sim

import (
	"context"
	"fmt"

	"github.com/edged/edged/sensors"
)

// Climate is a simulated temperature and humidity sensor inside a plant.
// It owns the plant's physics: the first Climate to open sets them.
type Climate struct {
	plant  *plant
	bias   float64
	name   string
	f      *faulter
	halted bool
}

var _ sensors.Sensor = (*Climate)(nil)

// NewClimate opens a climate sensor in the plant opts.Plant, shared
// through s, and sets the plant's physics. Heaters may have opened the
// plant before: they do not depend on the physics. Opening a second
// Climate with different physics for the same plant is an error.
func NewClimate(clk sensors.Clock, s Sharer, opts ClimateOpts) (*Climate, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("sim: sim_climate: %w", err)
	}
	p, err := openPlant(clk, s, opts.Plant)
	if err != nil {
		return nil, err
	}
	if err := p.claim(opts.PlantParams); err != nil {
		return nil, err
	}
	c := &Climate{plant: p, bias: opts.Bias, name: fmt.Sprintf("sim_climate(plant %s)", opts.Plant)}
	c.f = newFaulter(clk, c.name, opts.Faults)
	return c, nil
}

// String names the device, e.g. "sim_climate(plant greenhouse)".
func (c *Climate) String() string { return c.name }

// Quantities returns temperature and humidity, in that order.
func (c *Climate) Quantities() []sensors.Quantity { return climateQuantities }

// Sense steps the plant to the clock's time and writes its temperature
// (°C, plus the sensor's bias) and relative humidity (%).
func (c *Climate) Sense(ctx context.Context, dst []float64) error {
	if c.halted {
		return ErrHalted
	}
	if len(dst) != 2 {
		return fmt.Errorf("sim: sim_climate: dst has %d elements, want 2", len(dst))
	}
	if err := c.f.before(ctx); err != nil {
		return err
	}
	if c.f.stuck(dst) {
		return nil
	}
	dst[0], dst[1] = c.plant.read()
	dst[0] += c.bias
	c.f.remember(dst)
	return nil
}

// Halt stops the sensor and gives up its hold on the plant's physics, so
// a reloaded config may change them.
func (c *Climate) Halt() error {
	if c.halted {
		return nil
	}
	c.halted = true
	c.f.halt()
	c.plant.release()
	return nil
}
