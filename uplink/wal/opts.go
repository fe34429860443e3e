package wal

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/edged/edged/sensors"
)

// SyncMode says when appended data is forced to stable storage.
type SyncMode uint8

// Sync modes. The zero value means "default" in Opts. In every mode a
// record is shown to readers as soon as it is written, before its fsync;
// the lease (see leaseName) keeps its seq from ever being issued again
// for another record, whatever a power cut takes.
const (
	// SyncAlways returns from Append only after fsync; concurrent Appends
	// share one write and one fsync (group commit). Survives a power cut.
	SyncAlways SyncMode = iota + 1
	// SyncInterval returns from Append after write(2) and fsyncs at most
	// every SyncInterval, in the background, also the segments a
	// rotation sealed and the directory: no Append waits for an fsync
	// (but, while the lease cannot be written, each fsyncs what it wrote
	// before records are shown, and one whose write failed partway
	// fsyncs its cut). Survives a process
	// crash; a power cut loses what was appended since the last
	// completed fsync began: the last interval and the next fsync's run,
	// more while an fsync takes longer than the interval.
	SyncInterval
	// SyncNone never fsyncs data except on rotation, Sync and Close (and,
	// while the lease cannot be written, before records are shown).
	// Survives a process crash; a power cut loses what the kernel had not
	// written back: for tmpfs and tests, not for SD cards that must not
	// lose data.
	SyncNone
)

var syncNames = [...]string{SyncAlways: "always", SyncInterval: "interval", SyncNone: "none"}

func (m SyncMode) String() string {
	if m == 0 || int(m) >= len(syncNames) {
		return fmt.Sprintf("syncmode(%d)", uint8(m))
	}
	return syncNames[m]
}

