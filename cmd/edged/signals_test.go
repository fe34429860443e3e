package main

import (
	"os"
	"syscall"
	"testing"
)

// fakeReloads is a reload function whose calls the test releases one
// by one: each call says it began on began, then waits on release.
type fakeReloads struct {
	began   chan int
	release chan struct{}
	n       int // calls; only the reload goroutine (one at a time) writes it
}

func newFakeReloads() *fakeReloads {
	return &fakeReloads{began: make(chan int, 10), release: make(chan struct{})}
}

func (f *fakeReloads) reload() {
	f.n++
	f.began <- f.n
	<-f.release
}

// sendSignal delivers s as os/signal does: dropped when the channel is full.
func sendSignal(c chan os.Signal, s os.Signal) {
	select {
	case c <- s:
	default:
	}
}

type served struct {
	s       os.Signal
	running <-chan struct{}
}

// serve runs serveSignals on a goroutine of its own; what it returns
// comes on the channel.
func serve(sig, hup chan os.Signal, f *fakeReloads) <-chan served {
	out := make(chan served, 1)
	go func() {
		s, running := serveSignals(sig, hup, f.reload)
		out <- served{s, running}
	}()
	return out
}

// TestServeSignalsStopDuringReload: a stop signal that comes while a
// reload is stuck is returned at once, with the running reload's
// channel, which closes only when that reload returns; SIGHUPs that came
// during it start no reload after the stop.
func TestServeSignalsStopDuringReload(t *testing.T) {
	sig, hup := make(chan os.Signal, 2), make(chan os.Signal, 1)
	f := newFakeReloads()
	out := serve(sig, hup, f)
	sendSignal(hup, syscall.SIGHUP)
	<-f.began // stuck until released
	sendSignal(hup, syscall.SIGHUP)
	sendSignal(sig, syscall.SIGTERM)
	r := <-out // served while the reload is stuck
	if r.s != syscall.SIGTERM || r.running == nil {
		t.Fatalf("serveSignals returned %v, %v; want SIGTERM and the running reload", r.s, r.running)
	}
	select {
	case <-r.running:
		t.Fatal("the running reload's channel closed before it returned")
	default:
	}
	close(f.release)
	<-r.running
	if f.n != 1 {
		t.Errorf("%d reloads, want 1: none after the stop", f.n)
	}
}

// TestServeSignalsCoalesce: SIGHUPs during a reload make one more
// reload after it, not one each; a stop with no reload running returns
// no channel.
func TestServeSignalsCoalesce(t *testing.T) {
	sig, hup := make(chan os.Signal, 2), make(chan os.Signal, 1)
	f := newFakeReloads()
	out := serve(sig, hup, f)
	sendSignal(hup, syscall.SIGHUP)
	<-f.began
	for range 5 {
		sendSignal(hup, syscall.SIGHUP)
	}
	f.release <- struct{}{} // the first reload returns
	if n := <-f.began; n != 2 {
		t.Fatalf("reload %d began, want the 2nd", n)
	}
	f.release <- struct{}{}
	// The second reload has returned once serveSignals is idle again;
	// a third starts only for a new SIGHUP.
	sendSignal(hup, syscall.SIGHUP)
	if n := <-f.began; n != 3 {
		t.Fatalf("reload %d began, want the 3rd", n)
	}
	f.release <- struct{}{}
	sendSignal(sig, syscall.SIGINT)
	r := <-out
	if r.s != syscall.SIGINT {
		t.Fatalf("signal %v, want SIGINT", r.s)
	}
	if r.running != nil {
		<-r.running // the 3rd may not have been seen to return yet
	}
	select {
	case n := <-f.began:
		t.Errorf("reload %d began: 5 SIGHUPs during one reload made more than one more", n)
	default:
	}
}

// TestServeSignalsStopWithHUP: a stop that is pending beside a SIGHUP
// wins: no reload starts.
func TestServeSignalsStopWithHUP(t *testing.T) {
	sig, hup := make(chan os.Signal, 2), make(chan os.Signal, 1)
	for range 20 { // select picks at random between two ready cases
		sendSignal(hup, syscall.SIGHUP)
		sendSignal(sig, syscall.SIGTERM)
		f := newFakeReloads()
		s, running := serveSignals(sig, hup, f.reload)
		if s != syscall.SIGTERM || running != nil || f.n != 0 {
			t.Fatalf("got %v, running %v, %d reloads; want SIGTERM and none", s, running, f.n)
		}
	}
}

// TestReloadGate: a reload that has not entered when the gate closes is
// refused and close returns no channel; one that entered makes close
// return a channel that its leave closes; after close no notification
// is sent.
func TestReloadGate(t *testing.T) {
	var g reloadGate
	sent := 0
	g.notify(func() { sent++ })
	if !g.enter() {
		t.Fatal("enter refused before close")
	}
	g.leave()
	if c := g.close(); c != nil {
		t.Error("close returned a channel with no reload applying")
	}
	if g.enter() {
		t.Error("enter allowed after close")
	}
	g.notify(func() { sent++ })
	if sent != 1 {
		t.Errorf("%d notifications, want 1: none after close", sent)
	}

	var h reloadGate
	if !h.enter() {
		t.Fatal("enter refused")
	}
	c := h.close()
	if c == nil {
		t.Fatal("close returned no channel while a reload applies")
	}
	select {
	case <-c:
		t.Fatal("closed before leave")
	default:
	}
	h.notify(func() { t.Error("notification after close") })
	h.leave()
	<-c
}
