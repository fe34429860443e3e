// Package drivertest is the conformance suite for sensors.Sensor drivers:
// Run checks, for every I2C driver, the properties that the sensors.Sensor
// contract and edged's driver conventions promise (canonical values,
// stable quantities, errors that name the device and wrap the bus error,
// waits that honour their context, an allocation-free steady path, exact
// Halt traffic); RunSysfs does the same for sysfs drivers on a fake tree,
// and RunOpts runs a driver's options table.
//
// It owns only those shared properties. Datasheet worked examples, CRC
// cases, option tables and auto-ranging stay in each driver's own tests.
// It is imported by _test.go files only; production code must not use it.
package drivertest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/drivers/i2cbus/i2cbustest"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

// Case describes one driver configuration and the traffic of one good
// reading, exactly as the device exchanges it.
type Case struct {
	// Name is the driver's package name, which every error starts with
	// ("sht3x: ...") and String by default.
	Name string
	// New opens the driver on bus with clock. bus is named "i2c "+Bus.
	New func(bus i2c.Bus, clock sensors.Clock) (sensors.Sensor, error)
	// Opts, when set, are the options New opens the device with. The
	// registry reads their bus, address and quantities before it opens
	// anything, so they must match the Case's and the device's.
	Opts Opts
	// Bus is the bus name (default "1"); Addr the device address.
	Bus  string
	Addr uint16
	// String is the expected String(); empty means Name(i2c Bus, Addr),
	// e.g. "sht3x(i2c 1, 0x44)".
	String string

	// First is the traffic of the first reading, which may set the device
	// up (nil means Good); Good is the traffic of every later, steady
	// reading. Both give Want.
	First, Good []i2ctest.IO
	// Want is what a good reading writes into dst, in canonical units,
	// within Tolerance (0 means 1e-9), or exactly if Exact is set.
	Want      []float64
	Tolerance float64
	Exact     bool
	// Quantities, when set, is what Quantities must return.
	Quantities []sensors.Quantity
	// Waits and FirstWaits, when non-nil, are the conversion waits of one
	// steady reading (Good) and of the first reading, in order.
	Waits, FirstWaits []time.Duration

	// WakeUp says the first transaction of a reading (of First, which is
	// Good when First is nil, here and below) wakes the device, and Sense
	// ignores its failure by design (the AM2320's wake-up write, which a
	// sleeping sensor NACKs). Every other failing transaction must fail
	// the reading.
	WakeUp bool

	// PowerDown is what Sense sends after a failure (a failing
	// transaction or a cancelled wait) once the reading's first
	// transaction, its power-up, went through, e.g. the TSL2561's
	// power-down, which also ends Good. A failure within that final
	// PowerDown is not followed by another. Without PowerDown a failed
	// Sense stops at once.
	PowerDown []i2ctest.IO

	// FailSays, when set, holds for each transaction of First a
	// phrase the error must contain when that transaction fails ("read
	// measurement"), so the log says which step broke; HaltFailSays is the
	// same for Halt on a dead bus.
	FailSays     []string
	HaltFailSays string

	// Halt is the exact traffic of Halt after a good reading.
	Halt []i2ctest.IO
	// HaltTwice says a second Halt is safe: it returns nil and sends
	// nothing.
	HaltTwice bool
	// AfterHalt, when non-nil, is the traffic of a good reading taken after
	// Halt (a driver whose device survives Halt); nil means Sense after
	// Halt is not part of the driver's promise.
	AfterHalt []i2ctest.IO
}

// Opts is what the registry asks of an I2C driver's options.
type Opts interface {
	I2CAddr() (bus string, addr uint16)
	Quantities() []sensors.Quantity
}

const (
	// sentinel fills dst before a Sense that must fail, to show that a
	// failed reading writes nothing.
	sentinel = -123456.25
	// hang is how long, in real time, a Sense may block on a cancelled
	// context before the suite calls it hung and releases it.
	hang = 5 * time.Second
)

