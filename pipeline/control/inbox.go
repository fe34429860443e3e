package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/ratelog"
)

// Inbox bounds: inboxDepth commands wait per controller, and at most
// maxOwed answers to commands that will not be applied (superseded,
// refused before queueing, unknown controller) wait to be sent.
const (
	inboxDepth = 64
	maxOwed    = 1024
)

// summaryEvery is how often an Inbox logs what it did during a burst.
const summaryEvery = time.Second

// ErrSuperseded is the error a command's sender gets when a newer command
// for the same controller took its place before it was applied.
var ErrSuperseded = errors.New("control: superseded by a newer command")

// Request is one command as it arrived from MQTT.
type Request struct {
	Controller string // the <id> level of PREFIX/control/<id>/set
	Payload    []byte
	Client     string // the sender, for the log
	// Reply sends the answer to the sender; nil when it asked for none.
	Reply func(payload []byte) error
	// Done, when set, is called once with the same answer and the error
	// behind it (nil when the command was applied), so a caller that
	// maps errors to statuses (the REST API) need not parse the reply.
	// It runs on the inbox's goroutine and must not block. See Do.
	Done func(reply []byte, err error)
}

// ErrStopped is returned by Do when the inbox no longer applies
// commands (Run has returned: edged is stopping).
var ErrStopped = errors.New("control: not taking commands (edged is stopping)")

// Inbox takes commands for a set of loops and applies them in order on
// its own goroutine (Run). Submit never blocks, so it can run in the
// goroutine of the MQTT client that published the command. Every sender
// that asked for a reply gets one: the state after its command, or an
// error.
//
// When commands come faster than they are applied and a controller's
// queue is full, a waiting command that later ones make pointless is
// dropped, and its sender gets ErrSuperseded: the newest command always
// gets in. See evictable for which one.
//
// The log gets the first command of a burst in full and then at most one
// summary line per second per controller; refusals are rate limited.
type Inbox struct {
	loops atomic.Pointer[map[string]*Loop] // replaced whole by SetLoops
	clock sensors.Clock
	log   *slog.Logger
	lim   *ratelog.Limiter
	wake  chan struct{} // Submit added work
	done  chan struct{} // closed when Run returns

	// applying is held while commands are applied (handle), so SetLoops
	// can wait until no command is being applied to a loop it takes away.
	applying sync.Mutex

	mu      sync.Mutex
	pending map[string][]queued // per controller, oldest first; keys are the loops' ids
	owed    []owed
	lost    map[string]int // replies not sent because owed was full

	// Owned by Run.
	counts map[string]*burstCounts
}

// queued is a command that passed checkStatic, waiting to be applied.
type queued struct {
	req Request
	cmd command
}

// owed is the answer to a command that will not be applied.
type owed struct {
	req Request
	err error
}

type burstCounts struct {
	applied, refused, superseded, replyFailed, lost int
}

// NewInbox returns an inbox for loops, keyed by controller id. A nil
// clock is the system clock; a nil log discards.
func NewInbox(loops map[string]*Loop, clock sensors.Clock, log *slog.Logger) *Inbox {
	if clock == nil {
		clock = sensors.SystemClock
	}
	log = sensors.LogOrDiscard(log)
	in := &Inbox{
		clock:   clock,
		log:     log.With("component", "control"),
		lim:     ratelog.New(summaryEvery, 4, clock),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		pending: map[string][]queued{},
		lost:    map[string]int{},
		counts:  map[string]*burstCounts{},
	}
	for id := range loops {
		in.pending[id] = nil
	}
	in.loops.Store(&loops)
	return in
}

// ErrReplaced is the error a command's sender gets when a config reload
// restarted or removed its controller before the command was applied.
var ErrReplaced = errors.New("control: the controller was restarted or removed by a config reload; send the command again")

// SetLoops replaces the loops the inbox serves, for a live reload. A
// command waiting for a loop that the new set does not hold (by id and
// the same *Loop) is not applied: its sender gets ErrReplaced. SetLoops
// returns once no command is being applied to a loop it took away, so
// the caller may then stop that loop without a command slipping in.
func (in *Inbox) SetLoops(loops map[string]*Loop) {
	loops = maps.Clone(loops)
	in.applying.Lock()
	in.mu.Lock()
	old := *in.loops.Load()
	for id, q := range in.pending {
		if l := loops[id]; l == nil || l != old[id] {
			for _, w := range q {
				in.oweLocked(w.req, ErrReplaced)
			}
			delete(in.pending, id)
		}
	}
	for id := range loops {
		if _, ok := in.pending[id]; !ok {
			in.pending[id] = nil
		}
	}
	in.loops.Store(&loops)
	in.mu.Unlock()
	in.applying.Unlock()
	select {
	case in.wake <- struct{}{}: // the owed answers
	default:
	}
}

