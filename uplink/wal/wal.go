// Package wal is the durable buffer of the store-and-forward uplink: an
// append-only log of opaque records in fixed-size segment files, read in
// seq order by the forwarder and acknowledged once the cloud has PUBACKed.
//
// It owns the durability contract (README "Durability contract"): a record whose
// Append returned survives a process crash in every sync mode and a power
// cut under SyncAlways; Open always succeeds on a damaged directory (it
// fails only on an unusable directory or one another process holds) and
// nothing ever returns a record that was not written. It must not know about MQTT:
// topics, payloads and properties are encoded into the body by the uplink.
//
// Layout: segments named <20-digit first seq>.wal, each with a header
// (magic, version, epoch, first seq), records framed as len | crc32c | time
// | body, and a small "ack" marker file holding the acknowledged prefix
// (fsynced, lazily) beside "ack.live" (rewritten without fsync by every
// Ack, so a process crash redelivers only what was in flight), and the
// "lease": the highest seq readers may have seen before its fsync, which
// recovery never issues again. Readers see a record as soon as it is
// written, in every sync mode. Concurrent Appends share one write and
// one fsync (group commit): the first Append to find no leader commits
// the queue itself. Space is reclaimed by deleting whole segments; data
// is never rewritten.
package wal

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged/edged/sensors"
)

// Sentinel errors callers branch on.
var (
	// ErrFull is returned by Append under RejectNew when MaxBytes is reached.
	ErrFull = errors.New("wal: buffer full")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("wal: log closed")
	// ErrTooLarge is returned by Append for a body above MaxRecordBytes.
	ErrTooLarge = errors.New("wal: record too large")
	// ErrFailed is wrapped by every Append error once a write could not
	// be repaired or an fsync or rotation failed: after that the page
	// cache cannot be trusted ("fsyncgate"), so the log refuses appends
	// until it is closed and opened again (recovery repairs the files).
	ErrFailed = errors.New("wal: log failed (close and reopen it)")
	// ErrCorrupt is wrapped by *CorruptError.
	ErrCorrupt = errors.New("wal: corrupt data")
	// ErrLocked is returned by Open when another process has the
	// directory open.
	ErrLocked = errors.New("wal: buffer directory is in use by another process")
)

// CorruptError says where damaged data was found.
type CorruptError struct {
	Segment string // file path
	Offset  int64  // byte offset of the damaged frame or header
	Err     error  // what was wrong
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: %s at offset %d: %v", e.Segment, e.Offset, e.Err)
}

// Unwrap lets errors.Is(err, ErrCorrupt) hold.
func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

// Record is one stored record.
type Record struct {
	Seq uint64
	// Body is owned by the caller's dst slice; Read reuses its capacity.
	Body []byte
	// Time is when the record was appended, by the log's clock. It is for
	// MaxAge and statistics only: order is by Seq (a Pi has no RTC).
	Time time.Time
}

// Stats is a snapshot of the log's state and counters since Open.
type Stats struct {
	Epoch    uint64
	FirstSeq uint64 // oldest record on disk; LastSeq+1 when there is none
	LastSeq  uint64 // newest record appended; 0 if none ever
	AckedSeq uint64 // every record <= AckedSeq is delivered or dropped
	// SyncedSeq is the newest record known to be on stable storage.
	SyncedSeq uint64

	Backlog uint64 // unacknowledged records
	// BacklogBytes estimates the disk bytes of unacknowledged records
	// (exact for whole segments, prorated for the partly acked one).
	BacklogBytes int64
	// Oldest is the append time of the oldest unacknowledged record; zero
	// when the backlog is empty. OldestAge is its age: by the wall clock,
	// but within the ages of its segment's first and newest records on
	// the monotonic clock, so a step of the wall clock does not make it
	// decades old (or new).
	Oldest    time.Time
	OldestAge time.Duration
	Segments  int
	DiskBytes int64

	DroppedOverflow uint64 // unacked records deleted by DropOldest
	DroppedAge      uint64 // unacked records deleted by MaxAge
	DroppedCorrupt  uint64 // records lost to damaged or missing segments
	Rejected        uint64 // Appends refused with ErrFull
	// CorruptRecovered counts damaged tails, headers and alien files
	// repaired or moved aside.
	CorruptRecovered uint64
	Fsyncs           uint64 // file and directory syncs
	BytesWritten     uint64 // segment, header and marker bytes written
}

