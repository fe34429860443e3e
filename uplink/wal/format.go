package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"

	"github.com/edged/edged/sensors/statefile"
)

// On-disk format, version 1. All integers are little-endian.
//
// Segment header (segHeaderSize bytes):
//
//	magic "edgedWAL" | version u32 | epoch u64 | first seq u64 | gap from u64 | crc32c u32 (of the bytes before)
//
// "gap from", when not zero, says seqs gap from .. first-1 were skipped on
// purpose (never issued, see recover.go), so the next recovery does not
// report them as lost.
//
// Record frame (frameHeaderSize bytes + body):
//
//	len u32 | crc u32 | append time i64 (unix ns) | body [len]
//
// The frame CRC is crc32c over len, time and body, XORed with crcMask. The
// mask is what makes an all-zero region invalid: the masked CRC of a zero
// header is not zero (a test pins this), so a zero-filled tail never parses
// as an empty record. Seqs are not stored per record: a record's seq is its
// segment's first seq plus its index, so seqs cannot disagree with order.
const (
	segMagic        = "edgedWAL"
	segVersion      = 1
	segHeaderSize   = 40
	frameHeaderSize = 16
	crcMask         = 0xa282ead8

	// MaxRecordBytes caps one record body. Recovery refuses any frame
	// whose length field is above it, so garbage cannot make it read or
	// allocate more than this.
	MaxRecordBytes = 1 << 20

	segSuffix  = ".wal"
	segNameLen = 20 + len(segSuffix)
	markerName = "ack"
	markerTmp  = markerName + statefile.TempSuffix
	// markerLive is rewritten in place, without fsync, after every ack
	// batch: it survives a process crash (the page cache does), so a
	// kill -9 redelivers only what was in flight, while the fsynced
	// marker above bounds what a power cut redelivers.
	markerLive  = "ack.live"
	markerSize  = 28
	markerMagic = "edgedACK"
	// leaseName holds the lease: the highest seq the log may show to a
	// reader before the record is fsynced. It is written atomically
	// (temp file, fsync, rename, directory fsync) before any such seq is
	// shown, and recovery never issues a seq at or below it again, so a
	// seq the cloud may have received is never reused after a power cut.
	leaseName  = "lease"
	leaseTmp   = leaseName + statefile.TempSuffix
	leaseMagic = "edgedSEQ"
	// leaseBlock is how far ahead of the newest record a lease reaches:
	// one lease write per leaseBlock/2 records at most, and a crash
	// leaves a seq gap of at most this many. (Opts.leaseBlock lets tests
	// renew it often.)
	leaseBlock = 1 << 16
	// leaseUnknownSkip is how many seqs recovery skips when the lease
	// file exists but cannot be read: more than a segment of the largest
	// allowed size can hold (256 MiB / 16-byte frames), plus a lease block.
	leaseUnknownSkip = 1 << 32
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Decoding errors. They stay unexported: callers see ErrCorrupt through a
// *CorruptError.
var (
	errShort    = errors.New("truncated")
	errLength   = errors.New("length field out of range")
	errChecksum = errors.New("checksum mismatch")
	errMagic    = errors.New("bad magic")
	errVersion  = errors.New("unsupported version")
)

type segHeader struct {
	epoch, first, gapFrom uint64
}

func appendSegHeader(dst []byte, h segHeader) []byte {
	var b [segHeaderSize]byte
	copy(b[:8], segMagic)
	binary.LittleEndian.PutUint32(b[8:], segVersion)
	binary.LittleEndian.PutUint64(b[12:], h.epoch)
	binary.LittleEndian.PutUint64(b[20:], h.first)
	binary.LittleEndian.PutUint64(b[28:], h.gapFrom)
	binary.LittleEndian.PutUint32(b[36:], crc32.Checksum(b[:36], castagnoli))
	return append(dst, b[:]...)
}

// decodeSegHeader checks magic first, then version, then the CRC, so the
// caller can tell an alien file from a damaged one.
func decodeSegHeader(b []byte) (segHeader, uint32, error) {
	if len(b) >= 8 && string(b[:8]) != segMagic || len(b) < 8 && string(b) != segMagic[:len(b)] {
		return segHeader{}, 0, errMagic
	}
	if len(b) < segHeaderSize {
		return segHeader{}, 0, errShort
	}
	v := binary.LittleEndian.Uint32(b[8:])
	if v != segVersion {
		return segHeader{}, v, errVersion
	}
	if crc32.Checksum(b[:36], castagnoli) != binary.LittleEndian.Uint32(b[36:]) {
		return segHeader{}, v, errChecksum
	}
	return segHeader{
		epoch:   binary.LittleEndian.Uint64(b[12:]),
		first:   binary.LittleEndian.Uint64(b[20:]),
		gapFrom: binary.LittleEndian.Uint64(b[28:]),
	}, v, nil
}

func frameCRC(hdr, body []byte) uint32 {
	c := crc32.Update(0, castagnoli, hdr[0:4])
	c = crc32.Update(c, castagnoli, hdr[8:16])
	c = crc32.Update(c, castagnoli, body)
	return c ^ crcMask
}

// appendFrame builds the header in dst itself: a local array would move
// to the heap (the CRC's assembly keeps its argument), one allocation per
// record.
func appendFrame(dst, body []byte, unixNano int64) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, frameHeaderSize)...)
	h := dst[n:]
	binary.LittleEndian.PutUint32(h[0:], uint32(len(body)))
	binary.LittleEndian.PutUint64(h[8:], uint64(unixNano))
	binary.LittleEndian.PutUint32(h[4:], frameCRC(h, body))
	return append(dst, body...)
}

