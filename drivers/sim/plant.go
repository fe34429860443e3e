package sim

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/edged/edged/sensors"
)

// Sharer hands out resources shared by name between devices, opening each
// the first time it is asked for. drivers.Env implements it; sim does not
// import drivers so that drivers can import sim.
type Sharer interface {
	Shared(key string, open func() (any, error)) (any, error)
}

// PlantKey is the Sharer key of the plant with the given name.
func PlantKey(name string) string { return "sim/plant/" + name }

// maxPending bounds the queue of heater commands in flight through the
// dead time. Commands closer together than DeadTime/coalesceDiv are merged,
// so the queue never needs more than coalesceDiv+1 entries.
const (
	maxPending  = 1024
	coalesceDiv = 512
)

// change is a heater power that reaches the plant at a given time.
type change struct {
	at    time.Time
	power float64
}

// plant is a thermal plant shared by the climate sensors and heaters that
// name it. All of its state is behind mu: the Poller's goroutine reads it
// while a control loop's goroutine drives the heater.
//
// The model is two first-order stages in series. The heater element h
// follows the commanded power u (after the dead time) with time constant
// HeaterLag, and the temperature T follows Ambient + HeaterGain*h with time
// constant Tau. Between two events u is constant, so both stages have an
// exact closed-form step: the result does not depend on how often the plant
// is stepped.
type plant struct {
	name string
	clk  sensors.Clock

	mu         sync.Mutex
	params     PlantParams
	configured bool // a climate sensor has set params at least once
	claims     int  // open climate sensors that rely on params

	last    time.Time // time the state below is valid for
	temp    float64   // °C
	heat    float64   // heater element output, 0..1
	applied float64   // heater power that has passed the dead time

	pending []change // commands still inside the dead time, oldest first
	head    int      // pending[:head] have been applied
	levels  []float64
}

func newPlant(clk sensors.Clock, name string) *plant {
	d := DefaultClimateOpts()
	return &plant{
		name:    name,
		clk:     clk,
		params:  d.PlantParams,
		last:    clk.Now(),
		temp:    d.Ambient,
		pending: make([]change, 0, maxPending),
	}
}

// openPlant returns the plant called name, creating it with the default
// physics if no device has named it yet.
func openPlant(clk sensors.Clock, s Sharer, name string) (*plant, error) {
	if clk == nil || s == nil {
		return nil, fmt.Errorf("sim: plant %q: no clock or sharer (use drivers.NewEnv)", name)
	}
	v, err := s.Shared(PlantKey(name), func() (any, error) { return newPlant(clk, name), nil })
	if err != nil {
		return nil, fmt.Errorf("sim: plant %q: %w", name, err)
	}
	p, ok := v.(*plant)
	if !ok {
		return nil, fmt.Errorf("sim: shared key %q holds a %T, not a plant", PlantKey(name), v)
	}
	return p, nil
}

// claim sets the plant's physics for a climate sensor. The first claim
// since the plant was created also puts it at rest at the new ambient
// temperature; later claims must agree with the physics already set, so
// two sensors in one plant cannot silently disagree.
func (p *plant) claim(params PlantParams) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stepLocked(p.clk.Now())
	if p.claims > 0 && p.params != params {
		return fmt.Errorf("sim: plant %q: another sim_climate already set different physics (%+v, this one wants %+v): give both the same parameters or use two plants", p.name, p.params, params)
	}
	p.params = params
	if !p.configured {
		p.temp = params.Ambient
		p.configured = true
	}
	p.claims++
	return nil
}

// release drops a climate sensor's claim, so that a reloaded config may
// change the physics.
func (p *plant) release() {
	p.mu.Lock()
	p.claims--
	p.mu.Unlock()
}

// attach adds a heater to the plant, off, and returns its slot.
func (p *plant) attach() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.levels = append(p.levels, 0)
	return len(p.levels) - 1
}

// setPower sets one heater's power (0..1). The plant's
// input is the sum of its heaters, capped at full power.
func (p *plant) setPower(slot int, power float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clk.Now()
	p.stepLocked(now)
	p.levels[slot] = power
	u := 0.0
	for _, l := range p.levels {
		u += l
	}
	u = min(u, 1)
	if p.params.DeadTime <= 0 {
		p.applied = u
		return
	}
	p.push(change{at: now.Add(p.params.DeadTime), power: u})
}

// power returns one heater's power.
func (p *plant) power(slot int) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.levels[slot]
}

