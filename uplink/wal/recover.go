package wal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"time"
)

// recover rebuilds the in-memory state from the directory. Its rules:
//   - a damaged tail of any segment (partial frame, zero fill, garbage) is
//     copied to <segment>.corrupt-<unix> and truncated, with one log line;
//     for a segment that is not the last, the seqs up to the next segment
//     are logged and counted as lost;
//   - a segment with a partial or damaged header is moved aside whole as
//     .corrupt-<unix>; an alien file (bad magic, unknown version, other
//     epoch, overlapping seqs) is moved aside as .alien-<unix>;
//   - a zero-length segment is removed; a missing segment is a gap,
//     logged and counted;
//   - nothing here makes Open fail except a directory that cannot be read
//     or a new segment that cannot be created.
func (l *Log) recover() error {
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("wal: read buffer directory: %w", err)
	}
	var segNames []string
	hasMarker, hasLive, hasLease := false, false, false
	for _, n := range names {
		switch n {
		case markerTmp, leaseTmp:
			_ = l.fs.Remove(l.path(n)) // a marker or lease write that did not finish
		case leaseName:
			hasLease = true
		case markerName:
			hasMarker = true
		case markerLive:
			hasLive = true
		default:
			if _, ok := parseSegName(n); ok {
				segNames = append(segNames, n)
			}
		}
	}
	sort.Strings(segNames)

	// The directory is synced too: the names of segments a crashed
	// process created under sync: interval may not be on disk yet.
	dirty := len(segNames) > 0
	var body []byte
	for i, name := range segNames {
		seg, epoch, ok := l.scanSegment(name, i == len(segNames)-1, &body, &dirty)
		if !ok {
			continue
		}
		if len(l.segs) == 0 {
			l.epoch = epoch
			l.segs = append(l.segs, seg)
			continue
		}
		prev := l.segs[len(l.segs)-1]
		switch {
		case epoch != l.epoch:
			l.moveAside(name, "alien", fmt.Sprintf("belongs to epoch %x, the buffer to %x", epoch, l.epoch),
				"it is left from another buffer; delete it once you do not need its records", &dirty)
			continue
		case seg.first < prev.end():
			l.seqFloor = max(l.seqFloor, seg.end())
			l.moveAside(name, "alien", fmt.Sprintf("starts at seq %d inside the previous segment (ends at %d)", seg.first, prev.end()-1),
				"it was probably copied in by hand; delete it", &dirty)
			continue
		case seg.first > prev.end() && seg.gapFrom != 0 && seg.gapFrom <= prev.end():
			// Seqs skipped on purpose by an earlier recovery.
		case seg.first > prev.end():
			lost := seg.first - prev.end()
			l.st.DroppedCorrupt += lost
			if prev.truncated {
				break // the truncation line named the lost range
			}
			l.log.Warn("records missing between segments", "first_lost", prev.end(), "last_lost", seg.first-1, "records", lost)
		}
		l.segs = append(l.segs, seg)
	}

	if len(l.segs) == 0 {
		l.epoch = newEpoch()
		l.nextSeq = 1
		l.log.Info("new buffer", "epoch", fmt.Sprintf("%016x", l.epoch))
	} else {
		l.nextSeq = l.segs[len(l.segs)-1].end()
		if l.seqFloor > l.nextSeq {
			// A segment moved aside may have held seqs up to here;
			// some may have been sent upstream already. Never
			// issue them again in this epoch.
			if l.seqFloor > l.tailFloor {
				l.log.Warn("skipping seqs that a moved-aside segment may hold", "from", l.nextSeq, "to", l.seqFloor-1)
			}
			l.nextSeq = l.seqFloor
		}
	}
	l.acked = l.nextSeq - 1
	if len(l.segs) > 0 {
		l.acked = l.segs[0].first - 1
	}
	if hasMarker {
		l.readMarker()
	}
	l.markerSeq = l.acked
	if hasLive {
		l.readLive()
	}
	l.liveSeq = l.acked
	if len(l.segs) > 0 {
		l.readLease(hasLease)
	}
	l.leased = l.nextSeq - 1

	last := (*segment)(nil)
	if len(l.segs) > 0 {
		last = l.segs[len(l.segs)-1]
	}
	if last != nil && last.end() == l.nextSeq && last.size < l.opts.SegmentBytes && !last.untrimmed {
		f, err := l.fs.OpenFile(l.path(last.name), os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			l.active = f
		}
	}
	if l.active == nil {
		gap := uint64(0)
		if last != nil && last.end() < l.nextSeq {
			gap = last.end()
		}
		if err := l.createSegment(l.nextSeq, gap, true); err != nil {
			return err
		}
		dirty = false // createSegment synced the directory
	}
	dirFailed := false
	if dirty {
		if err := l.fs.SyncDir(l.dir); err != nil {
			l.log.Warn("sync buffer directory; records are not counted synced until an fsync succeeds", "error", err)
			dirFailed = true
		}
		l.st.Fsyncs++
	}
	l.synced = l.nextSeq - 1
	l.visible = l.synced
	// What recovery could not fsync is left to the first fsync, which
	// tries again (and fails the log if it fails too); until then its
	// records are readable but not counted synced.
	for _, sg := range l.segs {
		if !sg.syncFailed {
			continue
		}
		l.synced = min(l.synced, sg.first-1)
		f, err := l.fs.OpenFile(l.path(sg.name), os.O_RDONLY, 0)
		if err != nil {
			l.failed = fmt.Errorf("%w: segment %s could not be fsynced: %w", ErrFailed, l.path(sg.name), err)
			break
		}
		l.sealed = append(l.sealed, f)
	}
	if dirFailed && len(l.segs) > 0 {
		l.dirGen++
		l.synced = min(l.synced, l.segs[0].first-1)
	}
	// Records not synced are not shown before a lease covers them (the
	// first commit's, once one is written) or an fsync does.
	l.visible = l.synced
	l.leased = min(l.leased, l.synced)
	l.disk = 0
	for _, sg := range l.segs {
		l.disk += sg.size
	}
	return nil
}

