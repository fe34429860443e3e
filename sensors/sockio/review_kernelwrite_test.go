package sockio

import (
	"os"
	"testing"
)

// Under -race, syscall.Read records the kernel's write into the buffer
// (race.WriteRange): a goroutine reading the buffer while another Reads
// into it is reported. Through Conn's raw read it is not. This test is
// meant to FAIL under -race (a race found) in both modes; with
// SOCKIO_REVIEW_WRAP=1 it passes, which is the finding: the race is
// invisible. Skipped unless SOCKIO_REVIEW_KW is set.
func TestReviewKernelWriteVisibleToRace(t *testing.T) {
	if os.Getenv("SOCKIO_REVIEW_KW") == "" {
		t.Skip("demonstration: run with SOCKIO_REVIEW_KW=1 [SOCKIO_REVIEW_WRAP=1] -race")
	}
	wrap := os.Getenv("SOCKIO_REVIEW_WRAP") != ""
	w, r := tcpPair(t, false, wrap)
	buf := make([]byte, 1)
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		close(started)
		r.Read(buf)
		close(done)
	}()
	<-started
	w.Write([]byte{7})
	<-done
	_ = buf[0] // ordered by <-done: no race here; the race is below
	go func() { r.Read(buf) }()
	w.Write([]byte{8})
	for buf[0] != 8 { // unsynchronized read of what the kernel writes
	}
}
