package drivers_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"

	"github.com/edged/edged/drivers/bh1750"
	"github.com/edged/edged/drivers/i2cbus"
	"github.com/edged/edged/drivers/sht3x"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
)

// loopBus replays one script per address, over and over: the traffic of
// one reading, byte for byte, like i2ctest.Playback, but endless and
// without allocating, so a benchmark can run it b.N times. Scripts are per
// address because the Poller's sensors talk in any interleaving.
type loopBus struct {
	mu       sync.Mutex
	scripts  map[uint16]*loop
	mismatch atomic.Int64
}

type loop struct {
	ops []i2ctest.IO
	i   int
}

var errLoopMismatch = errors.New("loopbus: traffic differs from the script")

func (b *loopBus) String() string                  { return "loop" }
func (b *loopBus) SetSpeed(physic.Frequency) error { return nil }

func (b *loopBus) Tx(addr uint16, w, r []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.scripts[addr]
	if l == nil {
		b.mismatch.Add(1)
		return errLoopMismatch
	}
	op := &l.ops[l.i]
	if !bytes.Equal(op.W, w) || len(op.R) != len(r) {
		b.mismatch.Add(1)
		return errLoopMismatch
	}
	copy(r, op.R)
	l.i = (l.i + 1) % len(l.ops)
	return nil
}

// The scripts of one reading. SHT3x: single shot, high repeatability,
// clock stretching disabled (datasheet 4.3, Table 9: 0x24 0x00), then two
// words with their CRC; 0xBEEF has CRC 0x92 (4.12, the CRC example).
// BH1750: Power On, MTreg 69, one-time high resolution (p.5, p.11), then
// the p.7 example count 0x8390.
var (
	sht3xLoop = []i2ctest.IO{
		{W: []byte{0x24, 0x00}},
		{R: []byte{0xBE, 0xEF, 0x92, 0xBE, 0xEF, 0x92}},
	}
	bh1750Loop = []i2ctest.IO{
		{W: []byte{0x01}}, {W: []byte{0x42}}, {W: []byte{0x65}}, {W: []byte{0x20}},
		{R: []byte{0x83, 0x90}},
	}
)

type benchSink struct {
	readings atomic.Int64
	offline  atomic.Int64
}

func (s *benchSink) Reading(sensors.Reading) { s.readings.Add(1) }
func (s *benchSink) Availability(_ string, online bool) {
	if !online {
		s.offline.Add(1)
	}
}

// BenchmarkPollerPlayback20Sensors is issue 4's benchmark: 20 real drivers
// (10 sht3x, 10 bh1750 on five buses, each bus serialised by i2cbus.Bus)
// sampled by the Poller on a fake clock, their conversion waits on a
// clock that fires at once. One op is one reading (one value handed to
// the sink: an sht3x sample gives two), so ns/op is the CPU per reading
// (driver, bus, Poller and sink) and allocs/op its allocations; the
// target is 0 after warm-up.
func BenchmarkPollerPlayback20Sensors(b *testing.B) {
	const buses = 5
	wait := sensorstest.NewInstantClock()
	clk := sensorstest.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	sink := &benchSink{}
	p := sensors.NewPoller(clk, sink, nil)
	o := sensors.PollOpts{Interval: time.Second, Timeout: 300 * time.Millisecond, OfflineAfter: 3}
	var loops []*loopBus
	perRound := int64(0)
	n := 0
	add := func(id string, s sensors.Sensor, want []float64) {
		// One direct reading checks the script and the decoding before
		// the Poller takes over (the loop wraps, so nothing is lost).
		got := make([]float64, len(want))
		if err := s.Sense(context.Background(), got); err != nil {
			b.Fatalf("%s: %v", s, err)
		}
		for i := range want {
			if math.Abs(got[i]-want[i]) > 0.005 {
				b.Fatalf("%s: value %d = %v, want %v", s, i, got[i], want[i])
			}
		}
		if err := p.Add(id, s, o); err != nil {
			b.Fatal(err)
		}
		perRound += int64(len(want))
		n++
	}
	tempC := -45 + 175*float64(0xBEEF)/65535 // SHT3x datasheet 4.13 conversion
	rh := 100 * float64(0xBEEF) / 65535
	for i := range buses {
		lb := &loopBus{scripts: map[uint16]*loop{}}
		for _, a := range []uint16{sht3x.Addr, sht3x.Addr + 1} {
			lb.scripts[a] = &loop{ops: withAddr(sht3xLoop, a)}
		}
		for _, a := range []uint16{bh1750.Addr, bh1750.AltAddr} {
			lb.scripts[a] = &loop{ops: withAddr(bh1750Loop, a)}
		}
		loops = append(loops, lb)
		bus := i2cbus.NewBus(string(rune('1'+i)), lb)
		for _, a := range []uint16{sht3x.Addr, sht3x.Addr + 1} {
			so := sht3x.DefaultOpts()
			so.Address = a
			s, err := sht3x.New(bus, wait, so)
			if err != nil {
				b.Fatal(err)
			}
			add(s.String(), s, []float64{tempC, rh})
		}
		for _, a := range []uint16{bh1750.Addr, bh1750.AltAddr} {
			lo := bh1750.DefaultOpts()
			lo.Address = a
			s, err := bh1750.New(bus, wait, lo)
			if err != nil {
				b.Fatal(err)
			}
			add(s.String(), s, []float64{33680 / 1.2})
		}
	}
	if n != 20 || perRound != 30 {
		b.Fatalf("%d sensors, %d readings per round", n, perRound)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	began := time.Now()
	rounds := int64(0)
	// round waits until every sensor has delivered this round's readings
	// and armed its next slot, then moves the clock to that slot. It spins
	// rather than blocks so that the benchmark itself allocates nothing.
	round := func() {
		rounds++
		for i := 0; sink.readings.Load() < rounds*perRound || clk.Pending() < n; i++ {
			if i%4096 == 4095 {
				for _, lb := range loops {
					if m := lb.mismatch.Load(); m > 0 {
						b.Fatalf("%d transactions differ from the script", m)
					}
				}
				if sink.offline.Load() > 0 || time.Since(began) > time.Minute {
					b.Fatalf("stuck: %d readings after %d rounds, %d timers, %d offline", sink.readings.Load(), rounds, clk.Pending(), sink.offline.Load())
				}
			}
			runtime.Gosched()
		}
		clk.Advance(time.Second)
	}
	for range 10 { // warm-up: timers, waiters, the clock's timer list
		round()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range (int64(b.N) + perRound - 1) / perRound {
		round()
	}
	b.StopTimer()
	for _, st := range p.Stats() {
		if st.Failures != 0 {
			b.Fatalf("%+v", st)
		}
	}
}

func withAddr(ops []i2ctest.IO, addr uint16) []i2ctest.IO {
	out := make([]i2ctest.IO, len(ops))
	for i, op := range ops {
		op.Addr = addr
		out[i] = op
	}
	return out
}
