package i2cbus

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"

	"github.com/edged/edged/drivers/i2cbus/i2cbustest"
)

// fakeBus answers at present addresses and records how each address was
// probed: "q" for an empty Tx (a quick write), "r" for a one-byte read.
type fakeBus struct {
	present map[uint16]bool
	probes  map[uint16]string
	order   []uint16
}

func newFakeBus(present ...uint16) *fakeBus {
	b := &fakeBus{present: map[uint16]bool{}, probes: map[uint16]string{}}
	for _, a := range present {
		b.present[a] = true
	}
	return b
}

func (b *fakeBus) String() string                  { return "fake" }
func (b *fakeBus) SetSpeed(physic.Frequency) error { return nil }

func (b *fakeBus) Tx(addr uint16, w, r []byte) error {
	switch {
	case len(w) == 0 && len(r) == 0:
		b.probes[addr] += "q"
	case len(w) == 0 && len(r) == 1:
		b.probes[addr] += "r"
		r[0] = 0xFF
	default:
		return fmt.Errorf("fake: unexpected probe w=%x r=%d", w, len(r))
	}
	b.order = append(b.order, addr)
	if b.present[addr] {
		return nil
	}
	return i2cbustest.ErrBus
}

// quickBus has a QuickWriter; its empty Tx must never be used.
type quickBus struct {
	*fakeBus
	busy map[uint16]bool
}

func (b *quickBus) Tx(addr uint16, w, r []byte) error {
	if len(w) == 0 && len(r) == 0 {
		return errors.New("empty Tx used although the bus has QuickWrite")
	}
	return b.fakeBus.Tx(addr, w, r)
}

func (b *quickBus) QuickWrite(addr uint16) error {
	b.probes[addr] += "Q"
	b.order = append(b.order, addr)
	switch {
	case b.busy[addr]:
		return fmt.Errorf("%w: %#x", ErrBusy, addr)
	case b.present[addr]:
		return nil
	}
	return syscall.ENXIO
}

func TestReadProbe(t *testing.T) {
	for a := uint16(0); a < 0x80; a++ {
		want := (a >= 0x30 && a <= 0x37) || (a >= 0x50 && a <= 0x5F) // i2cdetect's MODE_AUTO ranges
		if got := ReadProbe(a); got != want {
			t.Errorf("ReadProbe(%#x) = %v, want %v", a, got, want)
		}
	}
}

// TestScanProbesLikeI2cdetect: every address 0x03..0x77 once, in order,
// reads only in the EEPROM ranges, nothing outside the range.
func TestScanProbesLikeI2cdetect(t *testing.T) {
	b := newFakeBus(0x23, 0x44, 0x50, 0x76)
	found := Scan(b)
	want := []Found{{0x23, Present}, {0x44, Present}, {0x50, Present}, {0x76, Present}}
	if !reflect.DeepEqual(found, want) {
		t.Errorf("Scan = %v, want %v", found, want)
	}
	if len(b.order) != MaxAddr-MinAddr+1 || b.order[0] != MinAddr || b.order[len(b.order)-1] != MaxAddr {
		t.Fatalf("probed %d addresses from %#x to %#x", len(b.order), b.order[0], b.order[len(b.order)-1])
	}
	for i := 1; i < len(b.order); i++ {
		if b.order[i] != b.order[i-1]+1 {
			t.Fatalf("probe order breaks at %#x after %#x", b.order[i], b.order[i-1])
		}
	}
	for a := uint16(MinAddr); a <= MaxAddr; a++ {
		want := "q"
		if ReadProbe(a) {
			want = "r"
		}
		if b.probes[a] != want {
			t.Errorf("address %#x probed %q, want %q", a, b.probes[a], want)
		}
	}
}

func TestScanWithQuickWrite(t *testing.T) {
	b := &quickBus{fakeBus: newFakeBus(0x40, 0x57, 0x70), busy: map[uint16]bool{0x68: true}}
	found := Scan(b)
	want := []Found{{0x40, Present}, {0x57, Present}, {0x68, Busy}, {0x70, Present}}
	if !reflect.DeepEqual(found, want) {
		t.Errorf("Scan = %v, want %v", found, want)
	}
	if b.probes[0x57] != "r" || b.probes[0x40] != "Q" || b.probes[0x35] != "r" {
		t.Errorf("probes: 0x57 %q, 0x40 %q, 0x35 %q", b.probes[0x57], b.probes[0x40], b.probes[0x35])
	}
}

