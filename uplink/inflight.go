package uplink

import "time"

// inflight is the messages of one connection in send order, from the
// first one not yet acknowledged on. It bounds what may be sent (the
// window counts PUBACKed messages waiting behind an unacknowledged head
// too: a reconnect resends them, so at most the window is ever sent
// twice) and says up to where the buffer may be acknowledged. It is not
// safe for concurrent use; the session guards it.
type inflight struct {
	ring        []pending
	head        uint64 // index of the oldest entry; entry i lives at ring[i%len(ring)]
	n           int
	byPID       map[uint16]uint64
	nextPID     uint16
	outstanding int // QoS 1 messages awaiting PUBACK
	// answered is set once popDone has dropped a message a PUBACK
	// answered: the connection made progress.
	answered bool
}

// pending is one message of the current connection.
type pending struct {
	seq  uint64
	pid  uint16
	done bool      // PUBACKed, QoS 0 or dead-lettered
	sent time.Time // when its last byte was written to the socket; zero before
}

func newInflight(window int) *inflight {
	return &inflight{ring: make([]pending, window), byPID: make(map[uint16]uint64, window)}
}

// room is how many more messages may be added.
func (f *inflight) room() int { return len(f.ring) - f.n }

func (f *inflight) at(i uint64) *pending { return &f.ring[i%uint64(len(f.ring))] }

// add appends a message that awaits a PUBACK and returns its packet id;
// call only with room.
func (f *inflight) add(seq uint64) uint16 {
	for {
		f.nextPID++
		if f.nextPID == 0 {
			f.nextPID = 1
		}
		if _, used := f.byPID[f.nextPID]; !used {
			break
		}
	}
	i := f.head + uint64(f.n)
	*f.at(i) = pending{seq: seq, pid: f.nextPID}
	f.n++
	f.byPID[f.nextPID] = i
	f.outstanding++
	return f.nextPID
}

// addDone appends a message that needs no PUBACK (QoS 0, dead-lettered,
// undecodable); call only with room.
func (f *inflight) addDone(seq uint64) {
	*f.at(f.head + uint64(f.n)) = pending{seq: seq, done: true}
	f.n++
}

// sent stamps the messages not stamped yet as written at t.
func (f *inflight) sent(t time.Time) {
	for i := f.head + uint64(f.n); i > f.head; i-- {
		p := f.at(i - 1)
		if !p.sent.IsZero() {
			break
		}
		p.sent = t
	}
}

// ack takes the message a PUBACK answers off the awaited ones; ok is
// false for a packet id nothing was sent with. The caller marks it done
// unless the cloud refused it.
func (f *inflight) ack(pid uint16) (p *pending, ok bool) {
	i, ok := f.byPID[pid]
	if !ok {
		return nil, false
	}
	delete(f.byPID, pid)
	f.outstanding--
	return f.at(i), true
}

// first returns the oldest message; ok is false when there is none.
func (f *inflight) first() (p *pending, ok bool) {
	if f.n == 0 {
		return nil, false
	}
	return f.at(f.head), true
}

// popDone drops the done messages at the front and returns the newest
// seq it dropped, 0 if none. A message is dropped only once its write
// completed (sent stamped): a QoS 0 message the writer is still writing
// is not delivered yet, whatever PUBACKs arrive for those before it.
func (f *inflight) popDone() uint64 {
	var last uint64
	for f.n > 0 {
		p := f.at(f.head)
		if !p.done || p.sent.IsZero() {
			break
		}
		last = p.seq
		f.answered = f.answered || p.pid != 0
		f.head++
		f.n--
	}
	return last
}