// push queues a command without ever growing pending: commands closer
// together than DeadTime/coalesceDiv merge into the newer power.
func (p *plant) push(c change) {
	if n := len(p.pending); n > p.head {
		if c.at.Sub(p.pending[n-1].at) < p.params.DeadTime/coalesceDiv {
			p.pending[n-1].power = c.power
			return
		}
	}
	if len(p.pending) == cap(p.pending) {
		p.compact()
		if len(p.pending) == cap(p.pending) {
			p.pending[len(p.pending)-1].power = c.power
			return
		}
	}
	p.pending = append(p.pending, c)
}

func (p *plant) compact() {
	n := copy(p.pending, p.pending[p.head:])
	p.pending = p.pending[:n]
	p.head = 0
}

// read steps the plant to now and returns temperature and humidity.
func (p *plant) read() (temp, rh float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stepLocked(p.clk.Now())
	return p.temp, p.humidityLocked()
}

// humidityLocked holds the air's water content fixed at BaseHumidity at
// Ambient, so RH = base * es(Ambient) / es(T) with the Magnus formula for
// the saturation vapour pressure es.
func (p *plant) humidityLocked() float64 {
	rh := p.params.BaseHumidity * saturation(p.params.Ambient) / saturation(p.temp)
	return max(0, min(100, rh))
}

// saturation is the Magnus approximation of the saturation vapour pressure
// over water (hPa), good to 0.1% between -45 and 60 °C.
func saturation(t float64) float64 {
	return 6.112 * math.Exp(17.62*t/(243.12+t))
}

// maxStep returns the longest step the plant integrates at once. After
// 50 time constants the plant is at its steady state to within 1e-21, so a
// clock jump beyond it (NTP fixing a Pi's clock by years) is cut to it.
func (p *plant) maxStep() time.Duration {
	return 50 * max(p.params.Tau, p.params.HeaterLag)
}

// stepLocked advances the state to now, applying the commands whose dead
// time has passed at the moment they arrive.
func (p *plant) stepLocked(now time.Time) {
	dt := now.Sub(p.last)
	if dt < 0 {
		// The clock went back. Keep the commands in flight the same
		// distance ahead instead of holding them until it catches up.
		for i := p.head; i < len(p.pending); i++ {
			p.pending[i].at = p.pending[i].at.Add(dt)
		}
		p.last = now
		return
	}
	if m := p.maxStep(); dt > m {
		p.last = now.Add(-m)
	}
	for p.head < len(p.pending) && !p.pending[p.head].at.After(now) {
		c := p.pending[p.head]
		if c.at.After(p.last) {
			p.advance(c.at.Sub(p.last).Seconds())
			p.last = c.at
		}
		p.applied = c.power
		p.head++
	}
	if p.head == len(p.pending) {
		p.pending, p.head = p.pending[:0], 0
	}
	p.advance(now.Sub(p.last).Seconds())
	p.last = now
}

// advance integrates t seconds at constant input with the exact solution
// of the two linear stages:
//
//	h(t) = u + (h0-u)·e^(-bt)
//	T(t) = T* + (T0-T*)·e^(-at) + a·g·(h0-u)·(e^(-bt) - e^(-at))/(a-b)
//
// with a = 1/Tau, b = 1/HeaterLag, T* = Ambient + g·u. The last fraction is
// written as e^(-mt)·t·(1-e^(-(M-m)t))/((M-m)t), m = min(a,b), M = max(a,b),
// which neither cancels when a ≈ b nor overflows for any t.
func (p *plant) advance(t float64) {
	if t <= 0 {
		return
	}
	u := p.applied
	g := p.params.HeaterGain
	a := 1 / p.params.Tau.Seconds()
	target := p.params.Ambient + g*u
	e := p.temp - target
	if p.params.HeaterLag <= 0 {
		p.heat = u
		p.temp = target + e*math.Exp(-a*t)
		return
	}
	b := 1 / p.params.HeaterLag.Seconds()
	d := p.heat - u
	lo, hi := min(a, b), max(a, b)
	x := (hi - lo) * t
	phi := 1.0
	if x > 0 {
		phi = -math.Expm1(-x) / x
	}
	coupling := math.Exp(-lo*t) * t * phi
	p.temp = target + e*math.Exp(-a*t) + a*g*d*coupling
	p.heat = u + d*math.Exp(-b*t)
}