type segment struct {
	first    uint64
	count    uint64 // records written
	size     int64  // bytes written, header included
	lastTime int64  // unix ns of the newest record; 0 if none
	// lastMono is the newest record's time on the log's monotonic clock
	// (recovered segments: their age at Open, judged by wall time when
	// that can be believed): MaxAge measures on it, so a step of the
	// wall clock (NTP's first sync on a Pi without RTC) expires nothing.
	lastMono time.Duration
	// firstMono is the same for the segment's first record: with
	// lastMono it bounds a record's age for Stats.OldestAge.
	firstMono time.Duration
	name      string // base name
	// badFrom, if non-zero, is the first seq found damaged after Open;
	// readers skip the rest of the segment.
	badFrom     uint64
	lostCounted bool
	truncated   bool   // recovery cut a damaged tail off
	untrimmed   bool   // recovery could not cut it off: no appends here
	gapFrom     uint64 // from the header: seqs gapFrom..first-1 never existed
	syncFailed  bool   // recovery's fsync of it failed (see recover)
}

func (s *segment) end() uint64 { return s.first + s.count } // seq after the last

// Log is a segment log. Append, Read, Ack, Stats and Sync are safe for
// concurrent use. Read is meant for one consumer (the forwarder): it keeps
// a cursor so sequential reads do not rescan segments.
type Log struct {
	dir   string
	opts  Opts
	fs    FS
	log   *slog.Logger
	clock sensors.Clock

	wake    chan struct{} // asks the housekeeper to look again
	syncReq chan chan error
	quit    chan struct{}
	done    chan struct{}

	// Appends queue here; the first to find no leader commits the queue
	// (see lead).
	qmu     sync.Mutex
	queue   []*appendReq
	spare   []*appendReq // the other queue buffer; under wmu
	pendBuf []*appendReq // commit's pending list, kept between commits; under wmu
	leading bool         // a goroutine is committing or handed the lead
	closing bool

	// wmu is held by whoever runs writer code: the leader of a commit,
	// the housekeeping goroutine, shutdown.
	wmu sync.Mutex

	closeOnce sync.Once
	closeErr  error

	mu         sync.Mutex
	closed     bool
	epoch      uint64
	segs       []*segment // oldest first; the last is the active one
	disk       int64      // sum of the segments' sizes
	nextSeq    uint64
	visible    uint64 // newest seq readers may see
	synced     uint64
	leased     uint64 // the durable lease: the highest seq readers may see unsynced
	acked      uint64
	ackPending int           // Acks since the marker was written
	notify     chan struct{} // closed by publish while waiting
	waiting    bool          // a Read waits on notify
	failed     error         // sticky: set when a sync failed
	lastSync   time.Time     // when the last fsync began: it covers what was written before
	// syncing is closed when the housekeeper's interval fsync, made
	// without wmu (see syncBehind), ends; nil when none runs.
	syncing chan struct{}
	// sealed are the segments a rotation under SyncInterval sealed
	// that no completed fsync has covered yet, still open; once one has,
	// they move to sealedDone, closed by the housekeeper between fsyncs
	// (an fsync under wmu may run beside the housekeeper's; see rotate).
	// dirGen counts the segments created, dirSynced how many of them a
	// completed directory sync covered.
	sealed     []File
	sealedDone []File
	dirGen     uint64
	dirSynced  uint64
	needRotate bool
	st         Stats // counters only
	// The last write, as written: tail holds tailSeg's bytes from
	// tailOff to its end. A reader that has caught up decodes the new
	// records from here, not from the file (a pread per live message);
	// a reader behind it reads the file, where late damage is found.
	tailSeg *segment
	tailOff int64
	tail    []byte

	// Writer state, touched only under wmu (and by Open before the
	// housekeeping goroutine starts), but lastMarker, the housekeeper's
	// own (it writes the marker without wmu), and markerSeq, under mu.
	active      File
	buf         []byte
	lastMarker  time.Time
	markerSeq   uint64
	nextAgeScan time.Duration // on monoNow
	seqFloor    uint64        // recovery: no seq below this may be issued
	tailFloor   uint64        // recovery: the part of seqFloor a truncation line already named

	// lmu serializes lease writes: the housekeeper's, ahead of need, and
	// a commit's when a burst used the lease up (see showWritten).
	lmu         sync.Mutex
	leaseWarned bool // a lease write failed and was logged; under lmu

	// liveMu guards markerLive, kept open and rewritten in place by Ack.
	liveMu     sync.Mutex
	live       File
	liveBuf    [markerSize]byte
	liveSeq    uint64 // acked seq last written to markerLive
	liveClosed bool

	rmu         sync.Mutex // guards cur and readFailing
	cur         cursor
	readFailing bool // a Read could not open a segment (logged)

	onVisible atomic.Pointer[func()] // see OnVisible
	told      atomic.Uint64          // the visible seq onVisible was last called for

	lock io.Closer // directory lock, released by Close
}

