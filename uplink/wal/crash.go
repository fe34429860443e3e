package wal

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
	// CrashRotate: the sealed segment synced and closed, the next one
	// created with half its header.
	CrashRotate = "rotate"
	// CrashAckMarker: half of the fsynced ack marker's temporary file
	// written, before its fsync and rename.
	CrashAckMarker = "ack-marker"
	// CrashAckLive: half of the ack.live stamp overwritten in place.
	CrashAckLive = "ack-live"
)

// CrashPoints lists every crash point.
var CrashPoints = []string{CrashAppend, CrashFsync, CrashRotate, CrashAckMarker, CrashAckLive}
