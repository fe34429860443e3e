package main

import (
	"os"
	"sync"
)

// serveSignals runs reloads, one at a time and each on a goroutine of
// its own, until a stop signal comes on sig; it returns that signal and
// a channel that closes when the reload still running then has
// returned (nil if none runs). A reload that waits on a stuck disk never
// keeps a stop signal waiting. SIGHUPs that come during a reload make
// one more reload after it, not one each; a stop that comes with a
// SIGHUP wins. No reload starts after the stop signal.
func serveSignals(sig, hup <-chan os.Signal, reload func()) (os.Signal, <-chan struct{}) {
	var running chan struct{} // nil while idle
	pending := false
	begin := func() {
		// A SIGHUP that came before this reload reads the file is
		// served by it.
		select {
		case <-hup:
		default:
		}
		running = make(chan struct{})
		go func(done chan struct{}) {
			defer close(done)
			reload()
		}(running)
	}
	for {
		select {
		case s := <-sig:
			return s, running
		case <-hup:
			select {
			case s := <-sig:
				return s, running
			default:
			}
			if running != nil {
				pending = true
				continue
			}
			begin()
		case <-running: // a nil channel never receives
			running = nil
			if pending {
				// A stop that came with the reload's end wins, as above:
				// select picks among ready cases at random.
				select {
				case s := <-sig:
					return s, nil
				default:
				}
				pending = false
				begin()
			}
		}
	}
}

// reloadGate orders a reload with a stop. A reload reads and checks the
// file first, which may wait on a slow disk; a stop that comes by then
// drops it (enter says no) and goes ahead. Once entered, the reload
// changes the running rooms, and a stop waits for it (close returns a
// channel that leave closes), so a stop never runs on a half-applied
// config. After close, the reload's systemd notifications are not sent:
// no RELOADING=1 or READY=1 after STOPPING=1.
type reloadGate struct {
	mu       sync.Mutex
	closed   bool
	applying chan struct{} // non-nil between enter and leave
}

// enter is called by a reload before it changes anything; false means
// edged is stopping and the reload must change nothing.
func (g *reloadGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.applying = make(chan struct{})
	return true
}

// leave ends what enter began.
func (g *reloadGate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.applying)
	g.applying = nil
}

// close shuts the gate for good and returns a channel that closes when
// the reload applying now has left, or nil if none is applying.
func (g *reloadGate) close() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	return g.applying
}

// notify runs send (a systemd notification of the reload) unless the
// gate is closed, under the gate's lock: whoever sends STOPPING=1 after
// close knows no reload notification follows it.
func (g *reloadGate) notify(send func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		send()
	}
}
