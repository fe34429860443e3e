package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/liveness"
	"github.com/edged/edged/sensors/secretfile"
	"github.com/edged/edged/sensors/topics"
	"github.com/edged/edged/sensors/wallclock"
	"github.com/edged/edged/uplink/wal"
)

// Sentinel errors Capture returns; callers branch on them.
var (
	// ErrFull means the buffer is at max_bytes under overflow reject_new.
	// The local broker turns it into PUBACK 0x97 (quota exceeded).
	ErrFull = errors.New("uplink: buffer full")
	// ErrBadTopic means no valid cloud topic comes of the message's
	// topic under its rule, or the preset's topic limits refuse it.
	ErrBadTopic = errors.New("uplink: bad cloud topic")
	// ErrTooLarge means the message does not fit one buffer record.
	ErrTooLarge = errors.New("uplink: message too large for the buffer")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("uplink: closed")
	// ErrUnavailable means the buffer failed (an fsync or write error
	// from the storage) and is being reopened: the message was not
	// stored. Capture counts it in Stats.Dropped["unavailable"].
	ErrUnavailable = errors.New("uplink: buffer unavailable (storage error; reopening it)")
)

// StatePublisher receives the delivery state as JSON, rate-limited. The
// daemon publishes it retained on PREFIX/uplink/state through the local
// broker, which the uplink must not know.
type StatePublisher interface {
	PublishState(payload []byte) error
}

// Uplink captures messages into the durable buffer and forwards them to
// the cloud broker in seq order. Capture and Stats are safe for
// concurrent use.
type Uplink struct {
	opts Opts // opts.Forward is the rules at New; rules are the ones in use
	// rules are the forward rules Capture applies; SetForward replaces
	// them whole.
	rules  atomic.Pointer[[]Rule]
	device string
	log    *slog.Logger
	clock  sensors.Clock
	dir    string
	walOpt wal.Opts
	ws     atomic.Pointer[walState]
	// feeding is the session that sends buffer records, while it does.
	feeding atomic.Pointer[session]
	walMu   sync.Mutex // serialises reopening with Close
	kick    chan struct{}
	status  string // cloud status topic

	trust   Trust
	restamp Restamper

	tlsConf  *tls.Config
	addr     string
	password []byte

	// Forwarder tuning; tests shorten them.
	ackTimeout     time.Duration
	connectTimeout time.Duration
	backoffBase    time.Duration
	backoffMax     time.Duration
	stormWindow    time.Duration
	stormMax       int
	drainWait      time.Duration
	poisonAfter    int          // sessions failing on one message before it is dead-lettered
	stopBy         atomic.Int64 // Close's deadline (unix ns), 0 if none

	cancel   context.CancelFunc
	done     chan struct{}
	stopOnce sync.Once
	started  atomic.Bool

	mu       sync.Mutex
	stateOut StatePublisher

	// Counters and state for Stats.
	connected     atomic.Bool
	lastPuback    atomic.Int64 // unix ns
	connects      atomic.Uint64
	sent          atomic.Uint64
	acked         atomic.Uint64
	deadLetters   atomic.Uint64
	noSubscribers atomic.Uint64
	dropTooLarge  atomic.Uint64
	preset        *Preset // uplink.preset's limits, checked per message; nil: none
	dropBadTopic  atomic.Uint64
	dropBadRecord atomic.Uint64
	deadWarned    atomic.Bool
	dropUnavail   atomic.Uint64
	reopens       atomic.Uint64
	bufErr        atomic.Pointer[string]
	closed        atomic.Bool
	resent        atomic.Uint64
	// The newest seq sent and its epoch; the forwarder's own.
	highSeq   uint64
	highEpoch string

	beat *liveness.Beat // the forwarder's

	// noRetain: the cloud takes no retained messages (CONNACK 0x9A or
	// Retain Available 0); the will, the status and retained records go
	// without retain from then on.
	noRetain atomic.Bool
}

// walState is one open buffer. A failed buffer is closed and opened again
// (recovery repairs it); swapped tells the forwarder to start over on the
// new one.
type walState struct {
	log     *wal.Log
	epoch   string
	swapped chan struct{} // closed when this log is replaced
	closed  bool          // under Uplink.walMu
}

func (u *Uplink) buf() *walState { return u.ws.Load() }