type appendReq struct {
	body []byte
	seq  uint64
	err  error
	// done receives false once the record is committed (or failed), and
	// true before that if this Append is to lead the next commit. At
	// most one of each, so it never blocks.
	done chan bool
}

var reqPool = sync.Pool{New: func() any { return &appendReq{done: make(chan bool, 2)} }}

// Open opens or creates the log in dir, repairing whatever a crash left
// behind (see recover.go). It fails only when the directory itself cannot
// be used or the options are invalid; damaged data is repaired, moved
// aside and logged, never a reason to refuse to start. Zero fields of opts
// take their defaults.
func Open(dir string, opts Opts) (*Log, error) {
	opts.applyDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	l := &Log{
		dir:     dir,
		opts:    opts,
		fs:      opts.FS,
		log:     opts.Log.With("component", "wal", "dir", dir),
		clock:   opts.Clock,
		wake:    make(chan struct{}, 1),
		syncReq: make(chan chan error),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		notify:  make(chan struct{}),
	}
	if err := l.fs.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", dir, err)
	}
	// Locking is an optional capability of the FS: OSFS has it on Unix.
	if lk, ok := l.fs.(Locker); ok {
		c, err := lk.Lock(dir)
		if err != nil {
			return nil, fmt.Errorf("wal: lock %s: %w", dir, err)
		}
		l.lock = c
	}
	if err := l.recover(); err != nil {
		if l.active != nil {
			l.active.Close()
		}
		if l.lock != nil {
			l.lock.Close()
		}
		return nil, err
	}
	// Take a lease now, so the first records after a start are shown
	// at once too.
	_ = l.writeLease(l.nextSeq - 1 + l.opts.leaseBlock)
	now := l.clock.Now()
	l.lastSync, l.lastMarker = now, now // before run: no lock needed
	l.nextAgeScan = l.monoNow()
	go l.run()
	return l, nil
}

// monoNow is the log clock's monotonic time (sensors.Monotonic), or its
// wall time for a clock without one.
func (l *Log) monoNow() time.Duration {
	if m, ok := l.clock.(sensors.Monotonic); ok {
		return m.Mono()
	}
	return time.Duration(l.clock.Now().UnixNano())
}

func (l *Log) path(name string) string { return filepath.Join(l.dir, name) }

func newEpoch() uint64 {
	var b [8]byte
	for {
		if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
			// crypto/rand does not fail on Linux; keep going with
			// what we have rather than refusing to start.
			b = [8]byte{1}
		}
		if e := binary.LittleEndian.Uint64(b[:]); e != 0 {
			return e
		}
	}
}

// Epoch returns the random id of this buffer's lifetime. It changes only
// when the log starts with no segments, so (epoch, seq) identifies a record.
func (l *Log) Epoch() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch
}

// Append stores body and returns its seq once it is as durable as the sync
// mode promises: fsynced for SyncAlways, written to the kernel for
// SyncInterval and SyncNone. body is not retained.
func (l *Log) Append(body []byte) (uint64, error) {
	if len(body) > MaxRecordBytes {
		return 0, fmt.Errorf("%w: %d bytes (max %d)", ErrTooLarge, len(body), MaxRecordBytes)
	}
	r := reqPool.Get().(*appendReq)
	r.body, r.seq, r.err = body, 0, nil
	l.qmu.Lock()
	if l.closing {
		l.qmu.Unlock()
		reqPool.Put(r)
		return 0, ErrClosed
	}
	l.queue = append(l.queue, r)
	lead := !l.leading
	l.leading = true
	l.qmu.Unlock()
	if lead || <-r.done {
		l.lead()
		<-r.done
	}
	seq, err := r.seq, r.err
	r.body = nil
	reqPool.Put(r)
	return seq, err
}

