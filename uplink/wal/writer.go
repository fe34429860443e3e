package wal

import (
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/edged/edged/sensors/statefile"
)

// maxBatchBytes bounds one group commit, so one write never needs a huge
// buffer and readers see progress under sustained load.
const maxBatchBytes = 1 << 20

// run is the housekeeping goroutine: the interval sync, the lease, the
// ack marker, reclaiming and expiring segments, Sync and Close (see tend).
// Appends do not pass through it: their leader commits them (see lead).
func (l *Log) run() {
	defer close(l.done)
	timer := l.clock.NewTimer(time.Hour)
	timer.Stop()
	for {
		l.wmu.Lock()
		l.armTimer(timer)
		l.wmu.Unlock()
		select {
		case <-l.wake:
			l.tend()
		case ch := <-l.syncReq:
			l.wmu.Lock()
			err := l.syncActive()
			l.wmu.Unlock()
			l.tend()
			ch <- err
		case <-timer.C():
			l.tend()
		case <-l.quit:
			l.wmu.Lock()
			l.shutdown()
			l.wmu.Unlock()
			return
		}
	}
}

// tend is one round of housekeeping. What fsyncs (the interval sync, the
// lease, the ack marker: tens of milliseconds each on an SD card, seconds
// when it is busy) runs holding no lock, so no Append waits for it; the
// rest is quick and runs under wmu.
func (l *Log) tend() {
	l.syncBehind()
	now := l.clock.Now()
	l.wmu.Lock()
	l.housekeep()
	l.wmu.Unlock()
	l.leaseBehind()
	if l.markerDue(now, false) {
		l.writeMarker(now)
	}
	l.tellVisible()
}

// lead commits what is queued. Only one goroutine leads at a time: the
// Append that found no leader, or the one a leader handed the lead to.
// Appends that queue while it writes (and, under SyncAlways, fsyncs) wait
// and go together in the next commit, led by the first of them: group
// commit, without handing every Append to another goroutine and back.
func (l *Log) lead() {
	l.wmu.Lock()
	l.commitQueue()
	l.wmu.Unlock()
	l.tellVisible()
}

// commitQueue is lead's work, under wmu.
func (l *Log) commitQueue() {
	l.qmu.Lock()
	batch := l.queue
	l.queue = l.spare[:0]
	l.qmu.Unlock()
	l.commitAll(batch)
	clear(batch)
	l.spare = batch[:0]
	l.qmu.Lock()
	var next *appendReq
	if len(l.queue) > 0 {
		next = l.queue[0]
	} else {
		l.leading = false
	}
	l.qmu.Unlock()
	if next != nil {
		// Under wmu, so shutdown cannot answer next before it has
		// been told to lead.
		next.done <- true
	}
}

// commitAll commits batch in groups of at most maxBatchBytes, so one
// write never needs a huge buffer.
func (l *Log) commitAll(batch []*appendReq) {
	for len(batch) > 0 {
		n, size := 0, 0
		for n < len(batch) && (n == 0 || size+len(batch[n].body) <= maxBatchBytes) {
			size += len(batch[n].body)
			n++
		}
		l.commit(batch[:n])
		batch = batch[n:]
	}
}

// armTimer sets the one housekeeping timer to the nearest deadline:
// interval sync, lazy marker write, age scan.
func (l *Log) armTimer(t interface{ Reset(time.Duration) bool }) {
	now := l.clock.Now()
	var next time.Time
	consider := func(d time.Time) {
		if next.IsZero() || d.Before(next) {
			next = d
		}
	}
	l.mu.Lock()
	written := l.nextSeq - 1
	// A failed log makes no interval sync (syncBehind): with the sync
	// left due, the timer would fire at once, again and again.
	unsynced := (written > l.synced || len(l.sealed) > 0) && l.failed == nil
	ackDirty := l.acked > l.markerSeq
	lastSync := l.lastSync
	l.mu.Unlock()
	if unsynced && l.opts.Sync == SyncInterval {
		consider(lastSync.Add(l.opts.SyncInterval))
	}
	if ackDirty {
		consider(l.lastMarker.Add(l.opts.AckInterval))
	}
	if l.opts.MaxAge > 0 {
		consider(now.Add(l.nextAgeScan - l.monoNow()))
	}
	if next.IsZero() {
		next = now.Add(time.Hour)
	}
	t.Reset(max(next.Sub(now), 0))
}

