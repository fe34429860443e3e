//go:build edgedfailpoints

package main

import (
	"os"
	"syscall"
	"time"
)

// crashAfterEnv makes `edged run` of a failpoint build kill itself
// (SIGKILL) that long after READY=1, e.g. EDGED_CRASH_AFTER=5s: a build
// that starts well and crashes seconds later, which a deploy must not
// call good (TestDeployIntegration). Release builds have no such code.
const crashAfterEnv = "EDGED_CRASH_AFTER"

// armCrash starts the countdown of crashAfterEnv, if it is set.
func armCrash() {
	d, err := time.ParseDuration(os.Getenv(crashAfterEnv))
	if err != nil || d <= 0 {
		return
	}
	time.AfterFunc(d, func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) })
}
