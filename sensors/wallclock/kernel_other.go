//go:build !linux

package wallclock

import (
	"errors"
	"time"

	"github.com/edged/edged/sensors"
)

var errNotLinux = errors.New("wallclock: only Linux tells whether its clock is synchronised")

// Adjtimex is Linux only: elsewhere it always fails, and the floor and
// jumps decide alone.
var Adjtimex Kernel = KernelFunc(func() (bool, error) { return false, errNotLinux })

// SystemBootOffset is Linux only.
func SystemBootOffset(sensors.Monotonic) (time.Duration, error) { return 0, errNotLinux }