// Run runs the conformance suite for c as subtests of t.
func Run(t *testing.T, c Case) {
	t.Helper()
	if c.Bus == "" {
		c.Bus = "1"
	}
	if c.String == "" {
		c.String = fmt.Sprintf("%s(i2c %s, %#x)", c.Name, c.Bus, c.Addr)
	}
	if c.Tolerance == 0 {
		c.Tolerance = 1e-9
	}
	if len(c.Good) == 0 || len(c.Want) == 0 || c.New == nil || c.Name == "" {
		t.Fatal("drivertest: a Case needs Name, New, Good and Want")
	}
	if len(c.FailSays) > len(c.first()) {
		t.Fatal("drivertest: FailSays has more phrases than First has transactions")
	}
	t.Run("GoodReading", func(t *testing.T) { goodReading(t, c) })
	t.Run("Quantities", func(t *testing.T) { quantities(t, c) })
	t.Run("String", func(t *testing.T) { str(t, c) })
	t.Run("ShortDst", func(t *testing.T) { shortDst(t, c) })
	t.Run("BusFails", func(t *testing.T) { busFails(t, c) })
	t.Run("TxFails", func(t *testing.T) { txFails(t, c) })
	t.Run("ContextCancelled", func(t *testing.T) { cancelled(t, c) })
	t.Run("NoAllocs", func(t *testing.T) { noAllocs(t, c) })
	t.Run("Halt", func(t *testing.T) { halt(t, c) })
	t.Run("HaltUnused", func(t *testing.T) { haltUnused(t, c) })
	t.Run("HaltFails", func(t *testing.T) { haltFails(t, c) })
}

func open(t *testing.T, c Case, b i2c.Bus, clock sensors.Clock) sensors.Sensor {
	t.Helper()
	d, err := c.New(i2cbus.NewBus(c.Bus, b), clock)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if d == nil {
		t.Fatal("New returned a nil sensor and no error")
	}
	return d
}

// sense calls Sense and turns a panic into a test failure.
func sense(t *testing.T, d sensors.Sensor, ctx context.Context, dst []float64) (err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("Sense(len(dst) = %d) panicked: %v", len(dst), p)
		}
	}()
	return d.Sense(ctx, dst)
}

func (c Case) checkValues(t *testing.T, what string, got []float64) {
	t.Helper()
	for i, w := range c.Want {
		if c.Exact && got[i] != w || math.IsNaN(got[i]) || math.Abs(got[i]-w) > c.Tolerance {
			t.Errorf("%s: dst = %v, want %v (±%g)", what, got, c.Want, c.Tolerance)
			return
		}
	}
}

func filled(n int) []float64 {
	dst := make([]float64, n)
	for i := range dst {
		dst[i] = sentinel
	}
	return dst
}

func untouched(dst []float64) bool {
	for _, v := range dst {
		if v != sentinel {
			return false
		}
	}
	return true
}

// checkErr checks that a failed Sense names the device (driver, bus and
// address, as String does) and starts with the driver's package prefix.
func (c Case) checkErr(t *testing.T, what string, err error, dst []float64) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: Sense succeeded", what)
		return
	}
	if msg := err.Error(); !strings.HasPrefix(msg, c.Name+": ") || !strings.Contains(msg, c.String) {
		t.Errorf("%s: error %q does not start with %q and name the device %q", what, msg, c.Name+":", c.String)
	}
	if !untouched(dst) {
		t.Errorf("%s: a failed Sense wrote dst = %v", what, dst)
	}
}

// goodReading: the first reading sends First, a second one Good, and
// both give Want; the steady reading waits as the Case says.
func goodReading(t *testing.T, c Case) {
	b := i2cbustest.NewBus(c.first(), c.Good)
	clk := sensorstest.NewInstantClock()
	clk.RecordWaits()
	d := open(t, c, b, clk)
	if b.Calls() != 0 {
		t.Errorf("New sent %d transactions; the first Sense is the presence check", b.Calls())
	}
	if len(d.Quantities()) != len(c.Want) {
		t.Fatalf("Quantities() = %v, but the Case wants %d values", d.Quantities(), len(c.Want))
	}
	dst := filled(len(c.Want))
	if err := sense(t, d, context.Background(), dst); err != nil {
		t.Fatalf("first Sense: %v (bus: %v)", err, b.Check())
	}
	c.checkValues(t, "first reading", dst)
	if waits := clk.TakeWaits(); c.FirstWaits != nil && !slices.Equal(waits, c.FirstWaits) {
		t.Errorf("the first reading waited %v, want %v", waits, c.FirstWaits)
	}
	dst = filled(len(c.Want))
	if err := sense(t, d, context.Background(), dst); err != nil {
		t.Fatalf("second Sense: %v (bus: %v)", err, b.Check())
	}
	c.checkValues(t, "second reading", dst)
	if err := b.Check(); err != nil {
		t.Error(err)
	}
	if waits := clk.TakeWaits(); c.Waits != nil && !slices.Equal(waits, c.Waits) {
		t.Errorf("a steady reading waited %v, want %v", waits, c.Waits)
	}
}

