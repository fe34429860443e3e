package control

import (
	"testing"
	"testing/synctest"
	"time"
)

// stallingWrite is a state file write that blocks until released, as a
// write, fsync, rename and directory fsync on a stalled SD card do.
type stallingWrite struct {
	entered chan struct{} // one value per write that began
	release chan struct{} // closed: every write returns
}

func newStallingWrite() *stallingWrite {
	return &stallingWrite{entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (s *stallingWrite) write(string, []byte) error {
	s.entered <- struct{}{}
	<-s.release
	return nil
}

// Regression for a state file write on the Run goroutine (issue 9
// review): a write that stalled on the SD card froze the loop, so a
// relay pulse ran past its end and a reading beyond cutoff_above did not
// switch the heater off until the disk answered.
func TestStateWriteDoesNotHoldTheRelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := guardOpts(FailSafe)
		o.Cycle = time.Minute
		h := newHarness(t, o, t.TempDir())
		stall := newStallingWrite()
		h.l.writeFile = stall.write
		h.start()
		released := false
		release := func() {
			if !released {
				released = true
				close(stall.release)
			}
		}
		defer release() // before the loop stops (Cleanup runs after)
		h.read(20)
		h.command(`{"mode":"manual","output":0.5}`) // 30 s pulse from 0 s
		select {
		case <-stall.entered:
		case <-time.After(capWait):
			t.Fatal("the command's state write did not start")
		}
		h.act.take()
		// The disk stalls for the rest of the test; the loop carries on.
		h.advanceTo(h.at(31 * time.Second))
		if got, want := h.act.take(), []call{{"set", 0, 30 * time.Second}}; !callsEqual(got, want) {
			t.Errorf("pulse end with the disk stalled: calls %v, want %v", got, want)
		}
		h.advanceTo(h.at(60 * time.Second)) // the next window's pulse
		h.act.take()
		h.advanceTo(h.at(65 * time.Second))
		h.read(50) // beyond cutoff_above 35
		if got, want := h.act.take(), []call{{"set", 0, 65 * time.Second}}; !callsEqual(got, want) {
			t.Errorf("cutoff with the disk stalled: calls %v, want %v", got, want)
		}
		release()
		if err := h.stop(); err != nil {
			t.Fatal(err)
		}
	})
}
