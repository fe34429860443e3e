package wal

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// frameReader reads the frames of one segment file in order: the one
// decoder of segment data, used by recovery, Read and Inspect.
type frameReader struct {
	off  int64 // offset of the next frame
	size int64 // bytes of the file it may read
	br   *bufio.Reader
	src  sectionReader
	fh   [frameHeaderSize]byte
}

// reset starts reading f at off, up to size.
func (r *frameReader) reset(f io.ReaderAt, off, size int64) {
	r.off, r.size = off, size
	r.src = sectionReader{f: f, off: off, end: size}
	if r.br == nil {
		r.br = bufio.NewReaderSize(&r.src, 64<<10)
	} else {
		r.br.Reset(&r.src)
	}
}

// resume extends the reader to size when it goes on in f from where its
// last reads stopped, keeping what it has buffered, and reports whether
// it could. A forwarder draining a backlog reads a record or a few per
// call (each PUBACK frees a slot): a fresh buffer fill for each would
// read up to 64 KiB of the file for one record.
func (r *frameReader) resume(f io.ReaderAt, off, size int64) bool {
	if r.br == nil || r.src.f != f || off != r.off || size < r.size || r.src.off-int64(r.br.Buffered()) != off {
		return false
	}
	r.size, r.src.end = size, size
	return true
}

// sectionReader is io.SectionReader without its allocation per reset: the
// forwarder resets its reader on every Read.
type sectionReader struct {
	f        io.ReaderAt
	off, end int64
}

