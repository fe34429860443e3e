package pipeline

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/liveness"
	"github.com/edged/edged/sensors/ratelog"
)

// Queue is a sensors.Sink that hands what the Poller produces to another
// Sink (the Pipeline) from a goroutine of its own, in order. The Poller
// calls its Sink from the sensor's goroutine, and the Pipeline's publish
// waits for the broker to store the message in the uplink's disk buffer:
// without the queue, an SD card that stalls for seconds stalls sampling,
// and the control loops' input with it.
//
// The queue holds up to its size of readings and availability changes.
// When it is full the oldest reading is dropped (availability changes
// are kept, so the retained availability topics end right), and the
// drops are counted and logged at most once a minute. Reading and
// Availability never block and do not allocate.
type Queue struct {
	next sensors.Sink
	log  *slog.Logger
	warn *ratelog.Limiter

	mu     sync.Mutex
	buf    []queued // ring
	head   int
	n      int
	closed bool
	wake   chan struct{} // cap 1: something was queued, or Close

	dropped atomic.Uint64
	beat    *liveness.Beat
}

var _ sensors.Sink = (*Queue)(nil)

type queued struct {
	r      sensors.Reading // Sensor only, for availability
	avail  bool
	online bool
}

// NewQueue returns a queue of size items in front of next. A nil log
// discards.
func NewQueue(next sensors.Sink, size int, log *slog.Logger) *Queue {
	log = sensors.LogOrDiscard(log)
	return &Queue{
		next: next,
		log:  log.With("component", "pipeline"),
		warn: ratelog.New(time.Minute, 1, nil),
		buf:  make([]queued, max(size, 1)),
		wake: make(chan struct{}, 1),
		beat: liveness.New("pipeline/queue"),
	}
}

// queueBeat bounds one delivery: a publish may wait for an fsync of the
// uplink's buffer, which an SD card can stall for seconds.
const queueBeat = 30*time.Second + sensors.BeatSlack

// Heartbeat is Run's beat, "pipeline/queue": busy while it delivers an
// item, idle while the queue is empty. A disk that hangs shows here.
func (q *Queue) Heartbeat() *liveness.Beat { return q.beat }

// Reading queues r.
func (q *Queue) Reading(r sensors.Reading) { q.put(queued{r: r}) }

// Availability queues an availability change.
func (q *Queue) Availability(sensor string, online bool) {
	q.put(queued{r: sensors.Reading{Sensor: sensor}, avail: true, online: online})
}

// Dropped returns how many readings the queue dropped because it was
// full.
func (q *Queue) Dropped() uint64 { return q.dropped.Load() }

func (q *Queue) put(it queued) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	dropped := false
	if q.n == len(q.buf) {
		q.dropOldestLocked()
		dropped = true
	}
	q.buf[(q.head+q.n)%len(q.buf)] = it
	q.n++
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	if dropped {
		q.dropped.Add(1)
		q.warn.Log(q.log, slog.LevelWarn, "queue", "publishing is behind (the broker or its disk buffer is slow): dropped the oldest queued reading", "dropped", q.dropped.Load())
	}
}

// dropOldestLocked removes the oldest reading, or the oldest item if the
// queue holds availability changes only.
func (q *Queue) dropOldestLocked() {
	at := 0
	for i := range q.n {
		if !q.buf[(q.head+i)%len(q.buf)].avail {
			at = i
			break
		}
	}
	for i := at; i > 0; i-- { // close the gap, keeping the order
		q.buf[(q.head+i)%len(q.buf)] = q.buf[(q.head+i-1)%len(q.buf)]
	}
	q.buf[q.head] = queued{}
	q.head = (q.head + 1) % len(q.buf)
	q.n--
}

// Run delivers queued items to the next Sink until Close has been called
// and everything queued before it is delivered. Call it once.
func (q *Queue) Run() {
	for {
		q.mu.Lock()
		if q.n == 0 {
			closed := q.closed
			q.mu.Unlock()
			q.beat.Idle()
			if closed {
				return
			}
			<-q.wake
			continue
		}
		q.beat.Expect(queueBeat)
		it := q.buf[q.head]
		q.buf[q.head] = queued{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		q.mu.Unlock()
		if it.avail {
			q.next.Availability(it.r.Sensor, it.online)
		} else {
			q.next.Reading(it.r)
		}
	}
}

// Close makes Run return once it has delivered what is queued; later
// items are dropped. Call it after the Poller's Run has returned.
func (q *Queue) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}