// scanSegment validates one segment and repairs its tail. ok is false when
// the segment was removed or moved aside.
func (l *Log) scanSegment(name string, last bool, body *[]byte, dirty *bool) (seg *segment, epoch uint64, ok bool) {
	p := l.path(name)
	nameFirst, _ := parseSegName(name)
	f, err := l.fs.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		l.moveAside(name, "alien", fmt.Sprintf("cannot be opened: %v", err), "check its owner and permissions, or delete it", dirty)
		return nil, 0, false
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		f.Close()
		l.moveAside(name, "alien", fmt.Sprintf("cannot be read: %v", err), "check the file system, or delete it", dirty)
		return nil, 0, false
	}
	if size <= segHeaderSize && tornTail(f, 0, size, nil) {
		// A crash between creating a segment and writing its header,
		// or (zeros) a power cut before it was fsynced: no records.
		l.st.CorruptRecovered++
		l.log.Warn("removed empty segment", "segment", p, "bytes", size)
		if err := l.fs.Remove(p); err != nil {
			l.log.Warn("remove empty segment", "segment", p, "error", err)
		}
		*dirty = true
		return nil, 0, false
	}
	h, v, err := readSegHeader(f)
	if err == nil && h.first != nameFirst {
		err = fmt.Errorf("header says first seq %d", h.first)
	}
	if err != nil {
		// All zeros: a header never written to the disk, as a power cut
		// leaves a segment a rotation created under sync: interval
		// before the fsync that covers it (see rotate).
		unwritten := tornTail(f, 0, min(size, segHeaderSize), nil)
		f.Close()
		l.st.CorruptRecovered++
		if size > segHeaderSize {
			l.seqFloor = max(l.seqFloor, nameFirst+uint64(size-segHeaderSize)/frameHeaderSize)
		}
		switch {
		case unwritten:
			l.moveAside(name, "corrupt", fmt.Sprintf("has an unwritten header (zeros, %d bytes: a power cut before the new segment was fsynced)", size),
				"its records were never fsynced and are lost; delete it", dirty)
		case errors.Is(err, errMagic):
			l.moveAside(name, "alien", "is not an edged buffer segment (bad magic)",
				"it does not belong in the buffer directory; move it elsewhere", dirty)
		case errors.Is(err, errVersion):
			l.moveAside(name, "alien", fmt.Sprintf("has format version %d, this edged reads %d", v, segVersion),
				"it was written by another edged version; run that version to drain it, or delete it", dirty)
		default:
			l.moveAside(name, "corrupt", fmt.Sprintf("has a damaged header (%v, %d bytes)", err, size),
				"its records are lost; keep the copy for diagnosis or delete it", dirty)
		}
		return nil, 0, false
	}

	seg = &segment{first: h.first, name: name, gapFrom: h.gapFrom}
	var fr frameReader
	fr.reset(f, segHeaderSize, size)
	var ferr error
	for fr.off < size {
		var t int64
		*body, t, ferr = fr.next(*body)
		if ferr != nil {
			break
		}
		if seg.count == 0 {
			seg.firstMono = l.recoveredMono(t)
		}
		seg.count++
		seg.lastTime = t
	}
	seg.lastMono = l.recoveredMono(seg.lastTime)
	off := fr.off
	seg.size = off
	skipTo := uint64(0)
	torn := off < size && tornTail(f, off, size, ferr)
	if off < size && last && !torn {
		// A damaged (not merely unfinished) frame: the bytes from off
		// may have been whole synced records that a reader was handed
		// and the cloud received. Never issue those seqs again in this
		// epoch: skip up to the most records the region could hold.
		skipTo = seg.end() + uint64(size-off)/frameHeaderSize
		l.seqFloor = max(l.seqFloor, skipTo)
		l.tailFloor = max(l.tailFloor, skipTo)
	}
	if off < size {
		l.st.CorruptRecovered++
		copyPath := l.saveCorrupt(f, name, off, size)
		if err := f.Truncate(off); err != nil {
			// Records appended now would land after the damage,
			// where no reader finds them: take none.
			l.log.Warn("truncate damaged tail; the segment takes no new records", "segment", p, "error", err)
			seg.untrimmed = true
			if seg.count == 0 {
				l.moveAside(name, "corrupt", fmt.Sprintf("has a damaged tail at offset %d that could not be cut off (%v)", off, err),
					"it holds no records; delete it", dirty)
				return nil, 0, false
			}
		}
		seg.truncated = true
		switch {
		case !last && torn:
			// Under sync: interval a rotation leaves the sealed
			// segment's tail to the next interval fsync (see rotate).
			l.log.Warn("truncated the unfinished tail of a sealed segment (a power cut before its fsync); its records from first_lost to the next segment are lost",
				"segment", p, "offset", off, "bytes", size-off, "copy", copyPath, "first_lost", seg.end(), "reason", ferr)
		case !last:
			l.log.Warn("truncated damaged segment; its records from first_lost to the next segment are lost",
				"segment", p, "offset", off, "bytes", size-off, "copy", copyPath, "first_lost", seg.end(), "reason", ferr)
		default:
			if skipTo > seg.end() {
				l.log.Warn("truncated damaged tail; the seqs it may have held are not reused",
					"segment", p, "offset", off, "bytes", size-off, "copy", copyPath, "last_good_seq", seg.end()-1, "next_seq", skipTo, "reason", ferr)
			} else {
				l.log.Warn("truncated damaged tail (an unfinished write at a crash)",
					"segment", p, "offset", off, "bytes", size-off, "copy", copyPath, "last_good_seq", seg.end()-1, "reason", ferr)
			}
		}
	}
	// Data a crashed process wrote is in the page cache only; make it
	// durable before it is reported as synced. Under sync: interval
	// that is not only the last segment: a rotation leaves the sealed
	// one to the next interval fsync (see rotate). An fsync of a clean
	// file writes nothing (50 of 4 MiB took 4 ms on this machine's
	// ext4); the scan has read every byte already.
	if err := f.Sync(); err != nil {
		l.log.Warn("sync segment; its records are not counted synced until an fsync succeeds", "segment", p, "error", err)
		seg.syncFailed = true
	}
	l.st.Fsyncs++
	return seg, h.epoch, true
}