// commit writes one batch: rotation and caps are applied per record, then
// one write, then the records are shown to readers, then (SyncAlways) one
// fsync, then every Append is answered. Under SyncInterval no Append
// waits for an fsync but when the lease cannot be written (showWritten)
// or a write failed partway (writeActive); under SyncNone also one that
// rotates.
func (l *Log) commit(batch []*appendReq) {
	now := l.clock.Now()
	ns := now.UnixNano()
	mono := l.monoNow()
	if l.opts.MaxAge > 0 && mono >= l.nextAgeScan {
		l.expire(mono)
	}
	l.buf = l.buf[:0]
	// pending are written (or in buf, the last pendingCount of them) and
	// wait for the batch's outcome. Under SyncInterval a rotation does
	// not fsync them (see rotate), so they stay pending across it and
	// share that outcome (showWritten's fsync when the lease cannot be
	// written); otherwise a rotation synced them and they leave pending.
	lazy := l.opts.Sync == SyncInterval
	pending := l.pendBuf[:0] // reused: no allocation per commit
	var pendingCount uint64
	fail := func(rs []*appendReq, err error) {
		for _, r := range rs {
			r.seq, r.err = 0, err
		}
	}
	// flush writes buf. A failed write takes its own records' seqs back
	// (writeActive) and fails them; under SyncInterval the records
	// written before it stay pending, stored, and take the outcome with
	// the others: failing them would have a publisher resend what the
	// log still delivers.
	flush := func() error {
		if len(l.buf) == 0 {
			return nil
		}
		n := int(pendingCount)
		err := l.writeActive(l.buf, pendingCount, ns, mono)
		l.buf = l.buf[:0]
		pendingCount = 0
		if err != nil {
			fail(pending[len(pending)-n:], err)
			pending = pending[:len(pending)-n]
			if !lazy {
				fail(pending, err)
				pending = pending[:0]
			}
		}
		return err
	}
	// outcome shows the pending records to readers and, under
	// SyncAlways, fsyncs them: what their Appends return.
	var wasClean bool // nothing unsynced before this batch
	outcome := func() {
		if len(pending) == 0 {
			return
		}
		// The forwarder may send them now, while the fsync runs: the
		// lease keeps their seqs from coming back after a power cut.
		switch err := l.showWritten(); {
		case err != nil:
			fail(pending, err)
		case l.opts.Sync == SyncAlways:
			if err := l.syncActive(); err != nil {
				fail(pending, err)
			}
		case l.opts.Sync == SyncInterval && wasClean:
			// The housekeeper arms the interval sync and makes it,
			// without holding up Appends (see syncBehind).
			l.poke()
		}
	}
	l.mu.Lock()
	if l.needRotate && l.segs[len(l.segs)-1].count == 0 {
		// A reader asked for it as a rotation ran: the damaged
		// segment is sealed already.
		l.needRotate = false
	}
	failed, needRotate := l.failed, l.needRotate
	wasClean = l.nextSeq-1 <= l.synced
	l.mu.Unlock()
	for i, r := range batch {
		if failed != nil {
			r.err = failed
			continue
		}
		fsz := int64(frameHeaderSize + len(r.body))
		act := l.activeSeg()
		rotateFirst := needRotate || act.size+int64(len(l.buf))+fsz > l.opts.SegmentBytes && act.count+pendingCount > 0
		grow := fsz
		if rotateFirst {
			grow += segHeaderSize
		}
		if l.opts.MaxBytes > 0 && l.diskBytes()+int64(len(l.buf))+grow > l.opts.MaxBytes {
			l.reclaim() // acks may have freed segments since the last housekeeping
		}
		if l.opts.MaxBytes > 0 && l.diskBytes()+int64(len(l.buf))+grow > l.opts.MaxBytes {
			if l.opts.Overflow == RejectNew {
				r.err = ErrFull
				l.mu.Lock()
				l.st.Rejected++
				l.mu.Unlock()
				continue
			}
			l.dropOldest(int64(len(l.buf)) + grow)
		}
		if rotateFirst {
			err := flush()
			if err == nil && !lazy {
				// The sealed segment is synced before the next one
				// starts: that is these records' outcome, whatever
				// happens to the new segment.
				if err = l.syncActive(); err != nil {
					fail(pending, err)
				}
				pending = pending[:0]
			}
			var rotErr error
			if err == nil {
				err = l.startSegment()
				rotErr = err
			}
			if err != nil {
				// The rest of the batch is not written. What is
				// (SyncInterval) takes its outcome now, while the log
				// can still lease or fsync it: a failed rotation
				// leaves the written segments as they are.
				for _, rr := range batch[i:] {
					rr.err = err
				}
				outcome()
				if rotErr != nil {
					err = l.failRotation(rotErr)
					for _, rr := range batch[i:] {
						rr.err = err
					}
				}
				pending = pending[:0]
				break
			}
			needRotate = false
		}
		l.mu.Lock()
		r.seq = l.nextSeq
		l.nextSeq++
		l.mu.Unlock()
		l.buf = appendFrame(l.buf, r.body, ns)
		pendingCount++
		pending = append(pending, r)
	}
	_ = flush() // a failure failed its records, and under SyncAlways and SyncNone all of them
	outcome()
	clear(pending[:cap(pending)])
	l.pendBuf = pending[:0]
	for _, r := range batch {
		r.done <- false
	}
}

