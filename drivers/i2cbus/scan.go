package i2cbus

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/physic"
)

// This file is `edged i2c scan`: probe every address the way i2cdetect's
// default mode does, and name the devices edged knows at the addresses
// that answer (the driver table, drivers.Default, says which).

// State is what a probe found at one address.
type State uint8

// The probe outcomes. Busy means a kernel driver owns the address (an RTC
// overlay, say): i2cdetect prints it as UU and does not probe it.
const (
	Absent State = iota
	Present
	Busy
)

// ErrBusy is returned (wrapped) by a QuickWriter when a kernel driver owns
// the address.
var ErrBusy = errors.New("i2cbus: address in use by a kernel driver")

// QuickWriter is an optional capability of a bus: an SMBus quick write,
// the address and the write bit with no data, which no device treats as a
// command. periph's Linux bus cannot send one: its Tx returns nil without
// touching the bus when both w and r are empty, so every address would
// seem to answer. OpenScan adds the capability from /dev/i2c-N.
type QuickWriter interface {
	QuickWrite(addr uint16) error
}

// ReadProbe reports whether addr is probed with a one-byte read instead
// of a quick write, as i2cdetect's default mode does: 0x30-0x37 and
// 0x50-0x5F hold EEPROMs (and write-protect latches) on which a quick
// write can be taken as the start of a write and corrupt them.
func ReadProbe(addr uint16) bool {
	return (addr >= 0x30 && addr <= 0x37) || (addr >= 0x50 && addr <= 0x5F)
}

// Probe probes one address: a one-byte read where ReadProbe says so, else
// a quick write, through bus's QuickWriter if it has one, or else through
// a Tx with nothing to write or read (fakes and buses whose Tx sends a
// zero-length write). A bus that can do neither must be probed with reads
// only; see Scan.
func Probe(bus i2c.Bus, addr uint16) State {
	var err error
	switch q, ok := bus.(QuickWriter); {
	case ReadProbe(addr):
		var b [1]byte
		err = bus.Tx(addr, nil, b[:])
	case ok:
		err = q.QuickWrite(addr)
	default:
		err = bus.Tx(addr, nil, nil)
	}
	switch {
	case err == nil:
		return Present
	case errors.Is(err, ErrBusy):
		return Busy
	default:
		return Absent // a NACK, like any other failure, means nothing answered
	}
}

// Found is one address that answered, or that a kernel driver owns.
type Found struct {
	Addr  uint16
	State State
}

// Scan probes MinAddr..MaxAddr in order and returns the addresses that
// answered or are busy.
func Scan(bus i2c.Bus) []Found {
	var out []Found
	for a := uint16(MinAddr); a <= MaxAddr; a++ {
		if s := Probe(bus, a); s != Absent {
			out = append(out, Found{Addr: a, State: s})
		}
	}
	return out
}

// WriteTable prints found as i2cdetect does (rows of 16, "--" for no
// answer, "UU" for busy, blanks outside 0x03..0x77), then one line per
// address with the devices that known says can sit there.
func WriteTable(w io.Writer, bus string, found []Found, known func(addr uint16) []string) error {
	at := map[uint16]State{}
	for _, f := range found {
		at[f.Addr] = f.State
	}
	var b strings.Builder
	b.WriteString("     0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f\n")
	for row := uint16(0); row < 0x80; row += 16 {
		fmt.Fprintf(&b, "%02x:", row)
		for a := row; a < row+16; a++ {
			if a > MaxAddr {
				break // i2cdetect ends the last row at 0x77
			}
			switch s, ok := at[a]; {
			case a < MinAddr:
				b.WriteString("   ")
			case ok && s == Busy:
				b.WriteString(" UU")
			case ok:
				fmt.Fprintf(&b, " %02x", a)
			default:
				b.WriteString(" --")
			}
		}
		b.WriteString("\n")
	}
	addrs := make([]uint16, 0, len(found))
	for _, f := range found {
		addrs = append(addrs, f.Addr)
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i] < addrs[j] })
	switch len(addrs) {
	case 0:
		fmt.Fprintf(&b, "\nno devices answered on bus %s (check wiring, power and pull-ups)\n", bus)
	default:
		fmt.Fprintf(&b, "\n%d address(es) in use on bus %s:\n", len(addrs), bus)
	}
	for _, a := range addrs {
		names := strings.Join(known(a), ", ")
		if names == "" {
			names = "unknown to edged"
		}
		if at[a] == Busy {
			names += " (held by a kernel driver)"
		}
		fmt.Fprintf(&b, "  %#02x  %s\n", a, names)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// OpenScan opens the named bus for a scan: periph's bus (with Open's
// errors and hint) for the read probes, plus the bus's /dev/i2c-N node for
// SMBus quick writes. If the node cannot be opened, quick is false and
// the returned bus has no QuickWriter: scan it with reads only.
func OpenScan(name string) (bus i2c.BusCloser, quick bool, err error) {
	b, err := Open(name)
	if err != nil {
		return nil, false, err
	}
	n := number(name, i2creg.All())
	if n < 0 {
		return b, false, nil
	}
	q, err := openQuick("/dev/i2c-" + strconv.Itoa(n))
	if err != nil {
		return b, false, nil
	}
	return &scanBus{BusCloser: b, q: q}, true, nil
}

// number returns the bus number that i2creg.Open would pick for name, or -1.
func number(name string, refs []*i2creg.Ref) int {
	for _, r := range refs {
		if known(name, []*i2creg.Ref{r}) {
			return r.Number
		}
	}
	return -1
}

// ReadOnly hides a bus's QuickWriter, so Scan probes every address with a
// one-byte read (i2cdetect -r). Use it when OpenScan reports no quick
// write: a Tx with nothing to send would find every address.
type ReadOnly struct{ Bus i2c.Bus }

// String implements i2c.Bus.
func (r ReadOnly) String() string { return r.Bus.String() }

// Tx implements i2c.Bus; an empty transaction becomes a one-byte read.
func (r ReadOnly) Tx(addr uint16, w, rd []byte) error {
	if len(w) == 0 && len(rd) == 0 {
		var b [1]byte
		return r.Bus.Tx(addr, nil, b[:])
	}
	return r.Bus.Tx(addr, w, rd)
}

// SetSpeed implements i2c.Bus.
func (r ReadOnly) SetSpeed(f physic.Frequency) error { return r.Bus.SetSpeed(f) }

// scanBus is periph's bus plus the quick-write file.
type scanBus struct {
	i2c.BusCloser
	q *quick
}

func (s *scanBus) QuickWrite(addr uint16) error { return s.q.write(addr) }

func (s *scanBus) Close() error {
	return errors.Join(s.q.close(), s.BusCloser.Close())
}
