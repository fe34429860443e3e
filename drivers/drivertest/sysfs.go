package drivertest

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/edged/edged/sensors"
)

// SysfsCase describes a sensor that reads kernel sysfs attributes (a
// DS18B20 through w1-gpio, a DHT22 through the IIO dht11 driver) on a fake
// tree, for RunSysfs.
type SysfsCase struct {
	// Name is the driver's package name, which every error starts with;
	// String is the expected String().
	Name, String string
	// Open opens the sensor on a fresh fake sysfs tree that holds one good
	// reading, and returns with it a function that takes the device out
	// of that tree, as unplugging it or unloading its overlay would.
	Open func(t testing.TB) (d sensors.Sensor, unplug func())
	// Want is what a good reading writes into dst, within Tolerance (0
	// means 1e-9), or exactly if Exact is set; Quantities, when set, is
	// what Quantities must return.
	Want       []float64
	Tolerance  float64
	Exact      bool
	Quantities []sensors.Quantity
}

// RunSysfs runs the parts of the conformance suite that a sysfs sensor
// shares with an I2C one: good readings, stable quantities, String, short
// dst, context, steady-path allocations and Halt. It also checks that an
// unplugged device fails its reading with an error that names it, and
// that a cancelled context is honoured before any sysfs I/O (a cancelled
// Sense of an unplugged device still says context.Canceled): the kernel's
// read blocks for the conversion and cannot be interrupted.
func RunSysfs(t *testing.T, sc SysfsCase) {
	t.Helper()
	if sc.Open == nil || sc.Name == "" || sc.String == "" || len(sc.Want) == 0 {
		t.Fatal("drivertest: a SysfsCase needs Name, String, Open and Want")
	}
	c := Case{Name: sc.Name, String: sc.String, Want: sc.Want, Tolerance: sc.Tolerance, Exact: sc.Exact, Quantities: sc.Quantities}
	if c.Tolerance == 0 {
		c.Tolerance = 1e-9
	}
	open := func(t *testing.T) (sensors.Sensor, func()) {
		d, unplug := sc.Open(t)
		t.Cleanup(func() { _ = d.Halt() })
		return d, unplug
	}
	ctx := context.Background()
	t.Run("GoodReading", func(t *testing.T) {
		d, _ := open(t)
		for _, what := range []string{"first reading", "second reading"} {
			dst := filled(len(c.Want))
			if err := sense(t, d, ctx, dst); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			c.checkValues(t, what, dst)
		}
	})
	t.Run("Quantities", func(t *testing.T) {
		d, _ := open(t)
		q := slices.Clone(d.Quantities())
		if len(q) != len(c.Want) || slices.ContainsFunc(q, func(x sensors.Quantity) bool { return !x.Valid() }) {
			t.Fatalf("Quantities() = %v, want %d valid quantities", q, len(c.Want))
		}
		if c.Quantities != nil && !slices.Equal(q, c.Quantities) {
			t.Errorf("Quantities() = %v, want %v", q, c.Quantities)
		}
		if err := sense(t, d, ctx, make([]float64, len(q))); err != nil {
			t.Fatal(err)
		}
		if got := d.Quantities(); !slices.Equal(got, q) {
			t.Errorf("Quantities() changed from %v to %v across a reading", q, got)
		}
	})
	t.Run("String", func(t *testing.T) {
		d, _ := open(t)
		if got := d.String(); got != c.String {
			t.Errorf("String() = %q, want %q", got, c.String)
		}
	})
	t.Run("ShortDst", func(t *testing.T) {
		d, _ := open(t)
		for n := range len(c.Want) {
			dst := filled(n)
			c.checkErr(t, "short dst", sense(t, d, ctx, dst), dst)
		}
		if err := sense(t, d, ctx, nil); err == nil {
			t.Error("Sense accepted a nil dst")
		}
	})
	t.Run("Unplugged", func(t *testing.T) {
		d, unplug := open(t)
		unplug()
		dst := filled(len(c.Want))
		c.checkErr(t, "unplugged", sense(t, d, ctx, dst), dst)
	})
	t.Run("ContextCancelled", func(t *testing.T) {
		d, unplug := open(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		dst := filled(len(c.Want))
		err := sense(t, d, cctx, dst)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Sense = %v, want an error wrapping context.Canceled", err)
		}
		c.checkErr(t, "cancelled", err, dst)
		dst = filled(len(c.Want))
		if err := sense(t, d, ctx, dst); err != nil {
			t.Fatalf("Sense after a cancelled one: %v", err)
		}
		c.checkValues(t, "reading after a cancelled one", dst)
		unplug()
		d2, unplug2 := open(t)
		unplug2()
		if err := sense(t, d2, cctx, filled(len(c.Want))); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled Sense of an unplugged device = %v; it went to sysfs before it checked the context", err)
		}
	})
	t.Run("NoAllocs", func(t *testing.T) {
		d, _ := open(t)
		dst := make([]float64, len(c.Want))
		if err := sense(t, d, ctx, dst); err != nil { // opens the files
			t.Fatal(err)
		}
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
	})
	t.Run("Halt", func(t *testing.T) {
		d, _ := open(t)
		if err := d.Halt(); err != nil {
			t.Fatalf("Halt of an unused sensor: %v", err)
		}
		if err := sense(t, d, ctx, make([]float64, len(c.Want))); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			if err := d.Halt(); err != nil {
				t.Fatalf("Halt #%d: %v", i+1, err)
			}
		}
		dst := filled(len(c.Want))
		if err := sense(t, d, ctx, dst); err != nil {
			t.Fatalf("Sense after Halt: %v", err)
		}
		c.checkValues(t, "reading after Halt", dst)
	})
}

// BenchmarkSysfs measures a steady reading of sc.
func BenchmarkSysfs(b *testing.B, sc SysfsCase) {
	d, _ := sc.Open(b)
	defer d.Halt()
	dst := make([]float64, len(sc.Want))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Sense(ctx, dst); err != nil {
			b.Fatal(err)
		}
	}
}
