//go:build !edgedfailpoints

package liveness

// stall is a failpoint in builds with the edgedfailpoints tag (see
// stall_failpoint.go); here it is nothing.
func (b *Beat) stall() {}
