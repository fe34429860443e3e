package control

import (
	"errors"
	"time"
)

// ShareMap is sim_test.go's sim.Sharer, for the external tests.
type ShareMap = shareMap

// EnableSyncForTest lets Settle synchronise with l; call it before Run.
// It is for the external tests of this package (closedloop_test.go),
// which need configs and drivers, packages that import this one.
func EnableSyncForTest(l *Loop) { l.syncReq = make(chan chan struct{}) }

// Settle waits until l's Run goroutine has handled everything already
// due, as helpers_test.go's harness.settle does.
func Settle(l *Loop) error {
	done := make(chan struct{})
	select {
	case l.syncReq <- done:
	case <-time.After(realWait):
		return errors.New("control: loop goroutine does not answer")
	}
	select {
	case <-done:
		return nil
	case <-time.After(realWait):
		return errors.New("control: loop goroutine does not finish")
	}
}
