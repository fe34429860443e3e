package dht22

import (
	"context"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/edged/edged/drivers/drivertest"
	"github.com/edged/edged/sensors"
)

// tree makes a fake sysfs root with one IIO device per entry of devs:
// device directory -> {name, temperature, humidity}, as the kernel's
// dht11 driver lays them out (milli-°C and milli-%RH with a newline).
func tree(t testing.TB, devs map[string][3]string) string {
	t.Helper()
	root := t.TempDir()
	for dev, v := range devs {
		dir := filepath.Join(root, devicesDir, dev)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, f := range []string{"name", tempFile, humidFile} {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(v[i]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func opts(root string, edit func(*Opts)) Opts {
	o := DefaultOpts()
	o.SysfsRoot = root
	if edit != nil {
		edit(&o)
	}
	return o
}

func sense(d *Dev) ([]float64, error) {
	dst := []float64{math.NaN(), math.NaN()}
	err := d.Sense(context.Background(), dst)
	return dst, err
}

func TestOptsValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Opts)
		field string
	}{
		{"default", func(*Opts) {}, ""},
		{"device", func(o *Opts) { o.Device = "iio:device12" }, ""},
		{"name", func(o *Opts) { o.Name = "dht11@4" }, ""},
		{"both", func(o *Opts) { o.Device = "iio:device0"; o.Name = "dht11@4" }, "iio_name"},
		{"path in device", func(o *Opts) { o.Device = "../../etc" }, "device"},
		{"no number", func(o *Opts) { o.Device = "iio:device" }, "device"},
		{"not a number", func(o *Opts) { o.Device = "iio:device0/.." }, "device"},
		{"slash in name", func(o *Opts) { o.Name = "dht11/4" }, "iio_name"},
		{"no root", func(o *Opts) { o.SysfsRoot = "" }, "sysfs_root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOpts()
			tt.edit(&o)
			err := o.Validate()
			var fe *sensors.FieldError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate() = %v", err)
			case tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field):
				t.Fatalf("Validate() = %v, want a FieldError for %q", err, tt.field)
			}
		})
	}
}

func TestSense(t *testing.T) {
	root := tree(t, map[string][3]string{
		"iio:device0": {"mcp3008\n", "1\n", "2\n"}, // another IIO device
		"iio:device1": {"dht11@4\n", "21400\n", "55300\n"},
		"iio:device2": {"dht11@17\n", "-7300\n", "100000\n"},
	})
	tests := []struct {
		name        string
		edit        func(*Opts)
		str         string
		temp, humid float64
	}{
		{"by device", func(o *Opts) { o.Device = "iio:device1" }, "dht22(iio:device1)", 21.4, 55.3},
		{"by name", func(o *Opts) { o.Name = "dht11@17" }, "dht22(dht11@17)", -7.3, 100},
		{"default device", nil, "dht22(iio:device0)", 0.001, 0.002},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(opts(root, tt.edit))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Halt()
			if d.String() != tt.str {
				t.Errorf("String() = %q, want %q", d, tt.str)
			}
			for range 2 { // the second reading reuses the open files
				dst, err := sense(d)
				if err != nil {
					t.Fatal(err)
				}
				if dst[0] != tt.temp || dst[1] != tt.humid {
					t.Errorf("Sense = %v °C, %v %%RH; want %v, %v", dst[0], dst[1], tt.temp, tt.humid)
				}
			}
		})
	}
}

func TestMissingDevice(t *testing.T) {
	root := tree(t, map[string][3]string{"iio:device0": {"mcp3008\n", "1\n", "2\n"}})
	for _, edit := range []func(*Opts){
		func(o *Opts) { o.Device = "iio:device3" },
		func(o *Opts) { o.Name = "dht11@4" },
	} {
		_, err := New(opts(root, edit))
		if !errors.Is(err, ErrNoDevice) || !strings.Contains(err.Error(), "dtoverlay=dht11,gpiopin=4") {
			t.Errorf("New = %v, want ErrNoDevice with the dtoverlay hint", err)
		}
	}
	_, err := New(opts(t.TempDir(), nil))
	if !errors.Is(err, ErrNoDevice) {
		t.Errorf("New without any IIO device = %v", err)
	}
}

