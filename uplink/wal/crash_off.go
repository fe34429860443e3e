//go:build !edgedfailpoints

package wal

// The crash points are failpoints in builds with the edgedfailpoints tag
// (crash_on.go); here they are empty and inlined away.

func crashAt(string) {}

func crashTorn(string, File, []byte) {}

func crashTornAt(string, File, []byte) {}

func crashTornFile(string, FS, string, string, []byte) {}
