package sysfspwm

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

// fakeKernel stands in for the kernel's PWM sysfs core (drivers/pwm/sysfs.c
// and pwm_apply_state): it enforces the rules the driver's write order
// exists for, records every write relative to the chip directory, and
// keeps the files of the fake tree up to date.
type fakeKernel struct {
	chip string // .../pwmchip0

	mu       sync.Mutex
	log      []string
	period   int64
	duty     int64
	enabled  bool
	polarity string
	noPolar  bool             // the chip has no polarity file
	fail     map[string]error // attribute name -> error to return
	exported int              // channel written to export, -1 if none
}

func newTree(t *testing.T) (root string, k *fakeKernel) {
	t.Helper()
	root = t.TempDir()
	chip := filepath.Join(root, classDir, "pwmchip0")
	if err := os.MkdirAll(chip, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"export": "", "unexport": "", "npwm": "2\n"} {
		if err := os.WriteFile(filepath.Join(chip, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, &fakeKernel{chip: chip, polarity: Normal, fail: map[string]error{}, exported: -1}
}

// makeChannel creates pwmN as the kernel does after an export.
func (k *fakeKernel) makeChannel(t *testing.T, n int) {
	t.Helper()
	dir := filepath.Join(k.chip, "pwm"+strconv.Itoa(n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"period": strconv.FormatInt(k.period, 10), "duty_cycle": strconv.FormatInt(k.duty, 10),
		"enable": "0", "polarity": k.polarity,
	}
	if k.enabled {
		files["enable"] = "1"
	}
	if k.noPolar {
		delete(files, "polarity")
	}
	for name, v := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (k *fakeKernel) write(path, value string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	rel, err := filepath.Rel(k.chip, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		return errors.New("fake kernel: write outside the chip: " + path)
	}
	k.log = append(k.log, rel+"="+value)
	name := filepath.Base(path)
	if err := k.fail[name]; err != nil {
		return err
	}
	if name == "export" {
		n, err := strconv.Atoi(value)
		if err != nil {
			return syscall.EINVAL
		}
		k.exported = n
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		return err
	}
	v, perr := strconv.ParseInt(value, 10, 64)
	switch name {
	case "period":
		if perr != nil || v < k.duty {
			return syscall.EINVAL // pwm_apply_state: duty_cycle > period
		}
		k.period = v
	case "duty_cycle":
		if perr != nil || v > k.period {
			return syscall.EINVAL
		}
		k.duty = v
	case "enable":
		if perr != nil || (v != 0 && v != 1) {
			return syscall.EINVAL
		}
		k.enabled = v == 1
	case "polarity":
		if k.enabled {
			return syscall.EBUSY // pwm-bcm2835 and most chips: only while disabled
		}
		if value != Normal && value != Inversed {
			return syscall.EINVAL
		}
		k.polarity = value
	}
	return os.WriteFile(path, []byte(value+"\n"), 0o644)
}

func (k *fakeKernel) writes() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := k.log
	k.log = nil
	return out
}

// openAsync opens on a clock the test advances, so it can act between
// the export polls; the result arrives on the returned channel.
func openAsync(ctx context.Context, clk sensors.Clock, o Opts, k *fakeKernel) <-chan opened {
	done := make(chan opened, 1)
	go func() {
		d, err := open(ctx, clk, o, k.write)
		done <- opened{d, err}
	}()
	return done
}

type opened struct {
	d   *Dev
	err error
}

// result waits a bounded real time for openAsync's result.
func result(t *testing.T, done <-chan opened) (*Dev, error) {
	t.Helper()
	select {
	case r := <-done:
		return r.d, r.err
	case <-time.After(realWait):
		t.Fatal("open still blocked")
		return nil, nil
	}
}

// realWait bounds, in real time, a wait for the code under test to arm
// a timer or return; it only matters when a bug would hang the test.
const realWait = 10 * time.Second

func opts(root string) Opts {
	o := DefaultOpts()
	o.SysfsRoot = root
	return o
}

func TestOptsValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Opts)
		field string
	}{
		{"default", func(*Opts) {}, ""},
		{"second channel", func(o *Opts) { o.Channel = 1 }, ""},
		{"fan 25 kHz", func(o *Opts) { o.Frequency = 25000 }, ""},
		{"slowest", func(o *Opts) { o.Frequency = MinFrequency }, ""},
		{"fastest", func(o *Opts) { o.Frequency = MaxFrequency }, ""},
		{"inversed", func(o *Opts) { o.Polarity = Inversed }, ""},
		{"safe on", func(o *Opts) { o.SafeState = On }, ""},
		{"negative chip", func(o *Opts) { o.Chip = -1 }, "chip"},
		{"negative channel", func(o *Opts) { o.Channel = -1 }, "channel"},
		{"zero frequency", func(o *Opts) { o.Frequency = 0 }, "frequency"},
		{"too fast", func(o *Opts) { o.Frequency = MaxFrequency + 1 }, "frequency"},
		{"NaN frequency", func(o *Opts) { o.Frequency = math.NaN() }, "frequency"},
		{"inverted is not the kernel's word", func(o *Opts) { o.Polarity = "inverted" }, "polarity"},
		{"safe state last", func(o *Opts) { o.SafeState = "last" }, "safe_state"},
		{"empty root", func(o *Opts) { o.SysfsRoot = "" }, "sysfs_root"},
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

func TestPeriodNS(t *testing.T) {
	tests := []struct {
		hz   float64
		want int64
	}{
		{1000, 1_000_000},
		{25000, 40_000},
		{1, 1_000_000_000},
		{3, 333_333_333},
		{MaxFrequency, 1000},
	}
	for _, tt := range tests {
		if got := PeriodNS(tt.hz); got != tt.want {
			t.Errorf("PeriodNS(%v) = %d, want %d", tt.hz, got, tt.want)
		}
	}
}

// TestOpenExportsThenSetsUp pins the whole start-up sequence on a freshly
// booted chip: export, a bounded poll until udev has made pwm0, then
// disable, duty 0, period, the safe duty, enable.
func TestOpenExportsThenSetsUp(t *testing.T) {
	root, k := newTree(t)
	clk := sensorstest.NewClock(time.Time{})
	done := openAsync(context.Background(), clk, opts(root), k)
	// udev makes pwm0 during the third poll.
	for n := 1; n <= 3; n++ {
		if err := clk.WaitTimers(1, realWait); err != nil {
			t.Fatalf("poll %d: %v", n, err)
		}
		if n == 3 {
			k.makeChannel(t, 0)
		}
		clk.Advance(exportPoll)
	}
	d, err := result(t, done)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"export=0", "pwm0/enable=0", "pwm0/duty_cycle=0", "pwm0/period=1000000", "pwm0/duty_cycle=0", "pwm0/enable=1"}
	if got := k.writes(); !reflect.DeepEqual(got, want) {
		t.Errorf("writes\n got %q\nwant %q", got, want)
	}
	if n, _, _ := clk.Waits(); n != 3 {
		t.Errorf("polled %d times, want 3", n)
	}
	if d.String() != "sysfspwm(pwmchip0/pwm0)" || d.Level() != 0 || d.Period() != 1_000_000 || !k.enabled || k.duty != 0 {
		t.Errorf("after open: %s level %v period %d; kernel enabled %v duty %d", d, d.Level(), d.Period(), k.enabled, k.duty)
	}
}

// TestOpenShortensPeriodBelowOldDuty is the case the write order exists
// for: a previous run left a 10 ms period at 80 % duty; writing the new
// 1 ms period before the duty would fail with EINVAL.
func TestOpenShortensPeriodBelowOldDuty(t *testing.T) {
	root, k := newTree(t)
	k.period, k.duty, k.enabled = 10_000_000, 8_000_000, true
	k.makeChannel(t, 1)
	o := opts(root)
	o.Channel, o.SafeState = 1, On
	d, err := open(context.Background(), sensorstest.NewInstantClock(), o, k.write)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pwm1/enable=0", "pwm1/duty_cycle=0", "pwm1/period=1000000", "pwm1/duty_cycle=1000000", "pwm1/enable=1"}
	if got := k.writes(); !reflect.DeepEqual(got, want) {
		t.Errorf("writes\n got %q\nwant %q", got, want)
	}
	if d.Level() != 1 || k.duty != k.period {
		t.Errorf("safe on: level %v, kernel duty %d of %d", d.Level(), k.duty, k.period)
	}

	// The fake kernel really refuses the naive order.
	if err := k.write(filepath.Join(k.chip, "pwm1/period"), "100"); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("fake kernel accepted period < duty: %v", err)
	}
}

func TestPolarity(t *testing.T) {
	t.Run("inversed is written while disabled", func(t *testing.T) {
		root, k := newTree(t)
		k.period, k.enabled = 1_000_000, true
		k.makeChannel(t, 0)
		o := opts(root)
		o.Polarity = Inversed
		if _, err := open(context.Background(), sensorstest.NewInstantClock(), o, k.write); err != nil {
			t.Fatal(err)
		}
		want := []string{"pwm0/enable=0", "pwm0/duty_cycle=0", "pwm0/polarity=inversed", "pwm0/period=1000000", "pwm0/duty_cycle=0", "pwm0/enable=1"}
		if got := k.writes(); !reflect.DeepEqual(got, want) {
			t.Errorf("writes\n got %q\nwant %q", got, want)
		}
		if k.polarity != Inversed {
			t.Errorf("kernel polarity %q", k.polarity)
		}
	})
	t.Run("normal is not rewritten", func(t *testing.T) {
		root, k := newTree(t)
		k.makeChannel(t, 0)
		if _, err := open(context.Background(), sensorstest.NewInstantClock(), opts(root), k.write); err != nil {
			t.Fatal(err)
		}
		for _, w := range k.writes() {
			if strings.Contains(w, "polarity") {
				t.Errorf("wrote %s though the polarity was already normal", w)
			}
		}
	})
	t.Run("chip without polarity support", func(t *testing.T) {
		root, k := newTree(t)
		k.noPolar = true
		k.makeChannel(t, 0)
		if _, err := open(context.Background(), sensorstest.NewInstantClock(), opts(root), k.write); err != nil {
			t.Fatalf("normal polarity on a chip without the file: %v", err)
		}
		o := opts(root)
		o.Polarity = Inversed
		_, err := open(context.Background(), sensorstest.NewInstantClock(), o, k.write)
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "polarity inversed") {
			t.Fatalf("inversed on a chip without the file: %v", err)
		}
		if k.duty != 0 || !k.enabled {
			t.Errorf("failed open left duty %d enabled %v, want the safe duty", k.duty, k.enabled)
		}
	})
}