// Submit queues a command. It never blocks and never waits for the loop.
func (in *Inbox) Submit(r Request) {
	l := (*in.loops.Load())[r.Controller]
	var c command
	var err error
	if l == nil {
		err = fmt.Errorf("control: no controller %q", r.Controller)
	} else if c, err = parseCommand(r.Payload); err == nil {
		err = l.checkStatic(c)
		c.source = r.Client
	}
	in.mu.Lock()
	if err == nil && (*in.loops.Load())[r.Controller] != l {
		err = ErrReplaced // SetLoops ran since l was looked up
	}
	if err != nil {
		in.oweLocked(r, err)
	} else {
		q := in.pending[r.Controller]
		if len(q) >= inboxDepth {
			i := evictable(q, c)
			in.oweLocked(q[i].req, ErrSuperseded)
			q = append(q[:i], q[i+1:]...)
		}
		in.pending[r.Controller] = append(q, queued{r, c})
	}
	in.mu.Unlock()
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// Do submits r, with Done set to its own, and waits for the answer:
// the reply Submit's sender would get, and the error behind it (one
// wrapping ErrCommand for a refused command, ErrSuperseded, or a "no
// controller" error). It goes through the same queue and checks as a
// command from MQTT. It returns ctx's error if ctx ends first (the
// command may still be applied), and ErrStopped once Run has returned.
func (in *Inbox) Do(ctx context.Context, r Request) (reply []byte, err error) {
	type answer struct {
		reply []byte
		err   error
	}
	ch := make(chan answer, 1) // Done never blocks the inbox
	r.Done = func(reply []byte, err error) { ch <- answer{reply, err} }
	select {
	case <-in.done:
		return nil, ErrStopped
	default:
	}
	in.Submit(r)
	select {
	case a := <-ch:
		return a.reply, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-in.done:
		// Run answers what waits when it stops; take that answer if
		// it came.
		select {
		case a := <-ch:
			return a.reply, a.err
		default:
			return nil, ErrStopped
		}
	}
}

func (in *Inbox) oweLocked(r Request, err error) {
	if len(in.owed) >= maxOwed {
		// Only a flood far faster than commands are answered gets here;
		// the summary line counts what was lost.
		in.lost[r.Controller]++
		return
	}
	r.Payload = nil // not needed for the answer; it may be a large bad one
	in.owed = append(in.owed, owed{r, err})
}

// fieldAutotune is the autotune bit of command.fields.
const fieldAutotune = 32

// fields says which of setpoint, mode, output, gains, reset and autotune
// a command sets.
func (c command) fields() uint8 {
	var f uint8
	if c.setpoint != nil {
		f |= 1
	}
	if c.mode != nil {
		f |= 2
	}
	if c.output != nil {
		f |= 4
	}
	if c.gains != nil {
		f |= 8
	}
	if c.resetIntegral {
		f |= 16
	}
	if c.autotune != nil {
		f |= fieldAutotune
	}
	return f
}

// needsMode reports whether the command is accepted or refused by the
// mode at the time it is applied: an output without a mode.
func (c command) needsMode() bool { return c.output != nil && c.mode == nil }

// evictable picks the waiting command (an index into q, where q is full
// and next is about to join it) that a later one makes pointless, so
// that dropping it changes neither the final state nor whether any other
// command is accepted. That is the oldest command A with a later command
// B (in q or next) that
//   - sets every field A sets (the last value wins per field), and
//   - sees the same mode whether A was applied or not: if B sets an
//     output without a mode, no command between A and B sets the mode;
//     if A sets the mode, no command between A and B needs it (an output
//     without a mode).
//
// Only a queue that alternates mode changes with output-only changes
// has no such command; then the oldest command whose fields are all set
// again later is dropped, and failing that (unreachable with the three
// fields and a deep queue) the oldest.
func evictable(q []queued, next command) int {
	at := func(j int) command {
		if j == len(q) {
			return next
		}
		return q[j].cmd
	}
	for i := range q {
		a := q[i].cmd
		for j := i + 1; j <= len(q); j++ {
			b := at(j)
			if a.fields()&^b.fields() == 0 && (!b.needsMode() || !setsModeBetween(q, i, j)) && (a.mode == nil || !needsModeBetween(q, i, j)) {
				return i
			}
		}
	}
	for i := range q {
		var later uint8
		for j := i + 1; j <= len(q); j++ {
			later |= at(j).fields()
		}
		if q[i].cmd.fields()&^later == 0 {
			return i
		}
	}
	return 0
}

func setsModeBetween(q []queued, i, j int) bool {
	for k := i + 1; k < j; k++ {
		if q[k].cmd.mode != nil {
			return true
		}
	}
	return false
}

func needsModeBetween(q []queued, i, j int) bool {
	for k := i + 1; k < j; k++ {
		if q[k].cmd.needsMode() {
			return true
		}
	}
	return false
}

// Run applies and answers commands until ctx is done, then once more
// what is waiting at that moment (a loop that has stopped saves such a
// command itself), and logs the last summary. Call it once.
func (in *Inbox) Run(ctx context.Context) {
	summary := in.clock.NewTimer(time.Hour)
	summary.Stop()
	armed := false
	defer func() {
		summary.Stop()
		in.summarise()
		close(in.done)
	}()
	for {
		select {
		case <-ctx.Done():
			in.handle()
			return
		case <-summary.C():
			armed = false
			in.summarise()
		case <-in.wake:
			in.handle()
		}
		if !armed && len(in.counts) > 0 {
			summary.Reset(summaryEvery)
			armed = true
		}
	}
}

// handle takes everything waiting and applies or answers it.
func (in *Inbox) handle() {
	in.applying.Lock()
	defer in.applying.Unlock()
	in.mu.Lock()
	loops := *in.loops.Load()
	owedNow := in.owed
	in.owed = nil
	batch := make(map[string][]queued, len(in.pending))
	for id, q := range in.pending {
		if len(q) > 0 {
			batch[id] = q
			in.pending[id] = nil
		}
	}
	lost := in.lost
	if len(lost) > 0 {
		in.lost = map[string]int{}
	}
	in.mu.Unlock()

	for id, n := range lost {
		in.count(in.key(id)).lost += n
	}
	for _, o := range owedNow {
		c := in.count(in.key(o.req.Controller))
		if errors.Is(o.err, ErrSuperseded) {
			c.superseded++
		} else {
			in.refused(o.req, o.err, c)
		}
		in.reply(o.req, errorReply(o.err), o.err, c)
	}
	for id, q := range batch {
		l := loops[id]
		c := in.count(id)
		for _, w := range q {
			reply, err := l.apply(w.cmd)
			if err != nil {
				in.refused(w.req, err, c)
			} else if ok, _ := in.lim.Allow("applied|" + id); ok {
				in.log.Info("control command applied", "controller", id, "client", w.req.Client, "command", string(w.req.Payload))
			} else {
				c.applied++
			}
			in.reply(w.req, reply, err, c)
		}
	}
	for id, c := range in.counts {
		if *c == (burstCounts{}) {
			delete(in.counts, id)
		}
	}
}

// key is the controller id for counts and log keys: "" for every id
// that names no controller, so a flood of made-up ids stays one line.
func (in *Inbox) key(id string) string {
	if (*in.loops.Load())[id] == nil {
		return ""
	}
	return id
}

func (in *Inbox) count(id string) *burstCounts {
	c := in.counts[id]
	if c == nil {
		c = &burstCounts{}
		in.counts[id] = c
	}
	return c
}

func (in *Inbox) refused(r Request, err error, c *burstCounts) {
	if ok, _ := in.lim.Allow("refused|" + in.key(r.Controller)); ok {
		in.log.Warn("control command refused", "controller", r.Controller, "client", r.Client, "error", err)
		return
	}
	c.refused++
}

func (in *Inbox) reply(r Request, payload []byte, cmdErr error, c *burstCounts) {
	if r.Done != nil {
		r.Done(payload, cmdErr)
	}
	if r.Reply == nil {
		return
	}
	if err := r.Reply(payload); err != nil {
		if ok, _ := in.lim.Allow("reply|" + in.key(r.Controller)); ok {
			in.log.Warn("control reply failed", "controller", r.Controller, "client", r.Client, "error", err)
			return
		}
		c.replyFailed++
	}
}

// summarise logs, per controller, the commands of the last interval that
// were not logged one by one, with the state they left.
func (in *Inbox) summarise() {
	for id, c := range in.counts {
		name := id
		if id == "" {
			name = "(none)" // commands to ids that name no controller
		}
		args := []any{"controller", name, "applied", c.applied, "refused", c.refused, "superseded", c.superseded}
		if c.replyFailed > 0 {
			args = append(args, "replies_failed", c.replyFailed)
		}
		if c.lost > 0 {
			args = append(args, "replies_lost", c.lost)
		}
		level := slog.LevelInfo
		if c.lost > 0 {
			level = slog.LevelWarn
		}
		if l := (*in.loops.Load())[id]; l != nil {
			s := l.State()
			args = append(args, "setpoint", s.Setpoint, "mode", s.Mode)
		}
		in.log.Log(context.Background(), level, "control commands not logged one by one", args...)
		delete(in.counts, id)
	}
}