func (l *Log) activeSeg() *segment {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segs[len(l.segs)-1]
}

// diskBytes is the size of all segments; kept as a running total, as
// the cap checks it for every record.
func (l *Log) diskBytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.disk
}

// maxTail bounds the bytes of the last write kept in memory for readers
// (see Log.tail).
const maxTail = 64 << 10

// writeActive writes frames holding count records to the active segment.
// On a failed write it truncates the partial frames away and takes their
// seqs back, so the segment stays parseable and seqs stay dense.
func (l *Log) writeActive(b []byte, count uint64, ns int64, mono time.Duration) error {
	act := l.activeSeg()
	crashTorn(CrashAppend, l.active, b)
	n, err := l.active.Write(b)
	if err != nil {
		terr := l.active.Truncate(act.size)
		synced := false
		if terr == nil && n > 0 {
			// The seqs go to the next records. The interval fsync
			// running beside this write (syncBehind) may have made
			// part of it durable, the kernel's writeback too: the cut
			// must be durable before a power cut can bring the failed
			// records back under seqs the forwarder sent with others.
			l.waitSync()
			terr, synced = l.active.Sync(), true
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if synced {
			l.st.Fsyncs++
		}
		if terr != nil {
			l.failed = fmt.Errorf("%w: write failed and the segment could not be repaired: %w", ErrFailed, err)
		}
		l.nextSeq -= count
		return fmt.Errorf("wal: write %s: %w", l.path(act.name), err)
	}
	l.mu.Lock()
	if len(b) <= maxTail {
		l.tailSeg, l.tailOff, l.tail = act, act.size, append(l.tail[:0], b...)
	} else {
		l.tailSeg = nil
	}
	act.count += count
	act.size += int64(len(b))
	l.disk += int64(len(b))
	if act.count == count { // the segment's first records
		act.firstMono = mono
	}
	act.lastTime, act.lastMono = ns, mono
	l.st.BytesWritten += uint64(len(b))
	l.mu.Unlock()
	return nil
}

// syncActive fsyncs what holds the records written so far (the segments
// sealed since the last fsync, the active one, the directory) and
// publishes them. Call with wmu held.
func (l *Log) syncActive() error {
	began := l.clock.Now()
	l.mu.Lock()
	if l.failed != nil {
		err := l.failed
		l.mu.Unlock()
		return err
	}
	written := l.nextSeq - 1
	u := l.unsynced()
	l.mu.Unlock()
	return l.fsync(l.active, u, written, began)
}

// unsyncedFiles is what an fsync must cover besides the active segment.
type unsyncedFiles struct {
	sealed []File // segments sealed since the last completed fsync
	dirGen uint64 // the directory as of this many segments created
	dir    bool   // the directory needs a sync
}

// unsynced says what an fsync beginning now covers besides the active
// segment. Call with mu held.
func (l *Log) unsynced() unsyncedFiles {
	u := unsyncedFiles{dirGen: l.dirGen, dir: l.dirGen > l.dirSynced}
	if len(l.sealed) > 0 {
		u.sealed = slices.Clone(l.sealed)
	}
	return u
}

// closeSealed closes the sealed segments a completed fsync covered. Call
// with wmu held from the housekeeper, so no fsync runs that may still be
// syncing one of them.
func (l *Log) closeSealed() {
	l.mu.Lock()
	done := l.sealedDone
	l.sealedDone = nil
	l.mu.Unlock()
	for _, f := range done {
		if err := f.Close(); err != nil {
			l.log.Warn("close sealed segment", "error", err)
		}
	}
}

// syncBehind makes the interval fsync when it is due, holding no lock
// while the card syncs (tens of milliseconds on an SD card, seconds when
// it is busy): Appends go on being written and shown to the forwarder,
// and no capture waits for it. Only the housekeeper calls it, so at most
// one runs; a rotation waits for it (waitSync) before it closes the
// segment.
func (l *Log) syncBehind() {
	if l.opts.Sync != SyncInterval {
		return
	}
	l.wmu.Lock()
	began := l.clock.Now()
	f := l.active
	l.mu.Lock()
	written := l.nextSeq - 1
	// Sealed segments are due too: one a rotation sealed beside a
	// running fsync, with nothing unsynced since, is closed only by an
	// fsync (and, if deleted, keeps its blocks until then).
	due := l.failed == nil && (written > l.synced || len(l.sealed) > 0) && began.Sub(l.lastSync) >= l.opts.SyncInterval
	var u unsyncedFiles
	if due {
		l.syncing = make(chan struct{})
		u = l.unsynced()
	}
	l.mu.Unlock()
	l.wmu.Unlock()
	if !due {
		return
	}
	_ = l.fsync(f, u, written, began) // a failure is sticky, Appends see it
	l.mu.Lock()
	close(l.syncing)
	l.syncing = nil
	l.mu.Unlock()
}

// waitSync waits for the interval fsync syncBehind runs, if any. Call
// with wmu held, so no other begins.
func (l *Log) waitSync() {
	l.mu.Lock()
	ch := l.syncing
	l.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// fsync makes durable the records up to written, which were written when
// the fsync began (at began), and publishes them: the segments sealed
// since the last fsync, f (the active segment then), and the directory if
// a segment was created since its last sync. An fsync error is sticky:
// after it the page cache cannot be trusted ("fsyncgate"), so the log
// refuses appends until reopened.
func (l *Log) fsync(f File, u unsyncedFiles, written uint64, began time.Time) error {
	crashAt(CrashFsync)
	var err error
	n := uint64(0)
	for _, s := range u.sealed {
		if err == nil {
			err = s.Sync()
			n++
		}
	}
	if err == nil {
		err = f.Sync()
		n++
	}
	if err == nil && u.dir {
		err = l.fs.SyncDir(l.dir)
		n++
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.st.Fsyncs += n
	if err != nil {
		if l.failed == nil { // the first error is the one Appends saw
			l.failed = fmt.Errorf("%w: fsync failed: %w", ErrFailed, err)
		}
		return l.failed
	}
	if began.After(l.lastSync) {
		l.lastSync = began
	}
	for _, s := range u.sealed {
		if i := slices.Index(l.sealed, s); i >= 0 { // not yet done by an fsync beside this one
			l.sealed = slices.Delete(l.sealed, i, i+1)
			l.sealedDone = append(l.sealedDone, s)
		}
	}
	if u.dir {
		l.dirSynced = max(l.dirSynced, u.dirGen)
	}
	l.synced = max(l.synced, written)
	l.publish(written)
	return nil
}

// rotate seals the active segment and starts the next one.
//
// Under SyncInterval nothing here waits for the card: the new segment's
// header is written but not fsynced, and the sealed segment stays open
// for the next interval fsync, which syncs it, the new one and the
// directory before it reports any of their records synced (see fsync). A
// power cut before then may leave the sealed segment without its tail and
// the new one empty, torn or missing: recovery cuts the tail off, removes
// or moves aside the new segment and counts the seqs between as lost,
// which that mode allows for records no completed fsync covered; the
// lease keeps those seqs from being issued again. Before, the rotating
// Append made three fsyncs, once per segment: tens of milliseconds on an
// SD card, seconds when it is busy.
//
// Under SyncAlways and SyncNone the sealed segment, the new one's header
// and the directory are fsynced here, so a sealed segment is complete on
// disk: SyncAlways promises that before Append returns, and under
// SyncNone (tmpfs, tests) no interval fsync would ever close the file.
func (l *Log) rotate() error {
	l.mu.Lock()
	failed := l.failed
	l.mu.Unlock()
	if failed != nil { // its first error stays the one Appends see
		return failed
	}
	if l.opts.Sync != SyncInterval {
		if err := l.syncActive(); err != nil {
			return err
		}
	}
	if err := l.startSegment(); err != nil {
		return l.failRotation(err)
	}
	return nil
}

// failRotation makes a failed rotation the log's failure (no segment to
// append to) and returns it. Call with wmu held.
func (l *Log) failRotation(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed == nil {
		l.failed = fmt.Errorf("%w: rotation failed: %w", ErrFailed, err)
	}
	return l.failed
}

// startSegment is rotate's second half, after the sealed segment was
// synced (SyncAlways, SyncNone) or left to the next fsync (SyncInterval):
// the next segment becomes the active one. On an error the active one
// stays. Call with wmu held.
func (l *Log) startSegment() error {
	lazy := l.opts.Sync == SyncInterval
	l.mu.Lock()
	first := l.nextSeq
	l.mu.Unlock()
	old := l.active
	if err := l.createSegment(first, 0, !lazy); err != nil {
		return err
	}
	l.mu.Lock()
	l.needRotate = false
	if lazy {
		l.dirGen++
		// A segment whose records are all synced needs no fsync (a
		// max_age rotation of an idle buffer); with none running it
		// is closed now, not left open, perhaps deleted, until the
		// next record makes an fsync due.
		if l.syncing != nil || l.synced < l.nextSeq-1 {
			l.sealed = append(l.sealed, old)
			old = nil
		}
	}
	l.mu.Unlock()
	if old != nil {
		if err := old.Close(); err != nil {
			l.log.Warn("close sealed segment", "error", err)
		}
	}
	return nil
}

// dropOldest deletes sealed segments, oldest first, until need more bytes
// fit under MaxBytes or only the active segment is left.
func (l *Log) dropOldest(need int64) {
	for l.diskBytes()+need > l.opts.MaxBytes {
		if !l.removeFirst(func(*segment) bool { return true }, &l.st.DroppedOverflow, "max_bytes") {
			return
		}
	}
}

// removeFirst deletes the oldest sealed segment if ok accepts it, counting
// its unacknowledged records into *counter (nil for acked ones).
func (l *Log) removeFirst(ok func(*segment) bool, counter *uint64, why string) bool {
	l.mu.Lock()
	if len(l.segs) < 2 || !ok(l.segs[0]) {
		l.mu.Unlock()
		return false
	}
	s := l.segs[0]
	l.segs = l.segs[1:]
	l.disk -= s.size
	var lost uint64
	if s.end() > l.acked+1 {
		lost = s.end() - max(l.acked+1, s.first)
		l.acked = s.end() - 1
	}
	if counter != nil {
		*counter += lost
	}
	l.mu.Unlock()
	if err := l.fs.Remove(l.path(s.name)); err != nil {
		l.log.Warn("remove segment", "segment", l.path(s.name), "error", err)
	}
	if lost > 0 {
		// Once per segment, i.e. once per few MiB: not per record.
		l.log.Warn("dropped unacknowledged records", "reason", why, "first", s.end()-lost, "last", s.end()-1, "records", lost)
	}
	return true
}

// expire drops segments whose newest record is older than MaxAge, by the
// monotonic clock (mono is monoNow). An expired active segment is sealed
// first so it can go too.
func (l *Log) expire(mono time.Duration) {
	l.nextAgeScan = mono + min(max(l.opts.MaxAge/8, time.Second), time.Minute)
	old := func(s *segment) bool { return s.count > 0 && mono-s.lastMono > l.opts.MaxAge }
	act := l.activeSeg()
	l.mu.Lock()
	sealAct := old(act)
	l.mu.Unlock()
	if sealAct {
		if err := l.rotate(); err != nil {
			return
		}
	}
	for l.removeFirst(old, &l.st.DroppedAge, "max_age") {
	}
}

// housekeep reclaims acked segments, expires old segments and makes the
// rotation a reader asked for. Call with wmu held.
func (l *Log) housekeep() {
	l.closeSealed()
	l.mu.Lock()
	needRotate := l.needRotate
	acked := l.acked
	l.mu.Unlock()
	// Ack wrote ack.live already; this matters on close: the fsynced
	// marker written next may be the file a crash later damages, and
	// ack.live must not lag it.
	l.writeLive(acked)
	l.reclaim()
	if mono := l.monoNow(); l.opts.MaxAge > 0 && mono >= l.nextAgeScan {
		l.expire(mono)
	}
	if needRotate && l.activeSeg().count > 0 {
		_ = l.rotate()
	} else if needRotate {
		l.mu.Lock()
		l.needRotate = false // see commit
		l.mu.Unlock()
	}
}

// markerDue says whether the ack marker is to be written: AckEvery acks
// or AckInterval after the last, or on close.
func (l *Log) markerDue(now time.Time, closing bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked > l.markerSeq && (closing || l.ackPending >= l.opts.AckEvery || now.Sub(l.lastMarker) >= l.opts.AckInterval)
}

// writeMarker persists the acked prefix. A failure only means more
// redelivery after a crash. Only the housekeeper calls it (lastMarker is
// its own), holding no lock but at shutdown.
func (l *Log) writeMarker(now time.Time) {
	l.mu.Lock()
	acked, epoch, pending := l.acked, l.epoch, l.ackPending
	l.mu.Unlock()
	b := encodeMarker(epoch, acked)
	crashTornFile(CrashAckMarker, l.fs, l.dir, markerName+statefile.TempSuffix, b)
	err := l.writeAtomic(markerName, b)
	l.lastMarker = now
	if err == nil {
		l.mu.Lock()
		l.markerSeq = acked
		l.ackPending -= pending // Acks during the write count towards the next
		l.mu.Unlock()
	} else {
		l.log.Warn("write ack marker", "error", err)
	}
}

// writeAtomic replaces name with b durably (statefile.WriteFS: write
// name.tmp, fsync, rename, fsync the directory) through the log's FS.
func (l *Log) writeAtomic(name string, b []byte) error {
	err := statefile.WriteFS(stateFS{l.fs}, l.path(name), b, 0o640)
	l.mu.Lock()
	l.st.Fsyncs += 2
	l.st.BytesWritten += uint64(len(b))
	l.mu.Unlock()
	return err
}

// stateFS is the log's FS as statefile needs it.
type stateFS struct{ FS }

func (f stateFS) OpenFile(name string, flag int, perm fs.FileMode) (statefile.File, error) {
	return f.FS.OpenFile(name, flag, perm)
}

// writeLease durably moves the lease to seq (see leaseName). On failure
// the old lease stands: records past it become visible only once
// fsynced, so a failing lease write costs latency, never safety. Call
// with lmu held (or before run starts).
func (l *Log) writeLease(seq uint64) error {
	l.mu.Lock()
	epoch := l.epoch
	l.mu.Unlock()
	err := l.writeAtomic(leaseName, encodeLease(epoch, seq))
	if err != nil {
		if !l.leaseWarned {
			l.leaseWarned = true
			l.log.Warn("lease write failed; records reach the forwarder only once fsynced", "error", err)
		}
		return err
	}
	if l.leaseWarned {
		l.leaseWarned = false
		l.log.Info("lease written again; records reach the forwarder as soon as written")
	}
	l.mu.Lock()
	l.leased = seq
	l.mu.Unlock()
	return nil
}

// showWritten makes written records visible to readers at once, in every
// sync mode (SyncAlways too: before the group's fsync): whatever is
// fsynced, and beyond that whatever the lease covers. When less than half
// a block is left the housekeeper extends the lease (leaseBehind), while
// Appends go on under the half left; only a burst that outruns it waits
// for the lease here. When the lease cannot be written (disk full, EIO)
// what it does not cover is fsynced here: it leaves at once, and no
// Append returns a seq that is neither leased nor synced; an error is
// that fsync's. Call with wmu held.
func (l *Log) showWritten() error {
	l.mu.Lock()
	written, synced, leased := l.nextSeq-1, l.synced, l.leased
	l.mu.Unlock()
	switch {
	case written <= synced:
	case written > leased:
		if l.extendLease(written) != nil && l.opts.Sync != SyncAlways { // SyncAlways fsyncs next
			return l.syncActive() // publishes what it synced
		}
	case written+l.opts.leaseBlock/2 > leased:
		l.poke()
	}
	l.mu.Lock()
	l.publish(max(l.synced, min(written, l.leased)))
	l.mu.Unlock()
	return nil
}

// leaseBehind extends the lease when less than half a block is left,
// holding no lock but lmu while it is written (two fsyncs). Only the
// housekeeper calls it. Under SyncAlways every commit has fsynced before
// the housekeeper looks, so it renews whatever the synced seq; otherwise
// it skips while all is synced (a failing lease: each commit has fsynced
// what the lease does not cover, and tries the lease itself).
func (l *Log) leaseBehind() {
	l.mu.Lock()
	written, synced := l.nextSeq-1, l.synced
	l.mu.Unlock()
	if written > synced || l.opts.Sync == SyncAlways {
		_ = l.extendLease(written) // a failure is logged; showWritten fsyncs
	}
}

// extendLease durably moves the lease a block past written, unless it
// reaches more than half a block past it already (another extension got
// there first).
func (l *Log) extendLease(written uint64) error {
	l.lmu.Lock()
	defer l.lmu.Unlock()
	l.mu.Lock()
	leased := l.leased
	l.mu.Unlock()
	if written+l.opts.leaseBlock/2 <= leased {
		return nil
	}
	return l.writeLease(written + l.opts.leaseBlock)
}

// writeLive overwrites markerLive in place with the acked seq, through a
// file kept open: one write, no fsync. It only has to survive a process
// crash; a failure only means more redelivery after one.
func (l *Log) writeLive(acked uint64) {
	l.liveMu.Lock()
	defer l.liveMu.Unlock()
	if acked <= l.liveSeq || l.liveClosed {
		return
	}
	l.liveSeq = acked
	var err error
	opened := false
	if l.live == nil {
		l.live, err = l.fs.OpenFile(l.path(markerLive), os.O_WRONLY|os.O_CREATE, 0o640)
		opened = true
	}
	if err == nil {
		putStamp(l.liveBuf[:], markerMagic, l.epoch, acked)
		crashTornAt(CrashAckLive, l.live, l.liveBuf[:])
		_, err = l.live.WriteAt(l.liveBuf[:], 0)
		if err == nil && opened {
			// A longer file (damage, a foreign file) would never
			// read as a marker: cut it to one stamp, after the
			// write (a crash between leaves it no worse than it was).
			err = l.live.Truncate(markerSize)
		}
		if err != nil {
			l.live.Close()
			l.live = nil // open it again next time
		}
	}
	l.mu.Lock()
	l.st.BytesWritten += markerSize
	l.mu.Unlock()
	if err != nil {
		l.log.Debug("write live ack marker", "error", err)
	}
}

// closeLive closes markerLive for good.
func (l *Log) closeLive() {
	l.liveMu.Lock()
	defer l.liveMu.Unlock()
	l.liveClosed = true
	if l.live != nil {
		l.live.Close()
		l.live = nil
	}
}

// shutdown answers every queued Append (no more can queue: closing is
// set), syncs, writes the marker and closes the active segment. Call with
// wmu held.
func (l *Log) shutdown() {
	l.qmu.Lock()
	batch := l.queue
	l.queue = nil
	l.qmu.Unlock()
	l.commitAll(batch)
	err := l.syncActive()
	l.housekeep()
	if now := l.clock.Now(); l.markerDue(now, true) {
		l.writeMarker(now)
	}
	l.mu.Lock()
	last, leased := l.nextSeq-1, l.leased
	l.mu.Unlock()
	if err == nil && leased > last {
		// Everything is on disk: take the lease back so a clean
		// restart continues the seqs without a gap.
		l.lmu.Lock()
		_ = l.writeLease(last)
		l.lmu.Unlock()
	}
	l.closeLive()
	l.mu.Lock()
	l.sealedDone = append(l.sealedDone, l.sealed...) // a failed fsync left them
	l.sealed = nil
	l.mu.Unlock()
	l.closeSealed()
	if cerr := l.active.Close(); err == nil {
		err = cerr
	}
	l.closeErr = err
}

// reclaim deletes sealed segments whose records are all acknowledged.
func (l *Log) reclaim() {
	l.mu.Lock()
	acked := l.acked
	l.mu.Unlock()
	for l.removeFirst(func(s *segment) bool { return s.end() <= acked+1 }, nil, "") {
	}
}