// quantities: valid, as declared, one per value, and unchanged by use.
func quantities(t *testing.T, c Case) {
	d := open(t, c, i2cbustest.NewBus(c.first()), sensorstest.NewInstantClock())
	q := slices.Clone(d.Quantities())
	if len(q) != len(c.Want) {
		t.Fatalf("Quantities() = %v, want %d of them", q, len(c.Want))
	}
	for _, x := range q {
		if !x.Valid() {
			t.Errorf("Quantities() = %v holds an invalid quantity", q)
		}
	}
	if c.Quantities != nil && !slices.Equal(q, c.Quantities) {
		t.Errorf("Quantities() = %v, want %v", q, c.Quantities)
	}
	if err := sense(t, d, context.Background(), make([]float64, len(q))); err != nil {
		t.Fatal(err)
	}
	if got := d.Quantities(); !slices.Equal(got, q) {
		t.Errorf("Quantities() changed from %v to %v across a reading", q, got)
	}
	if got := d.Quantities(); !slices.Equal(got, q) {
		t.Errorf("Quantities() changed from %v to %v between calls", q, got)
	}
	if c.Opts != nil {
		if got := c.Opts.Quantities(); !slices.Equal(got, q) {
			t.Errorf("the options list %v, the device %v", got, q)
		}
		if bus, addr := c.Opts.I2CAddr(); bus != c.Bus || addr != c.Addr {
			t.Errorf("the options' I2CAddr() = %q, %#x; want %q, %#x", bus, addr, c.Bus, c.Addr)
		}
	}
}

// Benchmark measures a steady reading of c (Good on a looping bus, after
// the first reading) and reports its allocations.
func Benchmark(b *testing.B, c Case) {
	bus := i2cbustest.NewBus(c.first())
	d, err := c.New(i2cbus.NewBus(cmp.Or(c.Bus, "1"), bus), sensorstest.NewInstantClock())
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]float64, len(c.Want))
	ctx := context.Background()
	if err := d.Sense(ctx, dst); err != nil {
		b.Fatal(err)
	}
	bus.Reset(c.Good)
	bus.Loop = true
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Sense(ctx, dst); err != nil {
			b.Fatal(err)
		}
	}
}

func str(t *testing.T, c Case) {
	b := i2cbustest.NewBus()
	d := open(t, c, b, sensorstest.NewInstantClock())
	if got := d.String(); got != c.String {
		t.Errorf("String() = %q, want %q", got, c.String)
	}
	if b.Calls() != 0 {
		t.Errorf("String sent %d transactions", b.Calls())
	}
}

// shortDst: a dst shorter than Quantities is an error, sends nothing and
// does not panic.
func shortDst(t *testing.T, c Case) {
	for n := range len(c.Want) {
		b := i2cbustest.NewBus(c.first())
		d := open(t, c, b, sensorstest.NewInstantClock())
		dst := filled(n)
		err := sense(t, d, context.Background(), dst)
		if err == nil {
			t.Errorf("Sense accepted a %d-element dst (want %d)", n, len(c.Want))
			continue
		}
		c.checkErr(t, fmt.Sprintf("%d-element dst", n), err, dst)
		if b.Calls() != 0 {
			t.Errorf("Sense sent %d transactions for a %d-element dst", b.Calls(), n)
		}
	}
	d := open(t, c, i2cbustest.NewBus(), sensorstest.NewInstantClock())
	if err := sense(t, d, context.Background(), nil); err == nil {
		t.Error("Sense accepted a nil dst")
	}
}

// busFails: with no device on the bus, Sense fails with an error that
// names the device, wraps the bus error and says which step failed, stops
// at the first failure it does not tolerate, and does so again next time.
func busFails(t *testing.T, c Case) {
	fb := i2cbustest.NewDeadBus()
	d := open(t, c, fb, sensorstest.NewInstantClock())
	var lastErr error
	for i := range 2 {
		dst := filled(len(c.Want))
		err := sense(t, d, context.Background(), dst)
		lastErr = err
		c.checkErr(t, fmt.Sprintf("reading %d on a dead bus", i+1), err, dst)
		if !errors.Is(err, i2cbustest.ErrBus) {
			t.Errorf("reading %d on a dead bus: %v does not wrap the bus error", i+1, err)
		}
	}
	// Sense stops at the first transaction it does not tolerate, after
	// its PowerDown (which fails too).
	first := 0
	if c.WakeUp {
		first = 1
	}
	if want := 2 * (first + 1 + len(c.cleanupAfter(first, len(c.first())))); fb.Calls() != want {
		t.Errorf("two readings on a dead bus tried %d transactions, want %d", fb.Calls(), want)
	}
	if first < len(c.FailSays) && lastErr != nil && !strings.Contains(lastErr.Error(), c.FailSays[first]) {
		t.Errorf("dead bus: error %q does not say %q", lastErr, c.FailSays[first])
	}
}

