// Package i2cbustest holds the one scripted fake I2C bus of driver tests.
// Byte-exact traffic that must be used up is replayed with periph's
// i2ctest.Playback; Bus covers what Playback cannot: failing one chosen
// transaction, failing all of them (a dead bus), looping a steady reading,
// and counting every call. The fake clock is sensorstest.Clock.
//
// It is imported by _test.go files only; production code must not use it.
package i2cbustest

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
)

// ErrBus is what a Bus returns for a failing transaction, like a NACK
// from an absent device.
var ErrBus = errors.New("i2cbustest: remote I/O error (NACK)")

// Bus is a scripted i2c.Bus: it expects the transactions of Ops in order,
// fails the one at index Fail (if Fail >= 0) with ErrBus, and with Loop
// starts again at the first op after the last, so a steady loop can run
// for as long as a test needs. A Dead bus fails every transaction with
// ErrBus and expects nothing. Unlike i2ctest.Playback it counts every
// call, matched or not, and keeps the first mismatch for the report.
type Bus struct {
	mu       sync.Mutex
	Ops      []i2ctest.IO
	Fail     int
	Loop     bool
	Dead     bool
	next     int // index of the next expected op
	calls    int
	mismatch error
}

// NewBus returns a Bus that expects ops and fails none.
func NewBus(ops ...[]i2ctest.IO) *Bus {
	return &Bus{Ops: slices.Concat(ops...), Fail: -1}
}

// NewDeadBus returns a Bus on which nothing answers.
func NewDeadBus() *Bus { return &Bus{Fail: -1, Dead: true} }

// Reset replaces the script with ops and expects its first op next, as
// when a test moves a device past its first reading into a steady loop.
func (b *Bus) Reset(ops ...[]i2ctest.IO) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.Ops, b.next = slices.Concat(ops...), 0
}

// String implements i2c.Bus.
func (b *Bus) String() string { return "i2cbustest" }

// SetSpeed implements i2c.Bus.
func (b *Bus) SetSpeed(physic.Frequency) error { return nil }

// Tx implements i2c.Bus.
func (b *Bus) Tx(addr uint16, w, r []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	if b.Dead {
		return ErrBus
	}
	if b.Loop && b.next == len(b.Ops) {
		b.next = 0
	}
	if b.next >= len(b.Ops) {
		return b.mismatchf("unexpected transaction #%d (addr %#x, w % x, %d bytes read) after the script's %d", b.next, addr, w, len(r), len(b.Ops))
	}
	op := b.Ops[b.next]
	if addr != op.Addr || string(w) != string(op.W) || len(r) != len(op.R) {
		return b.mismatchf("transaction #%d is (addr %#x, w % x, %d bytes read), want (addr %#x, w % x, %d bytes read)", b.next, addr, w, len(r), op.Addr, op.W, len(op.R))
	}
	if b.next == b.Fail {
		b.next++
		return ErrBus
	}
	copy(r, op.R)
	b.next++
	return nil
}

func (b *Bus) mismatchf(format string, args ...any) error {
	err := fmt.Errorf("i2cbustest: "+format, args...)
	if b.mismatch == nil {
		b.mismatch = err
	}
	return err
}

// Check reports a mismatch and, unless Loop is set, ops left unsent.
func (b *Bus) Check() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mismatch != nil {
		return b.mismatch
	}
	if !b.Loop && b.next != len(b.Ops) {
		return fmt.Errorf("i2cbustest: %d of %d transactions sent; next expected %+v", b.next, len(b.Ops), b.Ops[b.next])
	}
	return nil
}

// Calls returns how many transactions were attempted.
func (b *Bus) Calls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

// Sent returns how many scripted transactions were matched (failed or
// not): the index of the next expected op.
func (b *Bus) Sent() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.next
}
