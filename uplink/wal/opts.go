package wal

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/edged/edged/sensors"
)

// SyncMode says when appended data is forced to stable storage.
type SyncMode uint8

// Sync modes. The zero value means "default" in Opts.
const (
	// SyncAlways returns from Append only after fsync; concurrent Appends
	// share one write and one fsync (group commit). Survives a power cut.
	SyncAlways SyncMode = iota + 1
	// SyncInterval returns from Append after write(2) and fsyncs at most
	// every SyncInterval. Survives a process crash; a power cut loses at
	// most the last interval. Readers see a record only once it is synced,
	// so a seq lost to a power cut was never sent upstream and reusing it
	// cannot make the cloud drop a new record as a duplicate.
	SyncInterval
	// SyncNone never fsyncs except on rotation, Sync and Close. Readers
	// see records at once. After a power cut, records and the seqs handed
	// out for them may be lost and those seqs issued again: for tmpfs and
	// tests, not for SD cards that must not lose data.
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

// UnmarshalText parses "always", "interval" or "none" (YAML `sync:`).
func (m *SyncMode) UnmarshalText(b []byte) error {
	for i := 1; i < len(syncNames); i++ {
		if syncNames[i] == string(b) {
			*m = SyncMode(i)
			return nil
		}
	}
	return fmt.Errorf("wal: unknown sync mode %q (want always, interval or none)", b)
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

// UnmarshalText parses "drop_oldest" or "reject_new".
func (o *Overflow) UnmarshalText(b []byte) error {
	for i := 1; i < len(overflowNames); i++ {
		if overflowNames[i] == string(b) {
			*o = Overflow(i)
			return nil
		}
	}
	return fmt.Errorf("wal: unknown overflow policy %q (want drop_oldest or reject_new)", b)
}

// Opts configures a Log. The YAML keys sit under `uplink.buffer`.
type Opts struct {
	// SegmentBytes is the size at which the active segment is sealed and
	// a new one started. Smaller segments reclaim space sooner; larger
	// ones mean fewer files and fewer rotation fsyncs.
	SegmentBytes int64 `yaml:"segment_bytes" edged:"size"`
	// MaxBytes caps the disk use of the segments (0 = no cap). Disk use
	// stays at most MaxBytes + one segment. At least 2 * SegmentBytes.
	MaxBytes int64 `yaml:"max_bytes" edged:"size"`
	// MaxAge drops segments whose newest record is older (0 = keep).
	MaxAge time.Duration `yaml:"max_age"`
	// Sync is the durability mode.
	Sync SyncMode `yaml:"sync"`
	// SyncInterval is the longest SyncInterval mode leaves data unsynced.
	SyncInterval time.Duration `yaml:"sync_interval"`
	// CommitWindow makes SyncAlways wait up to this long after the first
	// pending Append for more to share the fsync. 0 batches only what
	// queued while the previous fsync ran, which is usually enough.
	CommitWindow time.Duration `yaml:"commit_window"`
	// Overflow is the policy when MaxBytes is reached.
	Overflow Overflow `yaml:"overflow"`
	// AckEvery and AckInterval bound how lazily the ack marker is
	// written: after AckEvery Acks or AckInterval, whichever is first.
	// After a crash at most that many acked records are redelivered.
	AckEvery    int           `yaml:"ack_every"`
	AckInterval time.Duration `yaml:"ack_interval"`

	Log   *slog.Logger  `yaml:"-"`
	Clock sensors.Clock `yaml:"-"`
	FS    FS            `yaml:"-"`
}

// DefaultOpts are the defaults of Opts: 4 MiB segments, no caps, interval
// sync every second (see the package benchmarks for why), drop oldest.
func DefaultOpts() Opts {
	return Opts{
		SegmentBytes: 4 << 20,
		Sync:         SyncInterval,
		SyncInterval: time.Second,
		Overflow:     DropOldest,
		AckEvery:     4096,
		AckInterval:  2 * time.Second,
	}
}

func (o *Opts) applyDefaults() {
	d := DefaultOpts()
	if o.SegmentBytes == 0 {
		o.SegmentBytes = d.SegmentBytes
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
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Clock == nil {
		o.Clock = sensors.SystemClock
	}
	if o.FS == nil {
		o.FS = OSFS
	}
}

// Validate reports the first problem, naming the YAML key. Zero values
// are invalid here; Open fills them with defaults first.
func (o *Opts) Validate() error {
	if o.SegmentBytes < 1024 || o.SegmentBytes > 1<<30 {
		return sensors.FieldErrorf("segment_bytes", "%d bytes is out of range (1KiB..1GiB)", o.SegmentBytes)
	}
	if o.MaxBytes < 0 || o.MaxBytes > 0 && o.MaxBytes < 2*o.SegmentBytes {
		return sensors.FieldErrorf("max_bytes", "%d bytes: want 0 (no cap) or at least 2 * segment_bytes (%d)", o.MaxBytes, 2*o.SegmentBytes)
	}
	if o.MaxAge < 0 {
		return sensors.FieldErrorf("max_age", "must not be negative")
	}
	if o.Sync < SyncAlways || o.Sync > SyncNone {
		return sensors.FieldErrorf("sync", "invalid sync mode %d", o.Sync)
	}
	if o.SyncInterval <= 0 {
		return sensors.FieldErrorf("sync_interval", "must be positive")
	}
	if o.CommitWindow < 0 || o.CommitWindow > time.Second {
		return sensors.FieldErrorf("commit_window", "%v is out of range (0..1s)", o.CommitWindow)
	}
	if o.Overflow < DropOldest || o.Overflow > RejectNew {
		return sensors.FieldErrorf("overflow", "invalid policy %d", o.Overflow)
	}
	if o.AckEvery < 1 {
		return sensors.FieldErrorf("ack_every", "must be at least 1")
	}
	if o.AckInterval <= 0 {
		return sensors.FieldErrorf("ack_interval", "must be positive")
	}
	return nil
}