// New opens the buffer under dir (its own subdirectory of the state
// directory) and prepares the forwarder; Start begins forwarding. clock
// may be nil for the system clock, log nil for no logging.
func New(opts Opts, dir, deviceID string, log *slog.Logger, clock sensors.Clock) (*Uplink, error) {
	return newUplink(opts, dir, deviceID, log, clock, nil)
}

// newUplink is New on a given buffer file system (nil: the real one);
// tests pass a fault layer.
func newUplink(opts Opts, dir, deviceID string, log *slog.Logger, clock sensors.Clock, fsys wal.FS) (*Uplink, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	log = sensors.LogOrDiscard(log)
	if clock == nil {
		clock = sensors.SystemClock
	}
	u := &Uplink{
		beat:           liveness.New("uplink"),
		opts:           opts,
		device:         deviceID,
		log:            log.With("component", "uplink"),
		clock:          clock,
		ackTimeout:     max(opts.KeepAlive, 10*time.Second),
		connectTimeout: 10 * time.Second,
		backoffBase:    time.Second,
		backoffMax:     10 * time.Second,
		stormWindow:    time.Minute,
		stormMax:       20,
		drainWait:      2 * time.Second,
		poisonAfter:    5,
		done:           make(chan struct{}),
		dir:            dir,
		kick:           make(chan struct{}, 1),
	}
	if p, ok := Presets[opts.Preset]; ok {
		u.preset = &p
	}
	st := opts.StatusTopic
	if st == "" {
		// The default gateway's status topic, device id to be filled in.
		st = topics.New(topics.DefaultPrefix("{device}")).Status()
	}
	u.status = strings.ReplaceAll(st, "{device}", deviceID)
	u.rules.Store(&opts.Forward)
	if err := u.prepareConn(); err != nil {
		return nil, err
	}
	wo := opts.Buffer
	wo.Log, wo.Clock, wo.FS = log, clock, fsys
	u.walOpt = wo
	l, err := wal.Open(dir, wo)
	if err != nil {
		return nil, fmt.Errorf("uplink: open buffer: %w", err)
	}
	u.ws.Store(u.newWalState(l))
	return u, nil
}

// newWalState wraps a newly opened buffer; records it makes readable
// are sent by the goroutine that made them so, when it can (see
// session.signal).
func (u *Uplink) newWalState(l *wal.Log) *walState {
	l.OnVisible(func() {
		if s := u.feeding.Load(); s != nil {
			s.signal()
		}
	})
	return &walState{log: l, epoch: fmt.Sprintf("%016x", l.Epoch()), swapped: make(chan struct{})}
}

// kickRepair asks keepBuffer to reopen a failed buffer.
func (u *Uplink) kickRepair() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// keepBuffer reopens the buffer after a storage error made it refuse
// appends (one EIO from an SD card must not stop the gateway until a
// restart), retrying with backoff until it opens again.
func (u *Uplink) keepBuffer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-u.kick:
		}
		for attempt := 0; ctx.Err() == nil; attempt++ {
			if err := u.reopenBuffer(); err == nil {
				break
			}
			if !u.sleep(ctx, min(u.backoffBase<<min(attempt, 30), u.backoffMax)) {
				return
			}
		}
	}
}

// reopenBuffer closes a failed buffer and opens it again. It does nothing
// while the buffer works.
func (u *Uplink) reopenBuffer() error {
	u.walMu.Lock()
	defer u.walMu.Unlock()
	if u.closed.Load() {
		return nil
	}
	ws := u.buf()
	if !ws.closed {
		cause := ws.log.Err()
		if cause == nil {
			return nil
		}
		msg := cause.Error()
		u.bufErr.Store(&msg)
		u.log.Error("buffer failed; reopening it (recovery repairs the files); captures are refused meanwhile", "error", cause)
		_ = ws.log.Close() // it reports the same error
		ws.closed = true
	}
	l, err := wal.Open(u.dir, u.walOpt)
	if err != nil {
		msg := err.Error()
		u.bufErr.Store(&msg)
		u.log.Warn("reopen buffer failed; retrying with backoff", "error", err)
		return err
	}
	u.ws.Store(u.newWalState(l))
	u.bufErr.Store(nil)
	u.reopens.Add(1)
	close(ws.swapped) // last: who waits on it sees the new stats
	u.log.Info("buffer reopened", "backlog", l.Stats().Backlog)
	return nil
}

