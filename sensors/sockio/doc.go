// Package sockio does the socket I/O of the broker's LAN connections and
// the uplink's cloud connection with raw system calls on the
// non-blocking descriptor under a *net.TCPConn, still waiting in the
// runtime's poller, deadlines included, when the socket is not ready.
//
// Why: a system call made through the syscall package's Syscall wakes
// the runtime's sysmon thread whenever it sleeps deeply, which it does
// whenever every P is idle, that is between two messages at sensor
// rates. Each wake-up is a futex call and two or three thread switches
// (golang/go#18236); at 1,000 messages a second they were half of edged's
// context switches. A read or write of a non-blocking socket never
// blocks in the kernel, so it may bypass the scheduler's bookkeeping
// (syscall.RawSyscall), as the runtime's own non-blocking calls do.
// Regular files are not done so: a write to a file may block on the
// device, and a thread in a raw call holds up the garbage collector's
// stop-the-world until it returns.
//
// A race build keeps the ordinary calls (sys_race.go): the race
// detector learns of the ordering through a socket from them. So `make
// test`, which builds with -race, also runs this package's, the broker's
// and the uplink's tests without it.
//
// It owns: Conn, the net.Conn the listeners and the uplink hand out, and
// Writer, the one attempt to write without waiting of the broker's and
// the uplink's inline writes (a delivery or a message written by the
// goroutine that has it, instead of a hand-off to a writer goroutine).
// It owns no goroutine and allocates nothing per call.
package sockio