func TestSetAndLevel(t *testing.T) {
	root, k := newTree(t)
	k.makeChannel(t, 0)
	d, err := open(context.Background(), sensorstest.NewInstantClock(), opts(root), k.write)
	if err != nil {
		t.Fatal(err)
	}
	k.writes()
	tests := []struct {
		level float64
		write string // "" means an error and no write
	}{
		{0.25, "pwm0/duty_cycle=250000"},
		{1, "pwm0/duty_cycle=1000000"},
		{0.0000004, "pwm0/duty_cycle=0"},
		{0.3333333, "pwm0/duty_cycle=333333"},
		{-0.1, ""},
		{1.01, ""},
		{math.NaN(), ""},
		{math.Inf(1), ""},
	}
	last := d.Level()
	for _, tt := range tests {
		err := d.Set(tt.level)
		got := k.writes()
		if tt.write == "" {
			if err == nil || len(got) != 0 || d.Level() != last {
				t.Errorf("Set(%v) = %v, writes %q, level %v; want an error, nothing written, level %v", tt.level, err, got, d.Level(), last)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, []string{tt.write}) || d.Level() != tt.level {
			t.Errorf("Set(%v) = %v, writes %q, level %v; want %q", tt.level, err, got, d.Level(), tt.write)
		}
		last = tt.level
	}
}

// TestSetFrequencyOrder pins disable, duty 0, period, duty, enable, and
// that the level (not the old duty in ns) carries over.
func TestSetFrequencyOrder(t *testing.T) {
	root, k := newTree(t)
	k.makeChannel(t, 0)
	d, err := open(context.Background(), sensorstest.NewInstantClock(), opts(root), k.write)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(0.5); err != nil {
		t.Fatal(err)
	}
	k.writes()
	if err := d.SetFrequency(25000); err != nil {
		t.Fatal(err)
	}
	want := []string{"pwm0/enable=0", "pwm0/duty_cycle=0", "pwm0/period=40000", "pwm0/duty_cycle=20000", "pwm0/enable=1"}
	if got := k.writes(); !reflect.DeepEqual(got, want) {
		t.Errorf("writes\n got %q\nwant %q", got, want)
	}
	if d.Level() != 0.5 || d.Period() != 40000 {
		t.Errorf("level %v period %d", d.Level(), d.Period())
	}
	if err := d.SetFrequency(0); err == nil || len(k.writes()) != 0 {
		t.Errorf("SetFrequency(0) = %v", err)
	}
	k.fail["period"] = syscall.EIO
	err = d.SetFrequency(100)
	if !errors.Is(err, syscall.EIO) || d.Level() != 0 || k.duty != 0 || !k.enabled {
		t.Errorf("failed SetFrequency = %v, level %v, kernel duty %d enabled %v; want EIO and the safe state", err, d.Level(), k.duty, k.enabled)
	}
}

func TestSafeStateOnHaltAndSafe(t *testing.T) {
	for _, safe := range []string{Off, On} {
		t.Run(safe, func(t *testing.T) {
			root, k := newTree(t)
			k.makeChannel(t, 0)
			o := opts(root)
			o.SafeState = safe
			d, err := open(context.Background(), sensorstest.NewInstantClock(), o, k.write)
			if err != nil {
				t.Fatal(err)
			}
			wantDuty, wantLevel := int64(0), 0.0
			if safe == On {
				wantDuty, wantLevel = k.period, 1
			}
			if k.duty != wantDuty || d.Level() != wantLevel {
				t.Fatalf("open: duty %d level %v, want %d %v", k.duty, d.Level(), wantDuty, wantLevel)
			}
			if err := d.Set(0.5); err != nil {
				t.Fatal(err)
			}
			if err := d.Safe(); err != nil || k.duty != wantDuty || d.Level() != wantLevel {
				t.Fatalf("Safe = %v: duty %d level %v", err, k.duty, d.Level())
			}
			if err := d.Set(0.5); err != nil {
				t.Fatal(err)
			}
			if err := d.Halt(); err != nil || k.duty != wantDuty || !k.enabled || d.Level() != wantLevel {
				t.Fatalf("Halt = %v: duty %d enabled %v level %v", err, k.duty, k.enabled, d.Level())
			}
			if err := d.Set(0.5); !errors.Is(err, ErrHalted) || k.duty != wantDuty {
				t.Fatalf("Set after Halt = %v, duty %d", err, k.duty)
			}
			if err := d.SetFrequency(50); !errors.Is(err, ErrHalted) {
				t.Fatalf("SetFrequency after Halt = %v", err)
			}
			if err := d.Safe(); err != nil {
				t.Fatalf("Safe after Halt = %v", err)
			}
		})
	}
}

// TestSetErrorGoesSafe: an EIO on duty_cycle leaves the real duty unknown,
// so the driver drives its safe duty and reports both outcomes.
func TestSetErrorGoesSafe(t *testing.T) {
	root, k := newTree(t)
	k.makeChannel(t, 0)
	o := opts(root)
	o.SafeState = On
	d, err := open(context.Background(), sensorstest.NewInstantClock(), o, k.write)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(0.2); err != nil {
		t.Fatal(err)
	}
	k.fail["duty_cycle"] = syscall.EIO
	err = d.Set(0.7)
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "sysfspwm(pwmchip0/pwm0): write duty_cycle=700000") {
		t.Fatalf("Set = %v", err)
	}
	if d.Level() != 0.2 {
		t.Errorf("level %v after a failed Set whose safe write failed too, want the last good 0.2", d.Level())
	}
	delete(k.fail, "duty_cycle")
	k.fail["enable"] = syscall.EIO
	if err := d.Set(0.7); err != nil {
		t.Fatalf("Set without touching enable = %v", err)
	}
	if err := d.Safe(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Safe = %v, want EIO from enable", err)
	}
	delete(k.fail, "enable")
	if err := d.Safe(); err != nil || d.Level() != 1 || k.duty != k.period {
		t.Fatalf("Safe = %v, level %v, duty %d", err, d.Level(), k.duty)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Run("missing chip names the overlay", func(t *testing.T) {
		root := t.TempDir()
		_, err := open(context.Background(), sensorstest.NewInstantClock(), opts(root), (&fakeKernel{}).write)
		if !errors.Is(err, ErrNoChip) || !strings.Contains(err.Error(), "dtoverlay=pwm,pin=18,func=2") {
			t.Fatalf("open = %v", err)
		}
	})
	t.Run("channel beyond npwm", func(t *testing.T) {
		root, k := newTree(t)
		o := opts(root)
		o.Channel = 2
		_, err := open(context.Background(), sensorstest.NewInstantClock(), o, k.write)
		if !errors.Is(err, ErrExport) || !strings.Contains(err.Error(), "has 2 channels") || len(k.writes()) != 0 {
			t.Fatalf("open = %v", err)
		}
	})
	t.Run("export never appears", func(t *testing.T) {
		root, k := newTree(t)
		clk := sensorstest.NewInstantClock()
		_, err := open(context.Background(), clk, opts(root), k.write)
		if !errors.Is(err, ErrExport) {
			t.Fatalf("open = %v", err)
		}
		if n, _, _ := clk.Waits(); n != exportPolls {
			t.Errorf("polled %d times, want %d", n, exportPolls)
		}
	})
	t.Run("export refused", func(t *testing.T) {
		root, k := newTree(t)
		k.fail["export"] = syscall.EBUSY // another process holds the channel
		_, err := open(context.Background(), sensorstest.NewInstantClock(), opts(root), k.write)
		if !errors.Is(err, syscall.EBUSY) || !strings.Contains(err.Error(), "export") {
			t.Fatalf("open = %v", err)
		}
	})
	t.Run("cancelled while waiting for export", func(t *testing.T) {
		root, k := newTree(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		clk := sensorstest.NewClock(time.Time{}) // never advanced
		done := openAsync(ctx, clk, opts(root), k)
		if err := clk.WaitTimers(1, realWait); err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := result(t, done); !errors.Is(err, context.Canceled) {
			t.Fatalf("open = %v", err)
		}
	})
	t.Run("period write fails: safe duty still tried", func(t *testing.T) {
		root, k := newTree(t)
		k.makeChannel(t, 0)
		k.fail["period"] = syscall.EIO
		_, err := open(context.Background(), sensorstest.NewInstantClock(), opts(root), k.write)
		if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "write period=1000000") {
			t.Fatalf("open = %v", err)
		}
		got := k.writes()
		if want := "pwm0/enable=1"; got[len(got)-1] != want {
			t.Errorf("last write %q, want %q (safe state after the error)", got[len(got)-1], want)
		}
	})
	t.Run("invalid options", func(t *testing.T) {
		o := opts(t.TempDir())
		o.Frequency = -1
		var fe *sensors.FieldError
		if _, err := Open(context.Background(), nil, o); !errors.As(err, &fe) || fe.Field != "frequency" {
			t.Fatalf("Open = %v", err)
		}
	})
}

// TestOpenRealFiles runs the exported Open, with its real sysfs writes,
// against a plain tree: what lands in the files is what the kernel reads.
func TestOpenRealFiles(t *testing.T) {
	root, k := newTree(t)
	k.makeChannel(t, 0)
	o := opts(root)
	o.Frequency = 50
	d, err := Open(context.Background(), sensorstest.NewInstantClock(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(0.075); err != nil { // a servo's 1.5 ms centre pulse
		t.Fatal(err)
	}
	dir := filepath.Join(k.chip, "pwm0")
	for name, want := range map[string]string{"period": "20000000", "duty_cycle": "1500000", "enable": "1", "polarity": "normal\n"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
	if err := os.Remove(filepath.Join(dir, "duty_cycle")); err != nil {
		t.Fatal(err)
	}
	if err := d.Set(0.5); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Set with the channel gone (unexported behind our back) = %v", err)
	}
}

// FuzzOptsValidate checks that Validate only ever returns FieldErrors, and
// that valid options give a period within the kernel's 32-bit field and a
// duty that never exceeds it, whatever the level.
func FuzzOptsValidate(f *testing.F) {
	f.Add(0, 0, 1000.0, "normal", "off", 0.5)
	f.Add(0, 1, 25000.0, "inversed", "on", 1.0)
	f.Add(-1, 0, 0.0, "inverted", "last", -0.1)
	f.Add(0, 0, 3.0, "normal", "off", 0.9999999)
	f.Add(0, 0, 1e6, "normal", "on", 0.0000001)
	f.Fuzz(func(t *testing.T, chip, channel int, hz float64, pol, safe string, level float64) {
		o := Opts{Chip: chip, Channel: channel, Frequency: hz, Polarity: pol, SafeState: safe, SysfsRoot: "/"}
		if err := o.Validate(); err != nil {
			var fe *sensors.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %v, not a FieldError", err)
			}
			return
		}
		p := o.Period()
		if p < 1000 || p > math.MaxUint32 {
			t.Fatalf("frequency %v gives period %d ns", hz, p)
		}
		if level >= 0 && level <= 1 {
			if duty := int64(math.Round(level * float64(p))); duty < 0 || duty > p {
				t.Fatalf("level %v gives duty %d of period %d", level, duty, p)
			}
		}
	})
}