// frameLen validates the length field of a frame header and returns the
// body length.
func frameLen(hdr []byte) (int, error) {
	n := binary.LittleEndian.Uint32(hdr[0:])
	if n > MaxRecordBytes {
		return 0, errLength
	}
	return int(n), nil
}

// checkFrame verifies a complete frame header against its body and
// returns the append time.
func checkFrame(hdr, body []byte) (int64, error) {
	if binary.LittleEndian.Uint32(hdr[4:]) != frameCRC(hdr, body) {
		return 0, errChecksum
	}
	return int64(binary.LittleEndian.Uint64(hdr[8:])), nil
}

// decodeFrame decodes the frame at the start of b. It returns the body (a
// sub-slice of b), the append time and the frame's total size. It never
// reads past b and never trusts the length field beyond MaxRecordBytes.
func decodeFrame(b []byte) (body []byte, unixNano int64, size int, err error) {
	if len(b) < frameHeaderSize {
		return nil, 0, 0, errShort
	}
	n, err := frameLen(b)
	if err != nil {
		return nil, 0, 0, err
	}
	if len(b)-frameHeaderSize < n {
		return nil, 0, 0, errShort
	}
	body = b[frameHeaderSize : frameHeaderSize+n]
	t, err := checkFrame(b[:frameHeaderSize], body)
	if err != nil {
		return nil, 0, 0, err
	}
	return body, t, frameHeaderSize + n, nil
}

// The ack marker and the lease are both a stamp: magic ("edgedACK",
// "edgedSEQ") | epoch u64 | seq u64 | crc32c u32.
func encodeMarker(epoch, acked uint64) []byte { return encodeStamp(markerMagic, epoch, acked) }

func decodeMarker(b []byte) (epoch, acked uint64, err error) { return decodeStamp(markerMagic, b) }

func encodeLease(epoch, leased uint64) []byte { return encodeStamp(leaseMagic, epoch, leased) }

func decodeLease(b []byte) (epoch, leased uint64, err error) { return decodeStamp(leaseMagic, b) }

func encodeStamp(magic string, epoch, seq uint64) []byte {
	b := make([]byte, markerSize)
	putStamp(b, magic, epoch, seq)
	return b
}

// putStamp encodes a stamp into b[:markerSize].
func putStamp(b []byte, magic string, epoch, seq uint64) {
	copy(b, magic)
	binary.LittleEndian.PutUint64(b[8:], epoch)
	binary.LittleEndian.PutUint64(b[16:], seq)
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], castagnoli))
}

func decodeStamp(magic string, b []byte) (epoch, seq uint64, err error) {
	if len(b) != markerSize {
		return 0, 0, errShort
	}
	if string(b[:8]) != magic {
		return 0, 0, errMagic
	}
	if crc32.Checksum(b[:24], castagnoli) != binary.LittleEndian.Uint32(b[24:]) {
		return 0, 0, errChecksum
	}
	return binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:]), nil
}

// segName returns the file name of the segment whose first seq is first.
func segName(first uint64) string {
	return fmt.Sprintf("%020d%s", first, segSuffix)
}

// parseSegName reports whether name looks like a segment and returns the
// first seq it claims.
func parseSegName(name string) (uint64, bool) {
	if len(name) != segNameLen || name[20:] != segSuffix {
		return 0, false
	}
	v, err := strconv.ParseUint(name[:20], 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}
