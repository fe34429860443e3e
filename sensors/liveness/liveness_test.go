package liveness

import (
	"testing"
	"time"
)

func TestOverdue(t *testing.T) {
	b := New("control/heat")
	if got := b.Overdue(); got != 0 {
		t.Errorf("a new beat is %v overdue, want 0 (idle until its first Expect)", got)
	}
	b.Expect(time.Hour)
	if got := b.Overdue(); got != 0 {
		t.Errorf("due in an hour: overdue %v, want 0", got)
	}
	b.Expect(-time.Second) // its deadline passed a second ago
	if got := b.Overdue(); got < time.Second {
		t.Errorf("due a second ago: overdue %v, want >= 1s", got)
	}
	b.Idle()
	if got := b.Overdue(); got != 0 {
		t.Errorf("idle: overdue %v, want 0", got)
	}
	if b.Name() != "control/heat" {
		t.Errorf("Name() = %q", b.Name())
	}
}

func TestNilBeatIgnoresCalls(t *testing.T) {
	var b *Beat
	b.Expect(-time.Second)
	b.Idle()
	if b.Overdue() != 0 || b.Name() != "" {
		t.Error("a nil beat reported something")
	}
}

func TestExpectAllocatesNothing(t *testing.T) {
	b := New("sensor/air")
	if n := testing.AllocsPerRun(100, func() { b.Expect(time.Second); b.Idle() }); n != 0 {
		t.Errorf("Expect+Idle allocate %v times, want 0", n)
	}
}
