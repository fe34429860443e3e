package benchrig

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Rig owns what a measuring command starts: a temporary directory and a
// stack of cleanups (stop this process by PID, close that client), run
// in reverse order by Close, by Fatal and on SIGINT/SIGTERM, so no
// mosquitto or edged outlives the command, whatever way it ends.
type Rig struct {
	Dir string // removed by Close

	mu       sync.Mutex
	cleanups []func()
	once     sync.Once
	sigs     chan os.Signal
}

// New makes the temporary directory (named after prefix) and starts
// listening for SIGINT and SIGTERM.
func New(prefix string) (*Rig, error) {
	dir, err := os.MkdirTemp("", prefix+"-")
	if err != nil {
		return nil, err
	}
	r := &Rig{Dir: dir, sigs: make(chan os.Signal, 1)}
	signal.Notify(r.sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s, ok := <-r.sigs
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "%s: %v: stopping what was started\n", prefix, s)
		r.Close()
		os.Exit(130)
	}()
	return r, nil
}

// Defer adds f to the cleanups.
func (r *Rig) Defer(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

// Close runs the cleanups, last first, and removes Dir. A call while
// another runs waits for it; later calls do nothing.
func (r *Rig) Close() {
	r.once.Do(func() {
		signal.Stop(r.sigs)
		r.mu.Lock()
		cs := r.cleanups
		r.mu.Unlock()
		for i := len(cs) - 1; i >= 0; i-- {
			cs[i]()
		}
		_ = os.RemoveAll(r.Dir)
		close(r.sigs)
	})
}

// Fatal prints err, closes the rig and exits 1.
func (r *Rig) Fatal(err error) {
	fmt.Fprintln(os.Stderr, err)
	r.Close()
	os.Exit(1)
}
