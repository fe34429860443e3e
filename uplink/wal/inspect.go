package wal

import (
	"bufio"
	"fmt"
	"io"
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

// Inspect reads dir without the lock and without writing anything, so it
// works beside a running daemon: it sees whatever complete records the
// kernel has, which may be newer than what the daemon has synced. It scans
// every segment once.
func Inspect(dir string) (Inspection, error) {
	var in Inspection
	ents, err := os.ReadDir(dir)
	if err != nil {
		return in, fmt.Errorf("wal: read buffer directory: %w", err)
	}
	var names []string
	for _, e := range ents {
		if _, ok := parseSegName(e.Name()); ok {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	markers := map[uint64]uint64{} // epoch -> acked, the newer of both markers
	for _, m := range []string{markerName, markerLive} {
		b, err := os.ReadFile(filepath.Join(dir, m))
		if err != nil {
			continue
		}
		if e, a, err := decodeMarker(b); err == nil && a > markers[e] {
			markers[e] = a
		}
	}
	fh := [frameHeaderSize]byte{}
	var body []byte
	first := true
	for _, name := range names {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			in.Skipped++
			continue
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			in.Skipped++
			continue
		}
		size := fi.Size()
		br := bufio.NewReaderSize(f, 64<<10)
		hb := make([]byte, segHeaderSize)
		_, herr := io.ReadFull(br, hb)
		h, _, derr := decodeSegHeader(hb)
		if herr != nil || derr != nil || (!first && h.epoch != in.Epoch) {
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
		seq, remain := h.first, size-segHeaderSize
		for {
			var t int64
			var n int
			body, t, n, err = readFrame(br, &fh, body, remain)
			if err != nil {
				break
			}
			remain -= int64(n)
			in.LastSeq = seq
			if seq > in.AckedSeq {
				in.Backlog++
				in.BacklogBytes += int64(n)
				if in.Oldest.IsZero() {
					in.Oldest = time.Unix(0, t)
				}
			}
			seq++
		}
		f.Close()
	}
	if in.LastSeq > 0 {
		in.AckedSeq = min(in.AckedSeq, in.LastSeq)
	}
	return in, nil
}