// readFrame reads one frame from r into body's storage. remain is the
// number of bytes left in the file, so a damaged length cannot make it
// allocate more than the file holds.
func readFrame(r *bufio.Reader, fh *[frameHeaderSize]byte, body []byte, remain int64) ([]byte, int64, int, error) {
	if remain < frameHeaderSize {
		return body, 0, 0, errShort
	}
	if _, err := io.ReadFull(r, fh[:]); err != nil {
		return body, 0, 0, errShort
	}
	n, err := frameLen(fh[:])
	if err != nil {
		return body, 0, 0, err
	}
	if int64(n) > remain-frameHeaderSize {
		return body, 0, 0, errShort
	}
	if cap(body) < n {
		body = make([]byte, n)
	}
	body = body[:n]
	if _, err := io.ReadFull(r, body); err != nil {
		return body, 0, 0, errShort
	}
	t, err := checkFrame(fh[:], body)
	if err != nil {
		return body, 0, 0, err
	}
	return body, t, frameHeaderSize + n, nil
}

// saveCorrupt copies f[off:size] beside the segment and returns the copy's
// path ("" if it could not be written: the repair goes on regardless).
func (l *Log) saveCorrupt(f File, name string, off, size int64) string {
	base := fmt.Sprintf("%s.corrupt-%d", name, l.clock.Now().Unix())
	for i := 0; i < 100; i++ {
		cand := base
		if i > 0 {
			cand = fmt.Sprintf("%s.%d", base, i)
		}
		p := l.path(cand)
		dst, err := l.fs.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			l.log.Warn("cannot keep a copy of damaged data", "path", p, "error", err)
			return ""
		}
		_, err = io.Copy(dst, io.NewSectionReader(f, off, size-off))
		if err == nil {
			err = dst.Sync()
			l.st.Fsyncs++
		}
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			l.log.Warn("cannot keep a copy of damaged data", "path", p, "error", err)
		}
		return p
	}
	return ""
}