// TestDeviceRenumbered: after a read error the device is looked up again
// by name, so a DHT that came back as another iio:deviceN is found.
func TestDeviceRenumbered(t *testing.T) {
	root := tree(t, map[string][3]string{"iio:device0": {"dht11@4\n", "20000\n", "50000\n"}})
	d, err := New(opts(root, func(o *Opts) { o.Name = "dht11@4" }))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Halt()
	if _, err := sense(d); err != nil {
		t.Fatal(err)
	}
	devs := filepath.Join(root, devicesDir)
	if err := os.Rename(filepath.Join(devs, "iio:device0"), filepath.Join(devs, "iio:device1")); err != nil {
		t.Fatal(err)
	}
	// The open files still read (Linux keeps renamed files open), so
	// make them fail as an unbound device's would.
	d.closeFiles()
	if dst, err := sense(d); err != nil || dst[0] != 20 {
		t.Fatalf("Sense after renumbering = %v, %v", dst, err)
	}
	if err := os.RemoveAll(filepath.Join(devs, "iio:device1")); err != nil {
		t.Fatal(err)
	}
	d.closeFiles()
	if _, err := sense(d); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("Sense after the device went = %v, want ErrNoDevice", err)
	}
}

func TestBadValues(t *testing.T) {
	tests := []struct {
		name, temp, humid string
		err               error
	}{
		{"empty", "", "50000\n", ErrFormat},
		{"text", "21.4\n", "50000\n", ErrFormat},
		{"huge", "123456789\n", "50000\n", ErrFormat},
		{"too hot", "80001\n", "50000\n", ErrRange},
		{"too cold", "-40001\n", "50000\n", ErrRange},
		{"humidity above 100", "20000\n", "100001\n", ErrRange},
		{"negative humidity", "20000\n", "-1\n", ErrRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := tree(t, map[string][3]string{"iio:device0": {"dht11@4\n", tt.temp, tt.humid}})
			d, err := New(opts(root, nil))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Halt()
			dst, err := sense(d)
			if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), "dht22(iio:device0)") {
				t.Fatalf("Sense = %v, want %v", err, tt.err)
			}
			if !math.IsNaN(dst[0]) || !math.IsNaN(dst[1]) {
				t.Errorf("Sense wrote %v despite the error", dst)
			}
		})
	}
}

// failing is an attribute file whose reads fail as the kernel's dht11
// driver makes them fail: read(2) returns the errno, which os.File
// reports as a *fs.PathError.
type failing struct {
	path   string
	errno  syscall.Errno
	closed *int
}

func (f failing) ReadAt(p []byte, off int64) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: f.path, Err: f.errno}
}

func (f failing) Close() error { *f.closed++; return nil }

// TestKernelReadErrors: EIO (checksum or bit timing) and ETIMEDOUT (no
// answer) are reported as ErrReadFailed with the errno, close the files,
// and the next Sense opens them again and succeeds.
func TestKernelReadErrors(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EIO, syscall.ETIMEDOUT} {
		t.Run(errno.Error(), func(t *testing.T) {
			root := tree(t, map[string][3]string{"iio:device0": {"dht11@4\n", "21400\n", "55300\n"}})
			fail, closed, opens := true, 0, 0
			open := func(p string) (file, error) {
				opens++
				if fail && strings.HasSuffix(p, humidFile) {
					return failing{p, errno, &closed}, nil
				}
				return os.Open(p)
			}
			d, err := newDev(opts(root, nil), open)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Halt()
			dst, err := sense(d)
			if !errors.Is(err, ErrReadFailed) || !errors.Is(err, errno) || !strings.Contains(err.Error(), humidFile) {
				t.Fatalf("Sense = %v, want ErrReadFailed wrapping %v", err, errno)
			}
			if !math.IsNaN(dst[0]) {
				t.Error("Sense wrote a temperature although the humidity failed")
			}
			if closed != 1 || d.files[0] != nil || d.files[1] != nil {
				t.Fatalf("files not closed after the error (closed %d)", closed)
			}
			fail = false
			if dst, err := sense(d); err != nil || dst[1] != 55.3 {
				t.Fatalf("Sense after the error = %v, %v", dst, err)
			}
			if opens != 4 {
				t.Errorf("%d opens, want 2 per Sense", opens)
			}
		})
	}
}

