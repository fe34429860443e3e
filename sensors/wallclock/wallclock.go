// Package wallclock decides whether the wall clock can be believed. A
// Raspberry Pi has no real-time clock: it boots in 1970, or at the last
// time fake-hwclock saved, and is right only once NTP has synchronised
// it, which may step it by years. Until then readings are stamped with the
// kernel's boot id and the time since boot (monotonic: no step moves it),
// marked unsynchronised, and corrected to wall time once the clock is
// trusted (README "Clock").
//
// It reads the kernel (adjtimex, the boot id) and the injected
// sensors.Clock, checks at most every Opts.CheckEvery (never per reading:
// the hot path is atomic loads), and owns no other state. It must not
// order anything by wall time.
package wallclock

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged/edged/sensors"
)

// BootID is the kernel's random id of the current boot
// (/proc/sys/kernel/random/boot_id): a monotonic time means something
// only together with it.
type BootID [16]byte

// String returns the id as the kernel writes it,
// "d75dffaf-26b7-4b68-a37a-b0e3f65310cb".
func (b BootID) String() string {
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}

// ParseBootID parses the kernel's form of a boot id.
func ParseBootID(s string) (BootID, error) {
	var b BootID
	s = strings.TrimSpace(s)
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return b, fmt.Errorf("wallclock: boot id %q is not a UUID", s)
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(b[:], []byte(h)); err != nil {
		return b, fmt.Errorf("wallclock: boot id %q: %w", s, err)
	}
	return b, nil
}

// BootIDFile is where Linux tells the boot id.
const BootIDFile = "/proc/sys/kernel/random/boot_id"

// ReadBootID reads the boot id from path (BootIDFile).
func ReadBootID(path string) (BootID, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return BootID{}, fmt.Errorf("wallclock: %w", err)
	}
	id, err := ParseBootID(string(b))
	if err != nil {
		return BootID{}, fmt.Errorf("wallclock: %s: %w", path, err)
	}
	return id, nil
}

// Kernel says whether the kernel's clock discipline calls the wall clock
// synchronised (NTP). Adjtimex is the Linux one.
type Kernel interface {
	Synced() (bool, error)
}

// KernelFunc adapts a function to Kernel.
type KernelFunc func() (bool, error)

// Synced implements Kernel.
func (f KernelFunc) Synced() (bool, error) { return f() }

// Opts configures a Clock.
type Opts struct {
	// Floor: a wall time before it is never trusted (the binary's build
	// date: a clock that reads earlier is certainly wrong).
	Floor time.Time
	// CheckEvery is how often Run checks (default 5s).
	CheckEvery time.Duration
	// MaxStep is how far the wall clock may move against the monotonic
	// clock between two checks before it counts as a jump (default 1s;
	// NTP slews at most 0.5 ms a second).
	MaxStep time.Duration
	// Boot is the boot id (ReadBootID); BootOffset is the time since
	// boot at the clock's Mono origin, so Mono + BootOffset is the time
	// since boot (SystemBootOffset).
	Boot       BootID
	BootOffset time.Duration
}

func (o *Opts) defaults() {
	if o.CheckEvery <= 0 {
		o.CheckEvery = 5 * time.Second
	}
	if o.MaxStep <= 0 {
		o.MaxStep = time.Second
	}
}

// trust is one immutable state: swapped whole, read with one atomic load.
type trust struct {
	synced bool
	// since is the Mono of the check that found the clock trusted: a
	// stamp taken before it was taken while it was not.
	since time.Duration
	// offset is wall - Mono (ns) at the latest trusted check: the map
	// from this boot's monotonic time to wall time.
	offset int64
	reason string // why not, while not synced
}

const notChecked = "not checked yet"

// Clock judges the wall clock of an injected sensors.Clock, which must be
// sensors.Monotonic (SystemClock and sensorstest.Clock are).
type Clock struct {
	clk  sensors.Clock
	mono sensors.Monotonic
	kern Kernel
	opts Opts
	log  *slog.Logger

	state atomic.Pointer[trust]
	jumps atomic.Uint64

	mu        sync.Mutex // one Check at a time
	checked   bool
	lastOff   int64
	kernWarns bool
}

// New returns a Clock that has not checked yet: untrusted until the first
// Check. kern nil means no kernel signal (the floor and jumps only).
func New(clk sensors.Clock, kern Kernel, opts Opts, log *slog.Logger) (*Clock, error) {
	m, ok := clk.(sensors.Monotonic)
	if !ok {
		return nil, fmt.Errorf("wallclock: %T has no monotonic time", clk)
	}
	opts.defaults()
	c := &Clock{clk: clk, mono: m, kern: kern, opts: opts, log: sensors.LogOrDiscard(log).With("component", "clock")}
	c.state.Store(&trust{reason: notChecked})
	return c, nil
}