// moveAside renames a segment-named file that cannot be used so a new
// segment never overwrites it, and logs what it was and what to do.
func (l *Log) moveAside(name, kind, what, remedy string, dirty *bool) {
	from := l.path(name)
	to := l.path(fmt.Sprintf("%s.%s-%d", name, kind, l.clock.Now().Unix()))
	if err := l.fs.Rename(from, to); err != nil {
		l.log.Error("ignoring unusable segment file (could not move it aside)", "path", from, "problem", what, "error", err, "remedy", remedy)
		return
	}
	*dirty = true
	l.log.Warn("moved unusable segment file aside", "path", from, "now", to, "problem", what, "remedy", remedy)
}

// readStamp reads a marker or lease file of fsys (see encodeStamp).
func readStamp(fsys FS, p string) ([]byte, error) {
	f, err := fsys.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, markerSize+1))
}

func (l *Log) readMarker() {
	p := l.path(markerName)
	b, err := readStamp(l.fs, p)
	var epoch, acked uint64
	if err == nil {
		epoch, acked, err = decodeMarker(b)
	}
	switch {
	case err != nil:
		l.st.CorruptRecovered++
		l.log.Warn("ack marker unreadable, removed it; acknowledged records may be sent again",
			"path", p, "error", err, "redeliver_from", l.acked+1)
		_ = l.fs.Remove(p) // the next marker write replaces it anyway
	case epoch != l.epoch:
		l.log.Info("ack marker is from another buffer epoch; ignoring it", "path", p)
	default:
		if acked > l.acked {
			l.acked = min(acked, l.nextSeq-1)
		}
		if acked >= l.nextSeq {
			// Seqs up to acked were handed out and delivered, but
			// their records are gone (a power cut). Never issue them
			// again.
			l.log.Warn("ack marker is ahead of the data; skipping seqs", "acked", acked, "last_on_disk", l.nextSeq-1)
			l.nextSeq = acked + 1
			l.acked = acked
		}
	}
}

// readLive applies markerLive when it is valid, of this epoch and ahead
// of the fsynced marker. Anything else (torn by a power cut, stale) is
// ignored: the fsynced marker already gave a safe answer.
func (l *Log) readLive() {
	b, err := readStamp(l.fs, l.path(markerLive))
	if err != nil {
		return
	}
	epoch, acked, err := decodeMarker(b)
	if err != nil || epoch != l.epoch || acked <= l.acked {
		return
	}
	if acked >= l.nextSeq {
		// As in readMarker: seqs up to acked were handed out and
		// delivered, but their records are gone. Never issue them
		// again in this epoch.
		l.log.Warn("live ack marker is ahead of the data; skipping seqs", "acked", acked, "last_on_disk", l.nextSeq-1)
		l.nextSeq = acked + 1
	}
	l.acked = acked
}

