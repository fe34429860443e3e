package wal

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// CrashEnv names the environment variable of the failpoint build (-tags
// edgedfailpoints): POINT@N makes the process kill itself with SIGKILL
// the Nth time it reaches POINT, one of CrashPoints, as a crash or an OOM
// kill would at the worst moment. The torture test (cmd/torture) uses it;
// release builds have no such code (crash_off.go).
const CrashEnv = "EDGED_WAL_CRASH"

// The crash points. Where a point tears a write, the first half of the
// bytes reaches the file before the kill.
const (
	// CrashAppend: half of a commit's frames written to the active
	// segment; the Appends of the batch have not returned.
	CrashAppend = "append"
	// CrashFsync: written and shown to the forwarder, the active
	// segment's fsync not yet made.
	CrashFsync = "fsync"
	// CrashRotate: the active segment sealed (under SyncAlways and
	// SyncNone also synced and closed), the next one created with half
	// its header.
	CrashRotate = "rotate"
	// CrashAckMarker: half of the fsynced ack marker's temporary file
	// written, before its fsync and rename.
	CrashAckMarker = "ack-marker"
	// CrashAckLive: half of the ack.live stamp overwritten in place.
	CrashAckLive = "ack-live"
)

// CrashPoints lists every crash point.
var CrashPoints = []string{CrashAppend, CrashFsync, CrashRotate, CrashAckMarker, CrashAckLive}

// ParseCrash reads a CrashEnv value, POINT@N: one of CrashPoints and a
// hit from 1.
func ParseCrash(s string) (point string, hit int64, err error) {
	point, at, _ := strings.Cut(s, "@")
	hit, err = strconv.ParseInt(at, 10, 64)
	if !slices.Contains(CrashPoints, point) || err != nil || hit < 1 {
		return "", 0, fmt.Errorf("wal: crash point %q: want POINT@N, POINT one of %s, N from 1", s, strings.Join(CrashPoints, ", "))
	}
	return point, hit, nil
}
