package wallclock

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edged/edged/sensors"
)

// maxErrorSynced is the kernel's maximum error below which the clock
// counts as synchronised, as systemd's timedatectl decides "System clock
// synchronized" (the kernel sets maxerror to 16 s when no NTP daemon has
// disciplined it; STA_UNSYNC alone is not the test: chrony sets it on
// purpose to stop the kernel's RTC sync).
const maxErrorSynced = 16_000_000 // µs

// Adjtimex asks the kernel with adjtimex(2), modes 0: a read, allowed
// without privileges.
var Adjtimex Kernel = KernelFunc(func() (bool, error) {
	var tx unix.Timex
	if _, err := unix.Adjtimex(&tx); err != nil {
		return false, fmt.Errorf("wallclock: adjtimex: %w", err)
	}
	return tx.Maxerror < maxErrorSynced, nil
})

// SystemBootOffset returns Opts.BootOffset for clk: the time since boot
// (CLOCK_MONOTONIC, what the kernel's timers and Go's monotonic clock run
// on) at clk's Mono origin. One system call, at start.
func SystemBootOffset(clk sensors.Monotonic) (time.Duration, error) {
	var ts unix.Timespec
	m0 := clk.Mono()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("wallclock: clock_gettime: %w", err)
	}
	m1 := clk.Mono()
	return time.Duration(ts.Nano()) - (m0+m1)/2, nil
}