func (s *sectionReader) Read(p []byte) (int, error) {
	if s.off >= s.end {
		return 0, io.EOF
	}
	if rest := s.end - s.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := s.f.ReadAt(p, s.off)
	s.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// next reads the frame at off into body's storage and moves past it. It
// returns the body and the append time; on an error off stays at the
// damaged or unfinished frame.
func (r *frameReader) next(body []byte) ([]byte, int64, error) {
	body, t, n, err := readFrame(r.br, &r.fh, body, r.size-r.off)
	if err != nil {
		return body, 0, err
	}
	r.off += int64(n)
	return body, t, nil
}

// readSegHeader reads and decodes the header of a segment file. A file
// shorter than a header gives errShort (or errMagic, if what is there
// already differs).
func readSegHeader(f io.ReaderAt) (segHeader, uint32, error) {
	var hb [segHeaderSize]byte
	n, _ := f.ReadAt(hb[:], 0)
	return decodeSegHeader(hb[:n])
}

// cursor remembers where the last Read stopped, so the forwarder's
// sequential reads cost one frame decode per record, not a segment scan.
type cursor struct {
	seg  *segment // segment the file belongs to
	f    File
	next uint64 // seq of the frame at fr.off
	fr   frameReader
	mem  memAt // a copy of the writer's tail, when the reader is in it
}

// memAt reads bytes b, which stand at offset off of a file.
type memAt struct {
	b   []byte
	off int64
}

func (m *memAt) ReadAt(p []byte, off int64) (int, error) {
	i := off - m.off
	if i < 0 || i >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[i:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (c *cursor) close() {
	if c.f != nil {
		c.f.Close()
	}
	c.seg, c.f = nil, nil
	c.fr.src.f = nil // a file opened later at the same address is not resumed
}

// Read returns up to max records with seq > after, in seq order, appending
// to dst[:0] and reusing the capacity of its Body slices. It blocks until
// at least one record is readable or ctx is done. When records after
// `after` were dropped (caps, damage), it continues with the oldest one
// left: the caller sees the gap in the seqs and in Stats.
func (l *Log) Read(ctx context.Context, after uint64, max int, dst []Record) ([]Record, error) {
	return l.read(ctx, after, max, dst, true)
}

// ReadReady is Read without any wait: with no record after `after`
// readable yet it returns none, and while a segment cannot be opened it
// returns ErrUnavailable (Read waits and retries). A reader that uses it
// learns of new records from OnVisible.
func (l *Log) ReadReady(after uint64, max int, dst []Record) ([]Record, error) {
	return l.read(context.Background(), after, max, dst, false)
}

// ErrUnavailable is ReadReady's answer while a segment cannot be opened
// (other than for its absence); try again a little later.
var ErrUnavailable = errors.New("wal: segment unavailable; retry")

// OnVisible has f called whenever records become readable: by the
// goroutine that made them so (an Append's, or the housekeeper's), after
// the log's locks are released, at most once per advance. f must not
// block; it may call ReadReady.
func (l *Log) OnVisible(f func()) {
	if f == nil {
		l.onVisible.Store(nil)
		return
	}
	l.onVisible.Store(&f)
}

// tellVisible calls the OnVisible function if records became readable
// since it was last called. Call with no lock held.
func (l *Log) tellVisible() {
	f := l.onVisible.Load()
	if f == nil {
		return
	}
	l.mu.Lock()
	v := l.visible
	l.mu.Unlock()
	if old := l.told.Load(); v > old && l.told.CompareAndSwap(old, v) {
		(*f)()
	}
}

func (l *Log) read(ctx context.Context, after uint64, max int, dst []Record, wait bool) ([]Record, error) {
	if max < 1 {
		max = 1
	}
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return dst[:0], ErrClosed
		}
		visible := l.visible
		if after >= visible && !wait {
			l.mu.Unlock()
			return dst[:0], nil
		}
		if after >= visible {
			// publish closes notify only while someone waits, so a
			// busy forwarder costs no channel per record.
			l.waiting = true
			ch := l.notify
			l.mu.Unlock()
			select {
			case <-ctx.Done():
				return dst[:0], ctx.Err()
			case <-ch:
			}
			continue
		}
		l.mu.Unlock()
		l.rmu.Lock()
		recs, err := l.readWith(&l.cur, after, max, dst, visible)
		failing := errors.Is(err, errUnavailable)
		if failing != l.readFailing {
			l.readFailing = failing
			if failing {
				l.log.Warn("cannot open a segment to read it; retrying", "error", err)
			} else {
				l.log.Info("segments readable again")
			}
		}
		l.rmu.Unlock()
		if failing {
			if len(recs) > 0 {
				return recs, nil
			}
			if !wait {
				return dst[:0], ErrUnavailable
			}
			if err := l.pause(ctx, readRetry); err != nil {
				return dst[:0], err
			}
			continue
		}
		if err != nil || len(recs) > 0 {
			return recs, err
		}
		// Everything up to visible was skipped as damaged.
		after = visible
	}
}

// readWith reads records (after, visible] through c. Call with the lock
// that guards c held.
func (l *Log) readWith(c *cursor, after uint64, max int, dst []Record, visible uint64) ([]Record, error) {
	out := dst[:0]
	s := after + 1
	for len(out) < max && s <= visible {
		l.mu.Lock()
		seg, next := l.findSeg(s)
		if seg == nil {
			l.mu.Unlock()
			return out, nil
		}
		if s < seg.first {
			s = seg.first
		}
		end := min(seg.end(), visible+1)
		size := seg.size
		bad := seg.badFrom
		l.mu.Unlock()
		if bad != 0 && s >= bad {
			if next == nil {
				// The active segment is damaged: have the writer
				// seal it; new records go to a fresh segment.
				l.mu.Lock()
				l.needRotate = true
				l.mu.Unlock()
				l.poke()
				return out, nil
			}
			l.mu.Lock()
			if !seg.lostCounted {
				seg.lostCounted = true
				l.st.DroppedCorrupt += seg.end() - bad
			}
			l.mu.Unlock()
			s = next.first
			continue
		}
		if s >= end {
			if next == nil || seg.end() > visible {
				return out, nil
			}
			s = next.first
			continue
		}
		var err error
		out, s, err = l.readSeg(c, seg, s, end, size, max, out)
		if errors.Is(err, errUnavailable) {
			c.close()
			return out, err
		}
		if err != nil {
			l.mu.Lock()
			gone := true
			for _, sg := range l.segs {
				gone = gone && sg != seg
			}
			if gone {
				// Dropped or reclaimed while we read: not damage.
				l.mu.Unlock()
				c.close()
				continue
			}
			if seg.badFrom == 0 || s < seg.badFrom {
				seg.badFrom = s
			}
			l.st.CorruptRecovered++
			l.mu.Unlock()
			l.log.Warn("damaged record found while reading; skipping the rest of its segment", "error", err, "seq", s)
			c.close()
		}
	}
	return out, nil
}

// findSeg returns the first segment holding seq s or, if s was dropped,
// the first segment after it; and the segment after that. Call with mu.
func (l *Log) findSeg(s uint64) (seg, next *segment) {
	for i, sg := range l.segs {
		if s < sg.end() || i == len(l.segs)-1 {
			if i+1 < len(l.segs) {
				next = l.segs[i+1]
			}
			return sg, next
		}
	}
	return nil, nil
}

// readSeg reads records [s, end) of seg, up to max in out. It returns the
// seq it stopped at.
func (l *Log) readSeg(c *cursor, seg *segment, s, end uint64, size int64, max int, out []Record) ([]Record, uint64, error) {
	if c.seg != seg || c.next > s {
		c.close()
		f, err := l.fs.OpenFile(l.path(seg.name), os.O_RDONLY, 0)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			// EMFILE, ENOMEM, a permission slip: not damage, and
			// skipping the segment would drop its records for good.
			return out, s, fmt.Errorf("%w: %w", errUnavailable, err)
		}
		if err != nil {
			return out, s, &CorruptError{Segment: l.path(seg.name), Offset: 0, Err: err}
		}
		c.seg, c.f, c.next = seg, f, seg.first
		c.fr.off = segHeaderSize
	}
	// The segment may have grown. What the reader has not read yet may
	// all be in the tail the writer keeps: then no file read.
	l.mu.Lock()
	if l.tailSeg == seg && l.tailOff <= c.fr.off && c.fr.off < l.tailOff+int64(len(l.tail)) && c.fr.off < size {
		c.mem.b = append(c.mem.b[:0], l.tail[c.fr.off-l.tailOff:size-l.tailOff]...)
		c.mem.off = c.fr.off
		l.mu.Unlock()
		c.fr.reset(&c.mem, c.fr.off, size)
	} else {
		l.mu.Unlock()
		if !c.fr.resume(c.f, c.fr.off, size) {
			c.fr.reset(c.f, c.fr.off, size)
		}
	}
	var scratch []byte
	for c.next < end && len(out) < max {
		want := c.next >= s
		var body []byte
		if want {
			if len(out) < cap(out) {
				body = out[:len(out)+1][len(out)].Body[:0]
			}
		} else {
			body = scratch
		}
		body, t, err := c.fr.next(body)
		if err != nil {
			return out, c.next, &CorruptError{Segment: l.path(seg.name), Offset: c.fr.off, Err: err}
		}
		if want {
			out = append(out, Record{Seq: c.next, Body: body, Time: time.Unix(0, t)})
		} else {
			scratch = body
		}
		c.next++
	}
	return out, c.next, nil
}

// errUnavailable says a segment could not be opened for a reason other
// than its absence: Read waits readRetry and tries again.
var errUnavailable = errors.New("wal: segment unavailable")

const readRetry = 250 * time.Millisecond

// pause waits d on the log's clock, or until ctx is done or the log
// closes.
func (l *Log) pause(ctx context.Context, d time.Duration) error {
	t := l.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-l.done:
		return ErrClosed
	case <-t.C():
		return nil
	}
}

// poke wakes the housekeeping goroutine.
func (l *Log) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}