// Synced reports whether the wall clock is trusted now.
func (c *Clock) Synced() bool { return c.state.Load().synced }

// Jumps counts the steps of the wall clock seen (NTP's first sync
// included).
func (c *Clock) Jumps() uint64 { return c.jumps.Load() }

// Reason says why the clock is not trusted ("" when it is).
func (c *Clock) Reason() string {
	if s := c.state.Load(); !s.synced {
		return s.reason
	}
	return ""
}

// Boot returns the boot id stamps are taken in.
func (c *Clock) Boot() BootID { return c.opts.Boot }

// Unsynced reports whether a time taken at mono (the clock's Mono, as in
// sensors.Reading.Mono) was taken before the wall clock was trusted, and
// if so its time since boot, the stamp to correct it from.
func (c *Clock) Unsynced(mono time.Duration) (sinceBoot time.Duration, unsynced bool) {
	if s := c.state.Load(); s.synced && mono >= s.since {
		return 0, false
	}
	return mono + c.opts.BootOffset, true
}

// Now returns the wall time, and, when it is not trusted, its time since
// boot (as Unsynced).
func (c *Clock) Now() (wall time.Time, sinceBoot time.Duration, unsynced bool) {
	wall = c.clk.Now()
	sinceBoot, unsynced = c.Unsynced(c.mono.Mono())
	return wall, sinceBoot, unsynced
}

// Correct maps a stamp (boot id, time since boot) to wall time, once the
// clock is trusted and if the stamp is of this boot; ok is false otherwise
// (a stamp of an earlier boot cannot be mapped: the monotonic clock
// restarted). A zero boot id (the kernel's could not be read) matches
// none: stamps of an unknown boot stay unsynced.
func (c *Clock) Correct(boot BootID, sinceBoot time.Duration) (time.Time, bool) {
	s := c.state.Load()
	if !s.synced || boot == (BootID{}) || boot != c.opts.Boot {
		return time.Time{}, false
	}
	return time.Unix(0, int64(sinceBoot-c.opts.BootOffset)+s.offset).UTC(), true
}

// Run checks now and every Opts.CheckEvery until ctx is done.
func (c *Clock) Run(ctx context.Context) {
	c.Check()
	t := c.clk.NewTimer(c.opts.CheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			c.Check()
			t.Reset(c.opts.CheckEvery)
		}
	}
}

// Check asks the kernel, compares the wall clock with the floor and with
// the monotonic clock since the last check, and logs a change of trust
// once.
func (c *Clock) Check() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clk.Now()
	mono := c.mono.Mono()
	off := now.UnixNano() - int64(mono)
	step := time.Duration(off - c.lastOff)
	jumped := c.checked && (step > c.opts.MaxStep || step < -c.opts.MaxStep)
	c.checked, c.lastOff = true, off
	if jumped {
		c.jumps.Add(1)
	}

	reason := ""
	kernOK, kernErr := true, error(nil)
	if c.kern != nil {
		kernOK, kernErr = c.kern.Synced()
	}
	if kernErr != nil {
		if !c.kernWarns {
			c.kernWarns = true
			c.log.Warn("cannot ask the kernel whether the clock is synchronised; judging it by the build date and jumps only", "error", kernErr)
		}
		kernOK = true
	}
	switch {
	case !kernOK:
		reason = "the kernel says the clock is not synchronised (no NTP sync yet)"
	case now.Before(c.opts.Floor):
		reason = fmt.Sprintf("the clock reads %s, before this build (%s)", now.UTC().Format(time.RFC3339), c.opts.Floor.UTC().Format(time.RFC3339))
	case jumped:
		reason = fmt.Sprintf("the clock jumped by %s", step.Round(time.Millisecond))
	}

	cur := c.state.Load()
	switch {
	case reason == "":
		since := cur.since
		if !cur.synced {
			since = mono
		}
		c.state.Store(&trust{synced: true, since: since, offset: off})
		if !cur.synced {
			c.log.Info("wall clock trusted: stamps from now on are wall time; earlier ones are corrected as they are forwarded",
				"time", now.UTC().Format(time.RFC3339Nano), "since_boot", (mono + c.opts.BootOffset).Round(time.Millisecond))
		}
	case cur.synced || cur.reason == notChecked:
		c.state.Store(&trust{reason: reason})
		level := slog.LevelInfo // every Pi boots so
		if cur.synced {
			level = slog.LevelWarn
		}
		c.log.Log(context.Background(), level, "wall clock not trusted: readings are stamped with the boot id and the time since boot, marked \"clock\":\"unsynced\"",
			"reason", reason, "boot", c.opts.Boot.String())
	default:
		if cur.reason != reason {
			// Still untrusted, for another reason: no new log line
			// (a state change is logged once), but /readyz says why.
			c.state.Store(&trust{reason: reason})
		}
	}
}