// readLease applies the lease (see leaseName): seqs up to it may have
// been shown to the forwarder, and so reached the cloud, before they were
// fsynced; after a power cut their records may be gone, so they are never
// issued again in this epoch. After a clean Close the lease is the last
// seq and nothing is skipped.
//
// A missing lease is as unknown as an unreadable one: Open writes one
// before it shows anything and Close leaves one, so segments without a
// lease mean damage (fsck, a deletion), a buffer of an edged before the
// lease, or a crash before Open's first lease write; only the first may
// have shown unsynced records, and nothing tells them apart.
func (l *Log) readLease(exists bool) {
	p := l.path(leaseName)
	var b []byte
	err := fs.ErrNotExist
	if exists {
		b, err = readStamp(l.fs, p)
	}
	var epoch, leased uint64
	if err == nil {
		epoch, leased, err = decodeLease(b)
	}
	switch {
	case err != nil:
		// Written atomically, so only damage to the medium gets here:
		// skip more seqs than the active segment can have held.
		l.st.CorruptRecovered++
		what := "lease unreadable; skipping seqs the forwarder may have seen"
		if !exists {
			what = "lease missing; skipping seqs the forwarder may have seen"
		}
		l.log.Warn(what, "path", p, "error", err, "from", l.nextSeq, "to", l.nextSeq+leaseUnknownSkip-1)
		l.nextSeq += leaseUnknownSkip
	case epoch != l.epoch:
		l.log.Info("lease is from another buffer epoch; ignoring it", "path", p)
	case leased >= l.nextSeq:
		l.log.Info("not closed cleanly; skipping seqs the forwarder may have seen before the crash",
			"from", l.nextSeq, "to", leased)
		l.nextSeq = leased + 1
	}
}

// recoveredMono places a recovered segment's newest record (appended at
// wall time t, by an earlier process) on the monotonic clock: as old as
// the wall clock says, unless either time is before Opts.ClockFloor or t
// is in the future, when its age is unknown and counts from now (the
// record is kept rather than expired by a clock that was wrong).
func (l *Log) recoveredMono(t int64) time.Duration {
	now, mono := l.clock.Now(), l.monoNow()
	floor := l.opts.ClockFloor.UnixNano()
	age := time.Duration(now.UnixNano() - t)
	if age < 0 || t < floor || now.UnixNano() < floor {
		age = 0
	}
	return mono - age
}

// tornTail reports whether the damaged region [off, size) of the last
// segment looks like a write that never finished: a frame cut short by the
// end of the file, or an all-zero region (file size updated, data not).
// Whatever a reader may have been handed from such a region is below the
// lease, which recovery skips anyway. Anything else (a checksum mismatch
// on a whole frame, garbage) may be damage to synced records.
func tornTail(f File, off, size int64, ferr error) bool {
	if errors.Is(ferr, errShort) {
		return true
	}
	buf := make([]byte, 32<<10)
	for off < size {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		for _, c := range buf[:n] {
			if c != 0 {
				return false
			}
		}
		if n == 0 || err != nil && err != io.EOF {
			return n > 0 && err == io.EOF
		}
		off += int64(n)
	}
	return true
}

// createSegment starts a new active segment at first with its header
// written; durable also fsyncs the file and the directory, so the segment
// exists on disk before any record lands in it (see rotate for when it
// need not).
func (l *Log) createSegment(first, gapFrom uint64, durable bool) error {
	name := segName(first)
	p := l.path(name)
	f, err := l.fs.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("wal: create segment: %w", err)
	}
	hdr := appendSegHeader(nil, segHeader{epoch: l.epoch, first: first, gapFrom: gapFrom})
	crashTorn(CrashRotate, f, hdr)
	_, err = f.Write(hdr)
	if err == nil && durable {
		err = f.Sync()
	}
	if err == nil && durable {
		err = l.fs.SyncDir(l.dir)
	}
	if err != nil {
		f.Close()
		_ = l.fs.Remove(p)
		return fmt.Errorf("wal: create segment %s: %w", p, err)
	}
	l.mu.Lock()
	if durable {
		l.st.Fsyncs += 2
	}
	l.st.BytesWritten += segHeaderSize
	l.segs = append(l.segs, &segment{first: first, size: segHeaderSize, name: name})
	l.disk += segHeaderSize
	l.mu.Unlock()
	l.active = f
	return nil
}