// txFails: each transaction of the first reading in turn fails (a NACK);
// the reading fails with the bus error, names the device and stops
// there (but for its PowerDown), unless the Case says the driver tolerates
// that failure.
func txFails(t *testing.T, c Case) {
	ops := c.first()
	for k := range ops {
		b := i2cbustest.NewBus(ops)
		b.Fail = k
		after := c.cleanupAfter(k, len(ops))
		if !c.tolerated(k) {
			b.Reset(ops[:k+1], after)
		}
		d := open(t, c, b, sensorstest.NewInstantClock())
		dst := filled(len(c.Want))
		err := sense(t, d, context.Background(), dst)
		what := fmt.Sprintf("transaction #%d (%+v) fails", k, ops[k])
		if c.tolerated(k) {
			if err != nil {
				t.Errorf("%s: Sense = %v, want the failure tolerated", what, err)
			}
			c.checkValues(t, what, dst)
			continue
		}
		c.checkErr(t, what, err, dst)
		if !errors.Is(err, i2cbustest.ErrBus) {
			t.Errorf("%s: %v does not wrap the bus error", what, err)
		}
		if k < len(c.FailSays) && err != nil && !strings.Contains(err.Error(), c.FailSays[k]) {
			t.Errorf("%s: error %q does not say %q", what, err, c.FailSays[k])
		}
		if err := b.Check(); err != nil || b.Calls() != k+1+len(after) {
			t.Errorf("%s: after the failure Sense sent %d transactions, want %d (%v): %v", what, b.Calls()-k-1, len(after), after, err)
		}
	}
}

func (c Case) first() []i2ctest.IO {
	if c.First == nil {
		return c.Good
	}
	return c.First
}

// tolerated reports whether Sense ignores a failure of transaction k.
func (c Case) tolerated(k int) bool { return c.WakeUp && k == 0 }

// cleanupAfter returns what Sense sends after transaction k of n fails:
// PowerDown once the power-up (transaction 0) went through, unless the
// failure is within the final PowerDown itself.
func (c Case) cleanupAfter(k, n int) []i2ctest.IO {
	if c.PowerDown == nil || k < 1 || k >= n-len(c.PowerDown) {
		return nil
	}
	return c.PowerDown
}

// cancelled: the context is cancelled during each conversion wait of the
// first reading in turn; Sense returns an error wrapping context.Canceled,
// naming the device, and sends nothing after the cancelled wait but its
// Cleanup.
func cancelled(t *testing.T, c Case) {
	ref := sensorstest.NewInstantClock()
	rd := open(t, c, i2cbustest.NewBus(c.first()), ref)
	if err := sense(t, rd, context.Background(), make([]float64, len(c.Want))); err != nil {
		t.Fatal(err)
	}
	waits, _, _ := ref.Waits()
	if waits == 0 {
		t.Skip("a reading waits for nothing")
	}
	for k := range waits {
		cancelAt(t, c, k)
	}
}

func cancelAt(t *testing.T, c Case, k int) {
	t.Helper()
	b := i2cbustest.NewBus(c.first())
	clk := sensorstest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	d := open(t, c, b, clk)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dst := filled(len(c.Want))
	done := make(chan error, 1)
	go func() { done <- d.Sense(ctx, dst) }()
	// Let k waits end, then cancel during wait k.
	for range k {
		if err := clk.WaitTimers(1, hang); err != nil {
			cancel()
			release(t, clk, done)
			t.Fatalf("wait #%d: %v", k, err)
		}
		next, _ := clk.Next()
		clk.AdvanceTo(next)
	}
	if err := clk.WaitTimers(1, hang); err != nil {
		cancel()
		release(t, clk, done)
		t.Fatalf("wait #%d: %v", k, err)
	}
	sent := b.Calls()
	after := c.cleanupAfter(b.Sent(), len(c.first()))
	b.Reset(after)
	cancel()
	tm := time.NewTimer(hang)
	defer tm.Stop()
	var err error
	select {
	case err = <-done:
	case <-tm.C:
		release(t, clk, done)
		t.Fatalf("cancelled during wait #%d, Sense still blocked after %v: the wait ignores its context", k, hang)
	}
	what := fmt.Sprintf("cancelled during wait #%d", k)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("%s: Sense = %v, want an error wrapping context.Canceled", what, err)
	}
	c.checkErr(t, what, err, dst)
	if err := b.Check(); err != nil || b.Calls() != sent+len(after) {
		t.Errorf("%s: Sense sent %d transactions after the cancelled wait, want %d (%v): %v", what, b.Calls()-sent, len(after), after, err)
	}
}