func TestReadOnlyScan(t *testing.T) {
	b := newFakeBus(0x23)
	found := Scan(ReadOnly{Bus: b})
	if !reflect.DeepEqual(found, []Found{{0x23, Present}}) {
		t.Errorf("Scan = %v", found)
	}
	for a := uint16(MinAddr); a <= MaxAddr; a++ {
		if b.probes[a] != "r" {
			t.Fatalf("address %#x probed %q through ReadOnly, want a read", a, b.probes[a])
		}
	}
	ro := ReadOnly{Bus: b}
	if ro.String() != "fake" || ro.SetSpeed(physic.KiloHertz) != nil || ro.Tx(0x23, []byte{1, 2}, nil) == nil {
		t.Error("ReadOnly does not pass other traffic through")
	}
}

// tableAt stands in for the driver table (drivers.Default.AtAddress, whose
// own test checks the addresses).
func tableAt(addr uint16) []string {
	return map[uint16][]string{0x23: {"bh1750"}, 0x40: {"htu21d", "pca9685", "si7021"}, 0x76: {"bme280"}}[addr]
}

func TestWriteTable(t *testing.T) {
	var out strings.Builder
	found := []Found{{0x76, Present}, {0x23, Present}, {0x40, Present}, {0x68, Busy}, {0x03, Present}}
	if err := WriteTable(&out, "1", found, tableAt); err != nil {
		t.Fatal(err)
	}
	want := `     0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f
00:          03 -- -- -- -- -- -- -- -- -- -- -- -- 
10: -- -- -- -- -- -- -- -- -- -- -- -- -- -- -- -- 
20: -- -- -- 23 -- -- -- -- -- -- -- -- -- -- -- -- 
30: -- -- -- -- -- -- -- -- -- -- -- -- -- -- -- -- 
40: 40 -- -- -- -- -- -- -- -- -- -- -- -- -- -- -- 
50: -- -- -- -- -- -- -- -- -- -- -- -- -- -- -- -- 
60: -- -- -- -- -- -- -- -- UU -- -- -- -- -- -- -- 
70: -- -- -- -- -- -- 76 --

5 address(es) in use on bus 1:
  0x03  unknown to edged
  0x23  bh1750
  0x40  htu21d, pca9685, si7021
  0x68  unknown to edged (held by a kernel driver)
  0x76  bme280
`
	// The literal's rows carry no trailing blanks; neither does i2cdetect.
	want = strings.ReplaceAll(want, " \n", "\n")
	if got := out.String(); got != want {
		t.Errorf("table\n%s\nwant\n%s", got, want)
	}

	out.Reset()
	if err := WriteTable(&out, "3", nil, tableAt); err != nil || !strings.Contains(out.String(), "no devices answered on bus 3") {
		t.Errorf("empty scan: %v\n%s", err, out.String())
	}
}

func TestNumber(t *testing.T) {
	refs := []*i2creg.Ref{
		{Name: "I2C0", Number: 0},
		{Name: "/dev/i2c-1", Aliases: []string{"I2C1"}, Number: 1},
	}
	for name, want := range map[string]int{"1": 1, "I2C1": 1, "/dev/i2c-1": 1, "0": 0, "I2C0": 0, "7": -1, "": -1} {
		if got := number(name, refs); got != want {
			t.Errorf("number(%q) = %d, want %d", name, got, want)
		}
	}
}

func TestOpenScanMissingBus(t *testing.T) {
	b, _, err := OpenScan("edged-no-such-bus")
	if err == nil {
		b.Close()
		t.Fatal("OpenScan of a bus that cannot exist succeeded")
	}
	if !errors.Is(err, ErrNoBus) || !strings.Contains(err.Error(), "raspi-config") {
		t.Fatalf("OpenScan = %v, want ErrNoBus with the hint", err)
	}
}

// TestQuickWriteOnNonI2CNode runs the real ioctl path against /dev/null:
// the kernel refuses I2C_SLAVE with ENOTTY, which is an error, not "busy".
func TestQuickWriteOnNonI2CNode(t *testing.T) {
	if _, err := openQuick("/nonexistent/i2c-1"); err == nil {
		t.Fatal("openQuick of a missing node succeeded")
	}
	q, err := openQuick("/dev/null")
	if err != nil {
		t.Skipf("no /dev/null: %v", err)
	}
	sb := &scanBus{BusCloser: &i2ctest.Playback{DontPanic: true}, q: q}
	err = sb.QuickWrite(0x40)
	if err == nil || errors.Is(err, ErrBusy) {
		t.Fatalf("QuickWrite on /dev/null = %v, want a non-busy error", err)
	}
	if Probe(sb, 0x40) != Absent {
		t.Error("Probe through a failing quick write is not Absent")
	}
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
}