// prepareConn resolves the address, the TLS configuration and the
// password once, so a bad file fails at start, not at the first connect.
func (u *Uplink) prepareConn() error {
	p, err := url.Parse(u.opts.URL)
	if err != nil {
		// Validate has checked the URL; do not repeat a raw one anyway.
		return fmt.Errorf("uplink: url %q does not parse", redactURL(u.opts.URL))
	}
	u.addr = p.Host
	if u.opts.PasswordFile != "" {
		b, err := secretfile.Read("password_file", u.opts.PasswordFile)
		if err != nil {
			return fmt.Errorf("uplink: %w", err)
		}
		u.password = []byte(strings.TrimRight(string(b), "\r\n"))
	} else if u.opts.Password != "" {
		u.password = []byte(u.opts.Password)
	}
	if p.Scheme != "mqtts" {
		return nil
	}
	t := u.opts.TLS
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, documented as for tests
	}
	if c.ServerName == "" {
		c.ServerName = p.Hostname()
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return fmt.Errorf("uplink: tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("uplink: tls ca_file %s: no PEM certificates in it", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := secretfile.KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return fmt.Errorf("uplink: tls %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	u.tlsConf = c
	return nil
}

// Trust is the gateway's judge of its wall clock (sensors/wallclock.Clock):
// a message captured before the clock is trusted carries its boot id and
// time since boot, and its "ts" is corrected as it is forwarded once the
// clock is trusted (README "Clock").
type Trust interface {
	Now() (wall time.Time, sinceBoot time.Duration, unsynced bool)
	Boot() wallclock.BootID
	Correct(boot wallclock.BootID, sinceBoot time.Duration) (time.Time, bool)
}

// Restamper rewrites the payload of a message captured before the clock
// was trusted, once it is, appending the new payload to dst; ok false
// sends the payload as it is. The pipeline's readings carry their own
// stamps (pipeline.Restamper).
type Restamper func(dst, payload []byte) (out []byte, ok bool)

// SetTrust makes captures stamp with t and the forwarder correct stamps
// with t and restamp (nil: only the "ts" property). Call it before Start.
func (u *Uplink) SetTrust(t Trust, restamp Restamper) {
	u.trust, u.restamp = t, restamp
}

// SetForward replaces the forward rules of a running uplink, for a live
// reload: a message captured from now on is matched against rules, one
// already buffered leaves as it was captured (the buffer, the cloud
// session and the backlog are untouched). The rules are checked as in
// Opts; on error nothing changes.
func (u *Uplink) SetForward(rules []Rule) error {
	o := u.opts
	o.Forward = slices.Clone(rules)
	if err := o.Validate(); err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	u.rules.Store(&o.Forward)
	return nil
}

// BufferDir is where the daemon keeps the uplink buffer under its state
// directory; `edged buffer stat` reads the same place.
func BufferDir(stateDir string) string { return filepath.Join(stateDir, "uplink") }

// Capture stores a message that matches a forward rule in the buffer
// before it returns, so the caller may acknowledge it (PUBACK) or fan it
// out afterwards. matched is false, and nothing is stored, for topics no
// rule selects. payload is not retained.
//
// QoS 0 rules are buffered too: the rule's QoS is about the cloud hop, and
// one ordered log keeps backlog-before-live true for every topic. Only
// the cloud publish of such a message is unacknowledged.
func (u *Uplink) Capture(topic string, payload []byte, qos byte, retain bool) (matched bool, err error) {
	_ = qos // the local hop's QoS does not change what is sent upstream
	r := match(*u.rules.Load(), topic)
	if r == nil {
		return false, nil
	}
	remote, err := r.remoteTopic(topic, u.device)
	if err == nil && u.preset != nil {
		if err = u.preset.checkTopic(remote); err != nil {
			err = fmt.Errorf("uplink: cloud topic %q: %w", remote, err)
		}
	}
	if err != nil {
		u.dropBadTopic.Add(1)
		return true, fmt.Errorf("%w: %w: local topic %q", ErrBadTopic, err, topic)
	}
	if p := u.preset; p != nil && p.MaxPayload > 0 && len(payload) > p.MaxPayload {
		u.dropTooLarge.Add(1)
		return true, fmt.Errorf("%w: a payload of %d bytes on %q; %s allows at most %d (%s)", ErrTooLarge, len(payload), topic, p.Name, p.MaxPayload, p.Doc)
	}
	m := Message{Topic: remote, Payload: payload, QoS: byte(r.QoS), Retain: r.Retain}
	if t := u.trust; t != nil {
		wall, since, unsynced := t.Now()
		m.Captured, m.Unsynced, m.SinceBoot = wall.UnixNano(), unsynced, since
		if unsynced {
			m.Boot = t.Boot()
		}
	} else {
		m.Captured = u.clock.Now().UnixNano()
	}
	bp := bodyPool.Get().(*[]byte)
	body := appendBody((*bp)[:0], &m)
	_, err = u.buf().log.Append(body)
	*bp = body[:0]
	if cap(body) <= 64<<10 {
		bodyPool.Put(bp)
	}
	switch {
	case err == nil:
		_ = retain // the rule decides the cloud retain flag (Rule.Retain)
		return true, nil
	case errors.Is(err, wal.ErrFull):
		return true, fmt.Errorf("%w: %w", ErrFull, err)
	case errors.Is(err, wal.ErrTooLarge):
		u.dropTooLarge.Add(1)
		return true, fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.Is(err, wal.ErrClosed) && u.closed.Load():
		return true, fmt.Errorf("%w: %w", ErrClosed, err)
	case errors.Is(err, wal.ErrClosed): // being reopened
		u.dropUnavail.Add(1)
		return true, fmt.Errorf("%w: %w", ErrUnavailable, err)
	case errors.Is(err, wal.ErrFailed):
		u.dropUnavail.Add(1)
		u.kickRepair()
		return true, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return true, fmt.Errorf("uplink: buffer append: %w", err)
}

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Stats is the delivery health of the uplink.
type Stats struct {
	Connected bool   `json:"connected"`
	Epoch     string `json:"epoch"`
	// Backlog counts buffered messages the cloud has not acknowledged.
	Backlog      uint64 `json:"backlog"`
	BacklogBytes int64  `json:"backlog_bytes"`
	// OldestUnsent is the age of the oldest unacknowledged message.
	OldestUnsent time.Duration `json:"-"`
	OldestAgeSec float64       `json:"oldest_age_s"`
	LastPuback   time.Time     `json:"last_puback,omitzero"`
	// Dropped counts messages lost on purpose, by reason: overflow
	// (max_bytes, drop_oldest), age (max_age), corrupt (damaged buffer),
	// rejected (reject_new), too_large, bad_topic, bad_record.
	Dropped     map[string]uint64 `json:"dropped"`
	DeadLetters uint64            `json:"dead_letters"`
	// NoSubscribers counts PUBACKs with reason 0x10: the cloud accepted
	// the message and delivered it to nobody (no subscriber, or none
	// whose session kept it).
	NoSubscribers uint64 `json:"no_subscribers"`
	// CorruptRecovered counts damaged buffer files repaired or moved
	// aside since start.
	CorruptRecovered uint64 `json:"corrupt_recovered"`
	Connects         uint64 `json:"connects"`
	Sent             uint64 `json:"sent"`
	Acked            uint64 `json:"acked"`
	// Resent counts messages sent again after a reconnect (at most
	// max_inflight each time); the cloud drops them by (gw, epoch, seq).
	Resent uint64 `json:"resent"`
	// Fsyncs and BytesWritten are the buffer's since it was opened (a
	// reopened buffer starts again from 0).
	Fsyncs       uint64 `json:"fsyncs"`
	BytesWritten uint64 `json:"bytes_written"`
	DiskBytes    int64  `json:"disk_bytes"`
	// BufferError is set while the buffer is failed and being reopened
	// (captures are refused); BufferReopens counts the reopens.
	BufferError   string `json:"buffer_error,omitempty"`
	BufferReopens uint64 `json:"buffer_reopens"`
}

// Stats returns a snapshot of the delivery health.
func (u *Uplink) Stats() Stats {
	ws := u.buf()
	w := ws.log.Stats()
	s := Stats{
		Connected:    u.connected.Load(),
		Epoch:        ws.epoch,
		Backlog:      w.Backlog,
		BacklogBytes: w.BacklogBytes,
		Dropped: map[string]uint64{
			"overflow":   w.DroppedOverflow,
			"age":        w.DroppedAge,
			"corrupt":    w.DroppedCorrupt,
			"rejected":   w.Rejected,
			"too_large":  u.dropTooLarge.Load(),
			"bad_topic":  u.dropBadTopic.Load(),
			"bad_record": u.dropBadRecord.Load(),
			// Refused while the buffer was failed.
			"unavailable": u.dropUnavail.Load(),
		},
		DeadLetters:      u.deadLetters.Load(),
		NoSubscribers:    u.noSubscribers.Load(),
		CorruptRecovered: w.CorruptRecovered,
		Connects:         u.connects.Load(),
		Sent:             u.sent.Load(),
		Acked:            u.acked.Load(),
		Resent:           u.resent.Load(),
		Fsyncs:           w.Fsyncs,
		BytesWritten:     w.BytesWritten,
		DiskBytes:        w.DiskBytes,
		BufferReopens:    u.reopens.Load(),
	}
	if e := u.bufErr.Load(); e != nil {
		s.BufferError = *e
	} else if err := ws.log.Err(); err != nil {
		s.BufferError = err.Error()
	}
	if !w.Oldest.IsZero() {
		s.OldestUnsent = w.OldestAge
		s.OldestAgeSec = s.OldestUnsent.Round(time.Millisecond).Seconds()
	}
	if ns := u.lastPuback.Load(); ns != 0 {
		s.LastPuback = time.Unix(0, ns).UTC()
	}
	return s
}

// Heartbeat is the forwarder's beat, "uplink": it comes round at least
// every second while connected, and after each backoff and connect
// attempt while not.
func (u *Uplink) Heartbeat() *liveness.Beat { return u.beat }

// SetStatePublisher installs where the state JSON goes; call it before
// Start. The state is published when it changed, at most once per every.
func (u *Uplink) SetStatePublisher(p StatePublisher) {
	u.mu.Lock()
	u.stateOut = p
	u.mu.Unlock()
}

// stateEvery is the shortest gap between two state publications.
const stateEvery = 5 * time.Second

// Start begins forwarding in the background. It returns at once; the
// forwarder connects, reconnects with backoff and drains the buffer until
// Close.
func (u *Uplink) Start() {
	if !u.started.CompareAndSwap(false, true) {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel = cancel
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); u.forward(ctx) }()
	go func() { defer wg.Done(); u.publishStates(ctx) }()
	go func() { defer wg.Done(); u.keepBuffer(ctx) }()
	go func() { wg.Wait(); close(u.done) }()
}

// publishStates publishes the state JSON when it changed, at most every
// stateEvery, starting one period after Start (the local broker may not
// be serving yet when the uplink starts). The volatile age field is left out of the comparison, so an
// idle gateway with a stuck backlog does not republish every 5 s.
func (u *Uplink) publishStates(ctx context.Context) {
	t := u.clock.NewTimer(stateEvery)
	defer t.Stop()
	var last string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		if u.buf().log.Err() != nil {
			u.kickRepair() // failed with no capture since (a housekeeping fsync)
		}
		u.mu.Lock()
		p := u.stateOut
		u.mu.Unlock()
		if p != nil {
			s := u.Stats()
			age := s.OldestAgeSec
			s.OldestAgeSec = 0
			key, _ := json.Marshal(s)
			if string(key) != last {
				last = string(key)
				s.OldestAgeSec = age
				b, _ := json.Marshal(s)
				if err := p.PublishState(b); err != nil {
					u.log.Debug("publish uplink state", "error", err)
				}
			}
		}
		t.Reset(stateEvery)
	}
}

// Close stops forwarding and closes the buffer. Within ctx it waits for
// the PUBACKs of messages in flight, publishes the retained status
// offline, disconnects from the cloud and writes the ack marker, so a
// restart resumes exactly where this run stopped.
func (u *Uplink) Close(ctx context.Context) error {
	var err error
	u.stopOnce.Do(func() {
		u.closed.Store(true)
		if d, ok := ctx.Deadline(); ok {
			u.stopBy.Store(d.UnixNano())
		}
		if u.started.Load() {
			u.cancel()
			select {
			case <-u.done:
			case <-ctx.Done():
				err = fmt.Errorf("uplink: forwarder did not stop in time: %w", ctx.Err())
			}
		}
		u.walMu.Lock()
		ws := u.buf()
		if !ws.closed {
			ws.closed = true
			if cerr := ws.log.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("uplink: close buffer: %w", cerr))
			}
		}
		u.walMu.Unlock()
	})
	return err
}