// release lets a Sense blocked on clk finish, so no goroutine outlives the
// test, by advancing the clock until it returns.
func release(t *testing.T, clk *sensorstest.Clock, done <-chan error) {
	t.Helper()
	for {
		select {
		case <-done:
			return
		default:
		}
		clk.Advance(time.Hour)
		runtime.Gosched()
	}
}

// noAllocs: after the first reading, a steady reading allocates nothing.
func noAllocs(t *testing.T, c Case) {
	b := i2cbustest.NewBus(c.first())
	d := open(t, c, b, sensorstest.NewInstantClock())
	dst := make([]float64, len(c.Want))
	ctx := context.Background()
	if err := sense(t, d, ctx, dst); err != nil {
		t.Fatal(err)
	}
	b.Reset(c.Good)
	b.Loop = true
	var err error
	allocs := testing.AllocsPerRun(100, func() {
		if e := d.Sense(ctx, dst); e != nil && err == nil {
			err = e
		}
	})
	if err != nil {
		t.Fatalf("steady Sense: %v", err)
	}
	if allocs != 0 {
		t.Errorf("Sense allocates %v times per reading, want 0", allocs)
	}
	c.checkValues(t, "steady reading", dst)
}

// haltUnused: a device that never took a reading (another device failed
// at start-up) halts like a used one.
func haltUnused(t *testing.T, c Case) {
	b := i2cbustest.NewBus(c.Halt)
	d := open(t, c, b, sensorstest.NewInstantClock())
	if err := d.Halt(); err != nil {
		t.Fatalf("Halt: %v", err)
	}
	if err := b.Check(); err != nil {
		t.Error(err)
	}
}

// haltFails: a Halt that talks to the device reports a dead bus, naming
// the device and wrapping the bus error; one that does not succeeds.
func haltFails(t *testing.T, c Case) {
	fb := i2cbustest.NewDeadBus()
	d := open(t, c, fb, sensorstest.NewInstantClock())
	err := d.Halt()
	if len(c.Halt) == 0 {
		if err != nil {
			t.Errorf("Halt on a dead bus = %v; it sends nothing, so nothing can fail", err)
		}
		return
	}
	if err == nil {
		t.Fatal("Halt on a dead bus succeeded")
	}
	if msg := err.Error(); !strings.HasPrefix(msg, c.Name+": ") || !strings.Contains(msg, c.String) {
		t.Errorf("Halt error %q does not start with %q and name the device %q", msg, c.Name+":", c.String)
	}
	if !errors.Is(err, i2cbustest.ErrBus) {
		t.Errorf("Halt = %v, does not wrap the bus error", err)
	}
	if !strings.Contains(err.Error(), c.HaltFailSays) {
		t.Errorf("Halt error %q does not say %q", err, c.HaltFailSays)
	}
}

// halt: after a good reading Halt sends exactly Halt; a second Halt (if
// promised) sends nothing; a reading after Halt (if promised) works.
func halt(t *testing.T, c Case) {
	b := i2cbustest.NewBus(c.first())
	d := open(t, c, b, sensorstest.NewInstantClock())
	if err := sense(t, d, context.Background(), make([]float64, len(c.Want))); err != nil {
		t.Fatal(err)
	}
	b.Reset(c.Halt, c.AfterHalt)
	calls := b.Calls()
	if err := d.Halt(); err != nil {
		t.Fatalf("Halt: %v", err)
	}
	if got := b.Sent(); got != len(c.Halt) || b.Calls()-calls != len(c.Halt) {
		t.Errorf("Halt sent %d transactions (%d as expected), want %d: %v", b.Calls()-calls, got, len(c.Halt), b.Check())
	}
	if c.HaltTwice {
		calls := b.Calls()
		if err := d.Halt(); err != nil {
			t.Errorf("second Halt: %v", err)
		}
		if b.Calls() != calls {
			t.Errorf("second Halt sent %d transactions", b.Calls()-calls)
		}
	}
	if c.AfterHalt != nil {
		dst := filled(len(c.Want))
		if err := sense(t, d, context.Background(), dst); err != nil {
			t.Fatalf("Sense after Halt: %v", err)
		}
		c.checkValues(t, "reading after Halt", dst)
	}
	if err := b.Check(); err != nil {
		t.Error(err)
	}
}
