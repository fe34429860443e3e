package uplink

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/uplink/wal"
)

// TestInflightWindow drives the window as the session does: it bounds
// PUBACKed messages behind an unacknowledged head too, acknowledges only
// the contiguous done prefix, ignores PUBACKs for unknown packet ids and
// never reuses a packet id still awaited, across many wraps of the ring
// and of the 16-bit ids.
func TestInflightWindow(t *testing.T) {
	f := newInflight(4)
	a, b := f.add(1), f.add(2)
	f.addDone(3) // QoS 0
	c := f.add(4)
	if f.room() != 0 || f.outstanding != 3 {
		t.Fatalf("room %d outstanding %d, want 0 and 3", f.room(), f.outstanding)
	}
	t0 := time.Unix(100, 0)
	f.sent(t0)
	if p, _ := f.ack(b); p.seq != 2 {
		t.Fatalf("PUBACK %d answered seq %d, want 2", b, p.seq)
	} else {
		p.done = true
	}
	if last := f.popDone(); last != 0 || f.room() != 0 {
		t.Fatalf("popDone %d room %d with the head unacknowledged; want 0, 0", last, f.room())
	}
	if _, ok := f.ack(b); ok {
		t.Fatal("a second PUBACK for the same id matched")
	}
	if _, ok := f.ack(999); ok {
		t.Fatal("a PUBACK for an id never sent matched")
	}
	p, _ := f.ack(a)
	p.done = true
	if last := f.popDone(); last != 3 || f.room() != 3 {
		t.Fatalf("popDone %d room %d; want 3 (seqs 1-3 done) and 3", last, f.room())
	}
	if p, ok := f.first(); !ok || p.seq != 4 || p.sent != t0 {
		t.Fatalf("first %+v, want seq 4 sent at %v", p, t0)
	}

	// Many wraps: every id in use is unique, and the acked seq follows
	// the done prefix.
	seq := uint64(4)
	awaited := map[uint16]uint64{c: 4}
	for i := range 200000 {
		for f.room() > 0 {
			seq++
			id := f.add(seq)
			if _, dup := awaited[id]; dup || id == 0 {
				t.Fatalf("id %d handed out while still awaited (or zero)", id)
			}
			awaited[id] = seq
		}
		f.sent(time.Unix(int64(i), 0))
		// Acknowledge all but the newest, oldest last.
		head, _ := f.first()
		for id, s := range awaited {
			if s != seq && s != head.seq {
				p, _ := f.ack(id)
				p.done = true
				delete(awaited, id)
			}
		}
		if f.popDone() != 0 {
			t.Fatal("popped past an unacknowledged head")
		}
		p, _ := f.ack(head.pid)
		p.done = true
		delete(awaited, head.pid)
		if last := f.popDone(); last != seq-1 {
			t.Fatalf("acked up to %d, want %d", last, seq-1)
		}
	}
}

// TestPubackSplitAcrossTicks: a PUBACK whose bytes arrive on either side
// of the reader's tick (its read deadline) is applied, not lost or
// misread: the reader only peeks until a whole packet is buffered.
func TestPubackSplitAcrossTicks(t *testing.T) {
	lg, err := wal.Open(t.TempDir(), wal.Opts{})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	for range 3 {
		if _, err := lg.Append(appendBody(nil, &Message{Topic: "c/a", QoS: 1})); err != nil {
			t.Fatal(err)
		}
	}
	a, b := net.Pipe()
	defer b.Close()
	u := &Uplink{log: slog.New(slog.DiscardHandler), clock: sensors.SystemClock, ackTimeout: time.Minute}
	s := &session{u: u, ws: u.newWalState(lg), nc: a, br: bufio.NewReader(a), ka: time.Second,
		win: newInflight(4), room: make(chan struct{}, 1), dead: make(chan struct{}), rdone: make(chan struct{}), quit: func() {}}
	s.lastWrite.Store(time.Now().UnixNano())
	s.win.add(1)
	s.win.add(2)
	s.win.add(3)
	s.win.sent(time.Now())
	go func() { _, _ = io.Copy(io.Discard, b) }() // PINGREQs
	go s.readLoop()
	// PUBACK pid 1, then pid 2 split after its first byte and again
	// after its length, each part more than a tick (500 ms) apart.
	for _, part := range [][]byte{{0x40, 2, 0, 1, 0x40}, {2}, {0, 2}} {
		if _, err := b.Write(part); err != nil {
			t.Fatalf("%v (the session failed: %v)", err, s.failed())
		}
		time.Sleep(600 * time.Millisecond)
	}
	a.Close()
	<-s.rdone
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.end.acked != 2 || !s.end.progressed || s.win.outstanding != 1 {
		t.Fatalf("acked %d progressed %v outstanding %d; want 2, true, 1", s.end.acked, s.end.progressed, s.win.outstanding)
	}
	if got := lg.Stats().AckedSeq; got != 2 {
		t.Errorf("buffer acknowledged up to %d, want 2", got)
	}
}