// Err returns the sticky error (wrapping ErrFailed) that makes the log
// refuse appends, nil while it works.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

// Ack marks every record <= seq as delivered. The forwarder acks only the
// contiguous PUBACKed prefix. It rewrites ack.live (one write, no fsync),
// so a process crash redelivers nothing acked. Segments wholly acked are
// deleted by the housekeeper; the fsynced marker is written lazily
// (Opts.AckEvery, Opts.AckInterval and on Close), so a power cut
// redelivers at most that much.
func (l *Log) Ack(seq uint64) {
	l.mu.Lock()
	if seq >= l.nextSeq {
		seq = l.nextSeq - 1
	}
	if seq <= l.acked || l.closed {
		l.mu.Unlock()
		return
	}
	l.acked = seq
	l.ackPending++
	// Wake the housekeeper only when it has work: the first ack since
	// the marker (to arm its timer), a marker due by count, or a sealed
	// segment now wholly acked. ack.live is written here, not there.
	wake := l.ackPending == 1 || l.ackPending >= l.opts.AckEvery ||
		len(l.segs) > 1 && l.segs[0].end() <= seq+1
	l.mu.Unlock()
	l.writeLive(seq)
	if wake {
		l.poke()
	}
}

// Sync makes every appended record durable now, whatever the sync mode.
// The uplink calls it on shutdown paths that do not Close.
func (l *Log) Sync() error {
	ch := make(chan error, 1)
	select {
	case l.syncReq <- ch:
		return <-ch
	case <-l.done:
		return ErrClosed
	}
}

// Close flushes and syncs pending appends, writes the ack marker and
// releases the files. Blocked Reads return ErrClosed.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.qmu.Lock()
		l.closing = true
		l.qmu.Unlock()
		close(l.quit)
		<-l.done
		l.mu.Lock()
		l.closed = true
		close(l.notify)
		l.mu.Unlock()
		l.rmu.Lock()
		l.cur.close()
		l.rmu.Unlock()
		if l.lock != nil {
			l.lock.Close()
		}
	})
	return l.closeErr
}

// Stats returns a snapshot. It may read one record header from disk to
// find the oldest unacknowledged append time.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	s := l.st
	s.Epoch = l.epoch
	s.LastSeq = l.nextSeq - 1
	s.AckedSeq = l.acked
	s.SyncedSeq = l.synced
	s.Segments = len(l.segs)
	s.FirstSeq = l.nextSeq
	if len(l.segs) > 0 {
		s.FirstSeq = l.segs[0].first
	}
	// Count records, not seqs: seqs skipped after a crash or damage
	// (see readLease) lie between segments and are no backlog.
	for _, sg := range l.segs {
		s.DiskBytes += sg.size
		switch {
		case sg.end() <= l.acked+1:
		case sg.first > l.acked:
			s.BacklogBytes += sg.size
			s.Backlog += sg.count
		default:
			un := sg.end() - l.acked - 1
			s.BacklogBytes += int64(float64(sg.size-segHeaderSize) * float64(un) / float64(sg.count))
			s.Backlog += un
		}
	}
	oldest := l.acked + 1
	visible := l.visible
	var lo, hi time.Duration // bounds of the oldest record's age
	if seg, _ := l.findSeg(oldest); seg != nil {
		mono := l.monoNow()
		lo, hi = max(mono-seg.lastMono, 0), max(mono-seg.firstMono, 0)
	}
	l.mu.Unlock()
	if s.Backlog > 0 && oldest <= visible {
		var c cursor
		recs, err := l.readWith(&c, oldest-1, 1, nil, visible)
		c.close()
		if err == nil && len(recs) == 1 {
			s.Oldest = recs[0].Time
			s.OldestAge = min(max(l.clock.Now().Sub(s.Oldest), lo), hi)
		}
	}
	return s
}

// publish makes seqs up to v visible to readers. Call with mu held.
func (l *Log) publish(v uint64) {
	if v <= l.visible {
		return
	}
	l.visible = v
	if l.waiting && !l.closed {
		close(l.notify)
		l.notify = make(chan struct{})
		l.waiting = false
	}
}
