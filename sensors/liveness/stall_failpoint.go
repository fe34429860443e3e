//go:build edgedfailpoints

package liveness

import (
	"os"
	"strings"
	"sync"
	"time"
)

// StallEnv names the environment variable of the failpoint build: NAME@D
// (e.g. "control/heat@3s") makes the loop NAME block for ever in its first
// Expect at least D after start, as a loop stuck in a driver or on a disk
// would. Tests build edged with -tags edgedfailpoints to see what a stuck
// loop does to /healthz and the watchdog; release builds have no such
// code.
const StallEnv = "EDGED_STALL"

var stallAt = sync.OnceValues(func() (string, time.Duration) {
	name, after, _ := strings.Cut(os.Getenv(StallEnv), "@")
	d, _ := time.ParseDuration(after)
	return name, d
})

func (b *Beat) stall() {
	if name, after := stallAt(); name == b.name && time.Since(epoch) >= after {
		select {}
	}
}
