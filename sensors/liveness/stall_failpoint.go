//go:build edgedfailpoints

package liveness

import (
	"os"
	"strings"
	"sync"
	"time"
)

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
