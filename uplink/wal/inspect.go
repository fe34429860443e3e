package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Inspection is a read-only view of a buffer directory, for `edged buffer
// stat` while the daemon runs.
type Inspection struct {
	Epoch     uint64
	Segments  int
	DiskBytes int64
	FirstSeq  uint64 // oldest record on disk; 0 if none
	LastSeq   uint64 // newest complete record on disk; 0 if none
	// AckedSeq is the newest acknowledged seq the markers record. It may
	// lag the running daemon by one ack batch.
	AckedSeq     uint64
	Backlog      uint64 // records after AckedSeq
	BacklogBytes int64  // their frame bytes
	Oldest       time.Time
	// Skipped counts segment files that could not be read or are not of
	// this buffer; the daemon repairs them on its next start.
	Skipped int
}

// Inspect reads dir on fsys (nil: OSFS) without the lock and without
// writing anything, so it works beside a running daemon: it sees whatever
// complete records the kernel has, which may be newer than what the daemon
// has synced. It scans every segment once.
func Inspect(fsys FS, dir string) (Inspection, error) {
	if fsys == nil {
		fsys = OSFS
	}
	var in Inspection
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		return in, fmt.Errorf("wal: read buffer directory: %w", err)
	}
	var names []string
	for _, n := range ents {
		if _, ok := parseSegName(n); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	markers := map[uint64]uint64{} // epoch -> acked, the newer of both markers
	for _, m := range []string{markerName, markerLive} {
		b, err := readStamp(fsys, filepath.Join(dir, m))
		if err != nil {
			continue
		}
		if e, a, err := decodeMarker(b); err == nil && a > markers[e] {
			markers[e] = a
		}
	}
	var fr frameReader
	var body []byte
	first := true
	for _, name := range names {
		f, err := fsys.OpenFile(filepath.Join(dir, name), os.O_RDONLY, 0)
		if err != nil {
			in.Skipped++
			continue
		}
		size, err := f.Size()
		var h segHeader
		if err == nil {
			h, _, err = readSegHeader(f)
		}
		if err != nil || (!first && h.epoch != in.Epoch) {
			f.Close()
			in.Skipped++
			continue
		}
		if first {
			first = false
			in.Epoch = h.epoch
			in.FirstSeq = h.first
			in.AckedSeq = max(markers[h.epoch], h.first-1)
		}
		in.Segments++
		in.DiskBytes += size
		seq := h.first
		for fr.reset(f, segHeaderSize, size); ; seq++ {
			from := fr.off
			var t int64
			body, t, err = fr.next(body)
			if err != nil {
				break
			}
			in.LastSeq = seq
			if seq > in.AckedSeq {
				in.Backlog++
				in.BacklogBytes += fr.off - from
				if in.Oldest.IsZero() {
					in.Oldest = time.Unix(0, t)
				}
			}
		}
		f.Close()
	}
	if in.LastSeq > 0 {
		in.AckedSeq = min(in.AckedSeq, in.LastSeq)
	}
	return in, nil
}