func TestOpenError(t *testing.T) {
	root := tree(t, map[string][3]string{"iio:device0": {"dht11@4\n", "21400\n", "55300\n"}})
	d, err := newDev(opts(root, nil), func(p string) (file, error) {
		return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EACCES}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sense(d); !errors.Is(err, syscall.EACCES) || errors.Is(err, ErrNoDevice) {
		t.Fatalf("Sense = %v, want EACCES", err)
	}
}

func TestHaltClosesFiles(t *testing.T) {
	root := tree(t, map[string][3]string{"iio:device0": {"dht11@4\n", "21400\n", "55300\n"}})
	d, err := New(opts(root, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sense(d); err != nil {
		t.Fatal(err)
	}
	if err := d.Halt(); err != nil || d.files[0] != nil || d.files[1] != nil {
		t.Fatalf("Halt = %v, files %v", err, d.files)
	}
	if _, err := sense(d); err != nil {
		t.Fatalf("Sense after Halt = %v", err)
	}
	d.Halt()
}

func TestParseMilli(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"21400\n", 21400, true},
		{"-7300\n", -7300, true},
		{"0", 0, true},
		{" 5 \n", 5, true},
		{"9999999", 9999999, true},
		{"10000000", 0, false}, // 8 digits: not a DHT value, and bounded for 32-bit ints
		{"", 0, false},
		{"-", 0, false},
		{"--1", 0, false},
		{"1 2", 0, false},
		{"0x10", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseMilli([]byte(tt.in))
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("parseMilli(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// FuzzOpts checks that any device or name either fails validation or
// stays inside the IIO devices directory.
func FuzzOpts(f *testing.F) {
	for _, s := range []string{"iio:device0", "../x", "iio:device1/../../", "dht11@4", ""} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, dev, name string) {
		o := Opts{Device: dev, Name: name, SysfsRoot: "/r"}
		if o.Validate() != nil {
			return
		}
		if dev != "" {
			p := filepath.Join("/r", devicesDir, dev)
			if filepath.Dir(p) != filepath.Join("/r", devicesDir) {
				t.Fatalf("device %q escapes to %s", dev, p)
			}
		}
		if strings.Contains(name, "/") {
			t.Fatalf("name %q accepted", name)
		}
	})
}

// FuzzParseMilli: never panics, stays within 7 digits, and agrees with
// strconv on everything it accepts.
func FuzzParseMilli(f *testing.F) {
	for _, s := range []string{"21400\n", "-7300\n", "", "9999999", "10000000", "-0"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, ok := parseMilli(b)
		if !ok {
			return
		}
		if v < -9999999 || v > 9999999 {
			t.Fatalf("parseMilli(%q) = %d", b, v)
		}
		if want, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || want != v {
			t.Fatalf("parseMilli(%q) = %d, strconv says %d, %v", b, v, want, err)
		}
	})
}

// TestConformance runs the sensor, found by device and by name, through
// the shared sysfs driver suite; unplugging removes the IIO device, as
// unloading the dht11 overlay does.
func TestConformance(t *testing.T) {
	t.Run("by device", func(t *testing.T) { drivertest.RunSysfs(t, conformance(nil, "dht22(iio:device0)")) })
	t.Run("by name", func(t *testing.T) {
		drivertest.RunSysfs(t, conformance(func(o *Opts) { o.Name = "dht11@4" }, "dht22(dht11@4)"))
	})
}

func conformance(edit func(*Opts), str string) drivertest.SysfsCase {
	return drivertest.SysfsCase{
		Name:   "dht22",
		String: str,
		Open: func(t testing.TB) (sensors.Sensor, func()) {
			root := tree(t, map[string][3]string{"iio:device0": {"dht11@4\n", "21400\n", "55300\n"}})
			d, err := New(opts(root, edit))
			if err != nil {
				t.Fatal(err)
			}
			return d, func() {
				if err := os.RemoveAll(filepath.Join(root, devicesDir, "iio:device0")); err != nil {
					t.Fatal(err)
				}
			}
		},
		Want:       []float64{21.4, 55.3},
		Exact:      true,
		Quantities: []sensors.Quantity{sensors.Temperature, sensors.Humidity},
	}
}

func BenchmarkSense(b *testing.B) {
	drivertest.BenchmarkSysfs(b, conformance(nil, "dht22(iio:device0)"))
}
