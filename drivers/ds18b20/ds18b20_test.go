package ds18b20

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edged/edged/drivers/drivertest"
	"github.com/edged/edged/sensors"
)

const id = "28-0316a2795eff"

// slave is a w1_slave file as the kernel writes it.
func slave(crc, t string) string {
	return "72 01 4b 46 7f ff 0e 10 57 : crc=57 " + crc + "\n72 01 4b 46 7f ff 0e 10 57 t=" + t + "\n"
}

// tree makes a fake sysfs root holding the w1 devices directory and the
// given files, relative to the devices directory.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	devs := filepath.Join(root, devicesDir)
	if err := os.MkdirAll(devs, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		p := filepath.Join(devs, name)
		if strings.HasSuffix(name, "/") { // a directory, e.g. in place of a file
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func open(t *testing.T, root string) *Dev {
	t.Helper()
	d, err := New(Opts{Device: id, SysfsRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Halt() })
	return d
}

func TestSense(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  float64
		err   error  // sentinel, or nil
		text  string // substring of the error
	}{
		{name: "temperature file", files: map[string]string{id + "/temperature": "21375\n"}, want: 21.375},
		{name: "w1_slave", files: map[string]string{id + "/w1_slave": slave("YES", "23125")}, want: 23.125},
		{name: "below zero", files: map[string]string{id + "/w1_slave": slave("YES", "-1250")}, want: -1.25},
		{name: "temperature preferred", files: map[string]string{id + "/temperature": "19000\n", id + "/w1_slave": slave("YES", "23125")}, want: 19},
		{name: "missing device", files: map[string]string{"28-000000000001/w1_slave": slave("YES", "1000")},
			err: ErrNoDevice, text: "dtoverlay=w1-gpio"},
		{name: "crc NO", files: map[string]string{id + "/w1_slave": slave("NO", "23125")}, err: ErrCRC, text: id},
		{name: "85 °C in w1_slave", files: map[string]string{id + "/w1_slave": slave("YES", "85000")}, err: ErrPowerOn},
		{name: "85 °C in temperature", files: map[string]string{id + "/temperature": "85000\n"}, err: ErrPowerOn},
		{name: "all-zero scratchpad", files: map[string]string{id + "/w1_slave": "00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n"},
			err: ErrNoResponse},
		{name: "garbage", files: map[string]string{id + "/temperature": "hot\n"}, err: ErrFormat},
		{name: "empty file", files: map[string]string{id + "/temperature": ""}, err: ErrFormat},
		{name: "out of range", files: map[string]string{id + "/temperature": "-127000\n"}, err: ErrRange},
		// A directory in place of the file makes read fail as EIO would.
		{name: "read error", files: map[string]string{id + "/temperature/": ""}, text: "read "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := open(t, tree(t, tt.files))
			dst := []float64{-999}
			err := d.Sense(context.Background(), dst)
			if tt.err == nil && tt.text == "" {
				if err != nil {
					t.Fatal(err)
				}
				if dst[0] != tt.want {
					t.Fatalf("Sense = %v °C, want %v", dst[0], tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Sense = %v °C, want an error", dst[0])
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Errorf("Sense = %v, want %v", err, tt.err)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("Sense = %q, want it to contain %q", err, tt.text)
			}
			if !strings.HasPrefix(err.Error(), "ds18b20: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if dst[0] != -999 {
				t.Errorf("Sense wrote %v despite failing", dst[0])
			}
		})
	}
}

func TestMissingDeviceNamesFix(t *testing.T) {
	d := open(t, tree(t, nil))
	err := d.Sense(context.Background(), make([]float64, 1))
	for _, want := range []string{id, "dtoverlay=w1-gpio", "ls /sys/bus/w1/devices"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestNoBus(t *testing.T) {
	_, err := New(Opts{Device: id, SysfsRoot: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "dtoverlay=w1-gpio") {
		t.Fatalf("New without /sys/bus/w1/devices = %v", err)
	}
}

func TestRereadsAndReplug(t *testing.T) {
	root := tree(t, nil)
	d := open(t, root)
	dst := make([]float64, 1)
	if err := d.Sense(context.Background(), dst); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("Sense before plug = %v", err)
	}
	dir := filepath.Join(root, devicesDir, id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "w1_slave")
	for _, v := range []struct {
		t    string
		want float64
	}{{"20000", 20}, {"20062", 20.062}, {"-55000", -55}} {
		// WriteFile truncates in place: the open file sees new contents,
		// as the kernel's regenerated attribute does.
		if err := os.WriteFile(file, []byte(slave("YES", v.t)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := d.Sense(context.Background(), dst); err != nil || dst[0] != v.want {
			t.Fatalf("Sense = %v, %v; want %v", dst[0], err, v.want)
		}
	}
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
	if err := d.Sense(context.Background(), dst); err != nil || dst[0] != -55 {
		t.Fatalf("Sense after Halt = %v, %v", dst[0], err)
	}
}

func TestOptsValidate(t *testing.T) {
	tests := []struct {
		device string
		root   string
		field  string
	}{
		{id, "/", ""},
		{"10-000802b4d1a3", "/", ""}, // DS18S20
		{"3b-0000001aa2b4", "/", ""}, // DS1825
		{"", "/", "device"},
		{"28-0316A2795EFF", "/", "device"}, // the kernel writes lower case
		{"28-0316a2795ef", "/", "device"},
		{"28_0316a2795eff", "/", "device"},
		{"../../../../etc", "/", "device"},
		{"2d-0316a2795eff", "/", "device"}, // a DS2431 EEPROM
		{id, "", "sysfs_root"},
	}
	for _, tt := range tests {
		o := Opts{Device: tt.device, SysfsRoot: tt.root}
		err := o.Validate()
		var fe *sensors.FieldError
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("Validate(%q) = %v", tt.device, err)
		case tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field):
			t.Errorf("Validate(%q, %q) = %v, want a FieldError for %q", tt.device, tt.root, err, tt.field)
		}
	}
	o := DefaultOpts()
	if o.SysfsRoot != "/" || o.Validate() == nil {
		t.Errorf("DefaultOpts() = %+v: want root / and a required device", o)
	}
	if q := o.Quantities(); len(q) != 1 || q[0] != sensors.Temperature {
		t.Errorf("Quantities() = %v", q)
	}
}

func TestParseW1Slave(t *testing.T) {
	tests := []struct {
		in   string
		want int
		err  error
	}{
		{slave("YES", "23125"), 23125, nil},
		{slave("YES", "0"), 0, nil},
		{slave("YES", "-55000"), -55000, nil},
		{slave("YES", "125000"), 125000, nil},
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\r\n72 01 4b 46 7f ff 0e 10 57 t=23125", 23125, nil},
		{slave("NO", "23125"), 0, ErrCRC},
		{slave("YES", "85000"), 0, ErrPowerOn},
		{slave("YES", "125001"), 0, ErrRange},
		{slave("YES", "99999999"), 0, ErrFormat},
		{slave("YES", ""), 0, ErrFormat},
		{slave("YES", "-"), 0, ErrFormat},
		{slave("YES", "12a"), 0, ErrFormat},
		{slave("MAYBE", "1"), 0, ErrFormat},
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 YES", 0, ErrFormat},
		{"72 01 4b 46 7f ff 0e 10 57 YES\nt=1\n", 0, ErrFormat},
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57\n", 0, ErrFormat},
		{"", 0, ErrFormat},
	}
	for _, tt := range tests {
		got, err := ParseW1Slave([]byte(tt.in))
		if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) || got != tt.want {
			t.Errorf("ParseW1Slave(%q) = %d, %v; want %d, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestParseTemperature(t *testing.T) {
	tests := []struct {
		in   string
		want int
		err  error
	}{
		{"21375\n", 21375, nil},
		{"-10062\n", -10062, nil},
		{"21375", 21375, nil},
		{"85000\n", 0, ErrPowerOn},
		{"21375 1\n", 0, ErrFormat},
		{"\n", 0, ErrFormat},
	}
	for _, tt := range tests {
		got, err := ParseTemperature([]byte(tt.in))
		if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) || got != tt.want {
			t.Errorf("ParseTemperature(%q) = %d, %v; want %d, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// FuzzParseW1Slave: no input may panic, and a value that parses is one a
// probe can mean.
func FuzzParseW1Slave(f *testing.F) {
	f.Add([]byte(slave("YES", "23125")))
	f.Add([]byte(slave("NO", "23125")))
	f.Add([]byte(slave("YES", "85000")))
	f.Add([]byte(slave("YES", "-1250")))
	f.Add([]byte("00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n"))
	f.Add([]byte("ff ff ff ff ff ff ff ff ff : crc=c9 NO\nff ff ff ff ff ff ff ff ff t=-62\n"))
	f.Add([]byte("\n t=\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, parse := range []func([]byte) (int, error){ParseW1Slave, ParseTemperature} {
			v, err := parse(b)
			if err != nil {
				if v != 0 {
					t.Fatalf("%q: error %v with value %d", b, err, v)
				}
				continue
			}
			if v < -55000 || v > 125000 || v == 85000 {
				t.Fatalf("%q parsed to impossible %d", b, v)
			}
		}
	})
}

// TestConformance runs both attribute layouts (newer kernels' temperature,
// older ones' w1_slave) through the shared sysfs driver suite; unplugging
// removes the probe's directory, as the w1 bus does.
func TestConformance(t *testing.T) {
	for _, tt := range []struct {
		name, file, body string
		want             float64
	}{
		{"temperature", "temperature", "21375\n", 21.375},
		{"w1_slave", "w1_slave", slave("YES", "23125"), 23.125},
	} {
		t.Run(tt.name, func(t *testing.T) {
			drivertest.RunSysfs(t, conformance(tt.file, tt.body, tt.want))
		})
	}
}

func conformance(file, body string, want float64) drivertest.SysfsCase {
	return drivertest.SysfsCase{
		Name:   "ds18b20",
		String: "ds18b20(28-0316a2795eff)",
		Open: func(t testing.TB) (sensors.Sensor, func()) {
			root := t.TempDir()
			dir := filepath.Join(root, devicesDir, id)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, file), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			d, err := New(Opts{Device: id, SysfsRoot: root})
			if err != nil {
				t.Fatal(err)
			}
			return d, func() {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
			}
		},
		Want:       []float64{want},
		Exact:      true,
		Quantities: []sensors.Quantity{sensors.Temperature},
	}
}

func BenchmarkSense(b *testing.B) {
	drivertest.BenchmarkSysfs(b, conformance("w1_slave", slave("YES", "23125"), 23.125))
}
