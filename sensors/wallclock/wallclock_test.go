package wallclock_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
	"github.com/edged/edged/sensors/wallclock"
)

var (
	epoch = time.Unix(0, 0).UTC()
	build = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	boot  = wallclock.BootID{0xd7, 0x5d, 0xff, 0xaf, 0x26, 0xb7, 0x4b, 0x68, 0xa3, 0x7a, 0xb0, 0xe3, 0xf6, 0x53, 0x10, 0xcb}
)

const bootOffset = 7 * time.Second // the process started 7 s after boot

type fakeKernel struct{ synced atomic.Bool }

func (k *fakeKernel) Synced() (bool, error) { return k.synced.Load(), nil }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newClock(t *testing.T, t0 time.Time) (*wallclock.Clock, *sensorstest.Clock, *fakeKernel, *syncBuffer) {
	t.Helper()
	clk := sensorstest.NewClock(t0)
	k := &fakeKernel{}
	logs := &syncBuffer{}
	c, err := wallclock.New(clk, k, wallclock.Opts{Floor: build, Boot: boot, BootOffset: bootOffset}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return c, clk, k, logs
}

// TestBootID: the kernel's text form round-trips.
func TestBootID(t *testing.T) {
	const s = "d75dffaf-26b7-4b68-a37a-b0e3f65310cb"
	id, err := wallclock.ParseBootID(s + "\n")
	if err != nil || id != boot || id.String() != s {
		t.Fatalf("ParseBootID = %v (%s), %v", id, id, err)
	}
	for _, bad := range []string{"", "d75dffaf26b74b68a37ab0e3f65310cb", "d75dffaf-26b7-4b68-a37a-b0e3f65310cx"} {
		if _, err := wallclock.ParseBootID(bad); err == nil {
			t.Errorf("ParseBootID(%q) accepted", bad)
		}
	}
}

// TestClock1970ForwardAndBack is issue 13's clock test at the level of
// the judge: a Pi that boots in 1970, is stepped forward by NTP, then back
// by hand. Stamps taken before trust map to the wall time they were taken
// at; a jump while trusted withdraws trust for one check; each change is
// logged once.
func TestClock1970ForwardAndBack(t *testing.T) {
	c, clk, k, logs := newClock(t, epoch)
	if c.Synced() || c.Reason() == "" {
		t.Fatalf("a clock never checked is trusted (reason %q)", c.Reason())
	}
	c.Check()
	if c.Synced() || !strings.Contains(c.Reason(), "not synchronised") {
		t.Fatalf("1970, kernel unsynced: synced %v, reason %q", c.Synced(), c.Reason())
	}
	clk.Advance(3 * time.Second)
	wall1, since1, unsynced := c.Now()
	if !unsynced || since1 != 3*time.Second+bootOffset || !wall1.Equal(epoch.Add(3*time.Second)) {
		t.Fatalf("Now before sync = %v, %v, %v", wall1, since1, unsynced)
	}
	if _, ok := c.Correct(boot, since1); ok {
		t.Fatal("Correct mapped a stamp before the clock was trusted")
	}
	c.Check()

	// NTP steps the clock to the truth: 2026-12-01 12:00:00 at Mono 10s.
	clk.Advance(7 * time.Second)
	truth := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clk.Step(truth.Sub(clk.Now()))
	k.synced.Store(true)
	c.Check()
	if c.Synced() || !strings.Contains(c.Reason(), "jumped") || c.Jumps() != 1 {
		t.Fatalf("check at the step: synced %v, reason %q, jumps %d", c.Synced(), c.Reason(), c.Jumps())
	}
	clk.Advance(5 * time.Second) // Mono 15s
	_, sinceMid, unsynced := c.Now()
	if !unsynced {
		t.Fatal("a stamp between the step and the next check is not marked")
	}
	c.Check()
	if !c.Synced() || c.Reason() != "" {
		t.Fatalf("stable after the step: synced %v, reason %q", c.Synced(), c.Reason())
	}
	// The stamp at Mono 3s was taken 7 s before the step's truth.
	if got, ok := c.Correct(boot, since1); !ok || !got.Equal(truth.Add(-7*time.Second)) {
		t.Fatalf("Correct(1970 stamp) = %v, %v; want %v", got, ok, truth.Add(-7*time.Second))
	}
	if got, ok := c.Correct(boot, sinceMid); !ok || !got.Equal(truth.Add(5*time.Second)) {
		t.Fatalf("Correct(stamp after the step) = %v, %v", got, ok)
	}
	if _, ok := c.Correct(wallclock.BootID{1}, since1); ok {
		t.Fatal("Correct mapped a stamp of another boot")
	}
	// A reading sampled before trust but looked at after it stays marked;
	// one sampled after it is wall time.
	if _, unsynced := c.Unsynced(14 * time.Second); !unsynced {
		t.Fatal("a reading from before the trusted check counts as synced")
	}
	if _, unsynced := c.Unsynced(15 * time.Second); unsynced {
		t.Fatal("a reading at the trusted check counts as unsynced")
	}

	// Someone sets the clock back an hour; the kernel still says synced.
	clk.Advance(5 * time.Second) // Mono 20s
	clk.Step(-time.Hour)
	c.Check()
	if c.Synced() || c.Jumps() != 2 {
		t.Fatalf("after a step back: synced %v, jumps %d", c.Synced(), c.Jumps())
	}
	_, sinceBack, _ := c.Now()
	clk.Advance(5 * time.Second)
	c.Check()
	if !c.Synced() {
		t.Fatalf("stable after the step back: reason %q", c.Reason())
	}
	// Mapped with the clock as it is now: Mono 20s is 10 s after the truth,
	// minus the hour.
	if got, _ := c.Correct(boot, sinceBack); !got.Equal(truth.Add(10*time.Second - time.Hour)) {
		t.Fatalf("Correct after the step back = %v", got)
	}
	l := logs.String()
	for msg, n := range map[string]int{"wall clock trusted": 2, "wall clock not trusted": 2, "level=WARN": 1} {
		if got := strings.Count(l, msg); got != n {
			t.Errorf("%d log lines with %q, want %d:\n%s", got, msg, n, l)
		}
	}
}

// TestClockFloor: a clock the kernel calls synchronised but that reads
// before the build (fake-hwclock's last save, a kernel that lies) is not
// trusted.
func TestClockFloor(t *testing.T) {
	c, clk, k, _ := newClock(t, build.Add(-24*time.Hour))
	k.synced.Store(true)
	c.Check()
	if c.Synced() || !strings.Contains(c.Reason(), "before this build") {
		t.Fatalf("before the floor: synced %v, reason %q", c.Synced(), c.Reason())
	}
	clk.Advance(time.Second)
	clk.Step(48 * time.Hour)
	c.Check() // the step is a jump
	clk.Advance(time.Second)
	c.Check()
	if !c.Synced() {
		t.Fatalf("after the floor: reason %q", c.Reason())
	}
}

// TestClockNoKernel: without a kernel signal (not Linux, adjtimex failing)
// the floor and jumps decide, and the failure is logged once.
func TestClockNoKernel(t *testing.T) {
	clk := sensorstest.NewClock(build.Add(time.Hour))
	logs := &syncBuffer{}
	fails := wallclock.KernelFunc(func() (bool, error) { return false, context.DeadlineExceeded })
	c, err := wallclock.New(clk, fails, wallclock.Opts{Floor: build}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.Check()
	c.Check()
	if !c.Synced() {
		t.Fatalf("no kernel signal, after the floor: reason %q", c.Reason())
	}
	if n := strings.Count(logs.String(), "cannot ask the kernel"); n != 1 {
		t.Fatalf("%d warnings about the kernel, want 1:\n%s", n, logs)
	}
}

// TestClockRun checks on the clock's timers, not per reading.
func TestClockRun(t *testing.T) {
	c, clk, k, _ := newClock(t, build.Add(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := clk.WaitTimers(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if c.Synced() {
		t.Fatal("synced while the kernel says not")
	}
	k.synced.Store(true)
	next, _ := clk.Next()
	clk.AdvanceTo(next)
	if err := clk.WaitTimerAt(next.Add(5*time.Second), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if !c.Synced() {
		t.Fatalf("not synced after a check with the kernel synced: %q", c.Reason())
	}
}

// TestAdjtimex asks the real kernel: it must answer (modes 0 needs no
// privilege). Whether this machine is synchronised is its own business.
func TestAdjtimex(t *testing.T) {
	if _, err := wallclock.Adjtimex.Synced(); err != nil {
		t.Fatal(err)
	}
	id, err := wallclock.ReadBootID(wallclock.BootIDFile)
	if err != nil || id == (wallclock.BootID{}) {
		t.Fatalf("ReadBootID = %v, %v", id, err)
	}
}