// MarshalText implements encoding.TextMarshaler.
func (m SyncMode) MarshalText() ([]byte, error) {
	if m == 0 || int(m) >= len(syncNames) {
		return nil, fmt.Errorf("wal: invalid sync mode %d", uint8(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText parses "always", "interval" or "none" (YAML `sync:`). Its
// error has no package prefix: the config loader puts the key before it.
func (m *SyncMode) UnmarshalText(b []byte) error {
	for i := 1; i < len(syncNames); i++ {
		if syncNames[i] == string(b) {
			*m = SyncMode(i)
			return nil
		}
	}
	return fmt.Errorf("unknown mode %q (want always, interval or none)", b)
}

// Overflow says what happens when MaxBytes is reached.
type Overflow uint8

// Overflow policies. The zero value means "default" (DropOldest).
const (
	// DropOldest deletes the oldest whole segment(s), acknowledged or not,
	// and counts the unacknowledged records it deleted.
	DropOldest Overflow = iota + 1
	// RejectNew refuses Appends with ErrFull until acks free space.
	RejectNew
)

var overflowNames = [...]string{DropOldest: "drop_oldest", RejectNew: "reject_new"}

func (o Overflow) String() string {
	if o == 0 || int(o) >= len(overflowNames) {
		return fmt.Sprintf("overflow(%d)", uint8(o))
	}
	return overflowNames[o]
}

// MarshalText implements encoding.TextMarshaler.
func (o Overflow) MarshalText() ([]byte, error) {
	if o == 0 || int(o) >= len(overflowNames) {
		return nil, fmt.Errorf("wal: invalid overflow policy %d", uint8(o))
	}
	return []byte(o.String()), nil
}

// UnmarshalText parses "drop_oldest" or "reject_new", with an error like
// SyncMode's.
func (o *Overflow) UnmarshalText(b []byte) error {
	for i := 1; i < len(overflowNames); i++ {
		if overflowNames[i] == string(b) {
			*o = Overflow(i)
			return nil
		}
	}
	return fmt.Errorf("unknown policy %q (want drop_oldest or reject_new)", b)
}

// Opts configures a Log. It is the one buffer configuration: the keys
// with YAML names are the user's `uplink.buffer` section, decoded straight
// into it; the others are tuning and dependencies the program sets.
type Opts struct {
	// SegmentBytes is the size at which the active segment is sealed and
	// a new one started. Smaller segments reclaim space sooner; larger
	// ones mean fewer files (and, under SyncAlways and SyncNone, fewer
	// rotation fsyncs).
	SegmentBytes int64 `yaml:"segment_bytes" edged:"size"`
	// MaxBytes caps the disk use of the segments. Disk use stays at most
	// MaxBytes + one segment. At least 2 * SegmentBytes.
	MaxBytes int64 `yaml:"max_bytes" edged:"size"`
	// MaxAge drops segments whose newest record is older (0 = keep).
	MaxAge time.Duration `yaml:"max_age"`
	// Sync is the durability mode.
	Sync SyncMode `yaml:"sync"`
	// SyncInterval is the longest SyncInterval mode leaves data unsynced.
	SyncInterval time.Duration `yaml:"sync_interval"`
	// Overflow is the policy when MaxBytes is reached.
	Overflow Overflow `yaml:"overflow"`

	// AckEvery and AckInterval bound how lazily the ack marker is
	// written: after AckEvery Acks or AckInterval, whichever is first.
	// After a power cut at most that many acked records are redelivered.
	AckEvery    int           `yaml:"-"`
	AckInterval time.Duration `yaml:"-"`

	Log   *slog.Logger  `yaml:"-"`
	Clock sensors.Clock `yaml:"-"`
	// ClockFloor: wall times before it are wrong (the binary's build
	// date); a recovered record stamped before it, or a clock that reads
	// before it at Open, gives MaxAge no age to go by.
	ClockFloor time.Time `yaml:"-"`
	FS         FS        `yaml:"-"`

	leaseBlock uint64 // 0: the constant; tests set a small one
}

// DefaultOpts are the defaults of Opts: 4 MiB segments, a 256 MiB cap,
// interval sync every second (see the package benchmarks for why), drop
// oldest.
func DefaultOpts() Opts {
	return Opts{
		SegmentBytes: 4 << 20,
		MaxBytes:     256 << 20,
		Sync:         SyncInterval,
		SyncInterval: time.Second,
		Overflow:     DropOldest,
		AckEvery:     4096,
		AckInterval:  2 * time.Second,
	}
}

// Bounds of the options Validate checks.
const (
	minSegmentBytes = 1 << 10
	maxSegmentBytes = 256 << 20
	minSyncInterval = 10 * time.Millisecond
	maxSyncInterval = time.Minute
)

func (o *Opts) applyDefaults() {
	d := DefaultOpts()
	if o.SegmentBytes == 0 {
		o.SegmentBytes = d.SegmentBytes
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = d.MaxBytes
	}
	if o.Sync == 0 {
		o.Sync = d.Sync
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = d.SyncInterval
	}
	if o.Overflow == 0 {
		o.Overflow = d.Overflow
	}
	if o.AckEvery == 0 {
		o.AckEvery = d.AckEvery
	}
	if o.AckInterval == 0 {
		o.AckInterval = d.AckInterval
	}
	o.Log = sensors.LogOrDiscard(o.Log)
	if o.Clock == nil {
		o.Clock = sensors.SystemClock
	}
	if o.FS == nil {
		o.FS = OSFS
	}
	if o.leaseBlock == 0 {
		o.leaseBlock = leaseBlock
	}
}

// Validate reports the first problem, naming the YAML key. Zero values
// are invalid here; Open fills them with defaults first.
func (o *Opts) Validate() error {
	if o.SegmentBytes < minSegmentBytes || o.SegmentBytes > maxSegmentBytes {
		return sensors.FieldErrorf("segment_bytes", "%d bytes is out of range (1KiB..256MiB)", o.SegmentBytes)
	}
	if o.MaxBytes < 2*o.SegmentBytes {
		return sensors.FieldErrorf("max_bytes", "%d bytes is less than two segments (segment_bytes is %d)", o.MaxBytes, o.SegmentBytes)
	}
	if o.MaxAge < 0 {
		return sensors.FieldErrorf("max_age", "must not be negative (0 keeps messages until max_bytes)")
	}
	if o.Sync < SyncAlways || o.Sync > SyncNone {
		return sensors.FieldErrorf("sync", "invalid sync mode %d (want always, interval or none)", o.Sync)
	}
	if o.Sync == SyncInterval && (o.SyncInterval < minSyncInterval || o.SyncInterval > maxSyncInterval) {
		return sensors.FieldErrorf("sync_interval", "%v is out of range (10ms..1m)", o.SyncInterval)
	}
	if o.Overflow < DropOldest || o.Overflow > RejectNew {
		return sensors.FieldErrorf("overflow", "invalid policy %d (want drop_oldest or reject_new)", o.Overflow)
	}
	if o.AckEvery < 1 {
		return sensors.FieldErrorf("ack_every", "must be at least 1")
	}
	if o.AckInterval <= 0 {
		return sensors.FieldErrorf("ack_interval", "must be positive")
	}
	return nil
}
