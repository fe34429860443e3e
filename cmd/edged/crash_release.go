//go:build !edgedfailpoints

package main

// armCrash does nothing: only a build with -tags edgedfailpoints can be
// told to crash after READY=1 (crash_failpoint.go).
func armCrash() {}
