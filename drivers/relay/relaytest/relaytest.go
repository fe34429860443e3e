// Package relaytest provides a fake GPIO pin for relay tests. It stands in
// for periph's gpiotest.Pin, which imports github.com/jonboulle/clockwork,
// a module this repository's go.sum does not hold.
package relaytest

import (
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
)

// Pin is a gpio.PinIO that records what is driven on it and counts reads,
// so tests can check that outputs are never read back.
type Pin struct {
	N string

	mu     sync.Mutex
	level  gpio.Level
	outs   []gpio.Level
	reads  int
	outErr error
}

// FailOut makes every following Out return err (nil heals the pin).
func (p *Pin) FailOut(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.outErr = err
}

// Outs returns every level driven successfully, in order.
func (p *Pin) Outs() []gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]gpio.Level(nil), p.outs...)
}

// Electrical returns the level currently on the pin.
func (p *Pin) Electrical() gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.level
}

// Reads returns how many times Read was called.
func (p *Pin) Reads() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reads
}

// String implements conn.Resource.
func (p *Pin) String() string { return p.N }

// Halt implements conn.Resource.
func (p *Pin) Halt() error { return nil }

// Name implements pin.Pin.
func (p *Pin) Name() string { return p.N }

// Number implements pin.Pin.
func (p *Pin) Number() int { return -1 }

// Function implements pin.Pin.
func (p *Pin) Function() string { return "Out" }

// In implements gpio.PinIn.
func (p *Pin) In(gpio.Pull, gpio.Edge) error { return nil }

// Read implements gpio.PinIn and counts the call.
func (p *Pin) Read() gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads++
	return p.level
}

// WaitForEdge implements gpio.PinIn; no edge ever comes.
func (p *Pin) WaitForEdge(time.Duration) bool { return false }

// Pull implements gpio.PinIn.
func (p *Pin) Pull() gpio.Pull { return gpio.PullNoChange }

// DefaultPull implements gpio.PinIn.
func (p *Pin) DefaultPull() gpio.Pull { return gpio.PullNoChange }

// Out implements gpio.PinOut.
func (p *Pin) Out(l gpio.Level) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.outErr != nil {
		return p.outErr
	}
	p.level = l
	p.outs = append(p.outs, l)
	return nil
}

// PWM implements gpio.PinOut; relays do not use it.
func (p *Pin) PWM(gpio.Duty, physic.Frequency) error { return nil }

var _ gpio.PinIO = (*Pin)(nil)
