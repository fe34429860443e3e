package benchrig

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// PayloadSize is the size of every message the publishers send: a JSON
// object with the message's seq and send time, padded.
const PayloadSize = 64

// Payload returns the 64-byte JSON payload of message seq sent at t:
// {"seq":12,"t":1764620000000000000,"pad":"xxxx"}.
func Payload(seq uint64, t time.Time) []byte {
	b := make([]byte, 0, PayloadSize)
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, t.UnixNano(), 10)
	b = append(b, `,"pad":"`...)
	for len(b) < PayloadSize-2 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

// ParsePayload reads what Payload wrote. The measuring subscriber calls
// it for every message, so what Payload writes is read by hand, without
// encoding/json's reflection: at a drain's rate that was a good part of
// the subscriber's CPU, and the subscriber shares the machine with what
// it measures. Anything else goes through encoding/json.
func ParsePayload(b []byte) (seq uint64, sent time.Time, err error) {
	if seq, t, ok := scanPayload(b); ok {
		return seq, time.Unix(0, t), nil
	}
	var p struct {
		Seq *uint64 `json:"seq"`
		T   int64   `json:"t"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return 0, time.Time{}, err
	}
	if p.Seq == nil {
		return 0, time.Time{}, errors.New("benchrig: payload without seq")
	}
	return *p.Seq, time.Unix(0, p.T), nil
}

// scanPayload reads {"seq":N,"t":T, as Payload writes them.
func scanPayload(b []byte) (seq uint64, t int64, ok bool) {
	rest, found := bytes.CutPrefix(b, []byte(`{"seq":`))
	if !found {
		return 0, 0, false
	}
	i := bytes.IndexByte(rest, ',')
	if i < 0 {
		return 0, 0, false
	}
	seq, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if rest, found = bytes.CutPrefix(rest[i:], []byte(`,"t":`)); !found {
		return 0, 0, false
	}
	if i = bytes.IndexByte(rest, ','); i < 0 {
		return 0, 0, false
	}
	t, err = strconv.ParseInt(string(rest[:i]), 10, 64)
	return seq, t, err == nil
}

// ClientOpts configures Dial.
type ClientOpts struct {
	ID string
	// Local is the source address (another 127.0.0.x stands for another
	// LAN host); nil lets the kernel choose.
	Local net.IP
	// CleanStart false and a SessionExpiry make a persistent session.
	CleanStart    bool
	SessionExpiry uint32
	OnPublish     func(*paho.Publish)
}

// Dial connects an MQTT 5 client to addr, bounded to 10 s.
func Dial(addr string, o ClientOpts) (*paho.Client, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if o.Local != nil {
		d.LocalAddr = &net.TCPAddr{IP: o.Local}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	cfg := paho.ClientConfig{Conn: conn, PacketTimeout: 30 * time.Second, OnClientError: func(error) {}}
	if o.OnPublish != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			o.OnPublish(pr.Packet)
			return true, nil
		}}
	}
	c := paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: o.ID, CleanStart: o.CleanStart, KeepAlive: 60}
	if o.SessionExpiry > 0 {
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &o.SessionExpiry}
	}
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("benchrig: connect %s to %s: %w", o.ID, addr, err)
	}
	if ca.ReasonCode >= 0x80 {
		conn.Close()
		return nil, fmt.Errorf("benchrig: connect %s to %s: CONNACK %#x", o.ID, addr, ca.ReasonCode)
	}
	return c, nil
}

// Disconnect disconnects c normally, ending its session, and waits (at
// most 5 s) for its goroutines.
func Disconnect(c *paho.Client) {
	zero := uint32(0)
	_ = c.Disconnect(&paho.Disconnect{Properties: &paho.DisconnectProperties{SessionExpiryInterval: &zero}})
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
	}
}

// Publisher sends timed, numbered messages.
type Publisher struct {
	c *paho.Client
	// ctx is the parent of every publish: Close cancels it, so a Send
	// blocked on PUBACKs from a broker that died returns at once.
	ctx    context.Context
	cancel context.CancelFunc
	// OnAck, if set, is called with the seq of each QoS 1 message the
	// broker accepted (PUBACK below 0x80), from Send's goroutines.
	OnAck func(seq uint64)
}

// NewPublisher connects a publisher (clean session) to addr.
func NewPublisher(addr, id string, local net.IP) (*Publisher, error) {
	c, err := Dial(addr, ClientOpts{ID: id, Local: local, CleanStart: true})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Publisher{c: c, ctx: ctx, cancel: cancel}, nil
}

// Close ends the publishes awaiting a PUBACK (Send returns) and
// disconnects.
func (p *Publisher) Close() {
	p.cancel()
	Disconnect(p.c)
}

// Sent is when a Send began and when its last publish returned (its
// PUBACK, for QoS 1).
type Sent struct{ Start, End time.Time }

// Send publishes messages seq from..from+n-1 to topic with Payload, at
// rate messages a second (0: as fast as the acknowledgements allow),
// with up to window QoS 1 publishes awaiting their PUBACK. Each payload
// carries the time its publish began.
func (p *Publisher) Send(topic string, from uint64, n int, rate float64, qos byte, window int) (Sent, error) {
	if qos == 0 {
		window = 1
	}
	next := make(chan uint64, window)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	failed := make(chan struct{})
	for range window {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range next {
				ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
				r, err := p.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: Payload(seq, time.Now())})
				cancel()
				if err == nil && r != nil && r.ReasonCode >= 0x80 {
					err = fmt.Errorf("PUBACK %#x", r.ReasonCode)
				}
				if err == nil && qos == 1 && p.OnAck != nil {
					p.OnAck(seq)
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("benchrig: publish %s seq %d: %w", topic, seq, err)
						close(failed)
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	s := Sent{Start: time.Now()}
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
	}
feed:
	for i := range n {
		if interval > 0 {
			if d := time.Until(s.Start.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d)
			}
		}
		select {
		case next <- from + uint64(i):
		case <-failed:
			break feed
		}
	}
	close(next)
	wg.Wait()
	s.End = time.Now()
	return s, first
}

// Arrival is one message a Subscriber received.
type Arrival struct {
	Seq  uint64
	Sent time.Time // from the payload
	At   time.Time // when the subscriber got it
	// Tag is edged's (epoch, seq) from the user properties, "" without.
	Tag string
}

// Recorder keeps the arrivals on one topic.
type Recorder struct {
	mu     sync.Mutex
	arr    []Arrival
	seen   map[uint64]bool
	notify chan struct{}
}

func newRecorder() *Recorder {
	return &Recorder{seen: map[uint64]bool{}, notify: make(chan struct{}, 1)}
}

func (r *Recorder) add(a Arrival) {
	r.mu.Lock()
	r.arr = append(r.arr, a)
	r.seen[a.Seq] = true
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// Distinct returns how many distinct seqs arrived.
func (r *Recorder) Distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// Arrivals returns a copy of what arrived, in order.
func (r *Recorder) Arrivals() []Arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Arrival(nil), r.arr...)
}

// WaitDistinct waits until n distinct seqs arrived or timeout passed,
// and reports whether they did.
func (r *Recorder) WaitDistinct(n int, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for r.Distinct() < n {
		select {
		case <-r.notify:
		case <-deadline.C:
			return r.Distinct() >= n
		}
	}
	return true
}

// WaitQuiet waits until nothing arrived for quiet, or timeout passed.
func (r *Recorder) WaitQuiet(quiet, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-r.notify:
		case <-time.After(quiet):
			return
		}
	}
}

// Report is what arrived of n messages numbered from..from+n-1.
type Report struct {
	Lost, Dups int
	// DupsRetagged counts duplicates whose edged tag differs from the
	// first copy's: the cloud cannot drop them by (gw, epoch, seq).
	DupsRetagged int
	// Latency of each first copy, sorted.
	Latency     []time.Duration
	First, Last time.Time // first and last arrival of a first copy
}

// Report counts lost and duplicated messages and the latencies.
func (r *Recorder) Report(from uint64, n int) Report {
	var rep Report
	firstTag := map[uint64]string{}
	for _, a := range r.Arrivals() {
		if a.Seq < from || a.Seq >= from+uint64(n) {
			continue
		}
		if tag, ok := firstTag[a.Seq]; ok {
			rep.Dups++
			if tag != a.Tag {
				rep.DupsRetagged++
			}
			continue
		}
		firstTag[a.Seq] = a.Tag
		rep.Latency = append(rep.Latency, a.At.Sub(a.Sent))
		if rep.First.IsZero() {
			rep.First = a.At
		}
		rep.Last = a.At
	}
	rep.Lost = n - len(firstTag)
	sortDurations(rep.Latency)
	return rep
}

// Subscriber is a QoS 0/1 subscriber whose messages go to a Recorder per
// topic.
type Subscriber struct {
	addr   string
	o      ClientOpts
	filter string
	qos    byte

	mu     sync.Mutex
	c      *paho.Client
	tracks map[string]*Recorder
	raw    func(topic string, payload []byte) // SubscribeRaw's
}

// Subscribe connects to addr and subscribes to filter. persistent makes
// the session outlive the connection (CleanStart on the first connect
// only, a day's session expiry), so Reconnect gets what was queued.
func Subscribe(addr, id string, local net.IP, filter string, qos byte, persistent bool) (*Subscriber, error) {
	s := &Subscriber{addr: addr, filter: filter, qos: qos, tracks: map[string]*Recorder{}}
	s.o = ClientOpts{ID: id, Local: local, CleanStart: true, OnPublish: s.received}
	if persistent {
		s.o.SessionExpiry = 86400
	}
	return s, s.connect()
}

// SubscribeRaw is Subscribe (clean session) handing every message to
// f, from paho's goroutine, instead of to Recorders.
func SubscribeRaw(addr, id, filter string, qos byte, f func(topic string, payload []byte)) (*Subscriber, error) {
	s := &Subscriber{addr: addr, filter: filter, qos: qos, raw: f}
	s.o = ClientOpts{ID: id, CleanStart: true, OnPublish: s.received}
	return s, s.connect()
}

func (s *Subscriber) connect() error {
	c, err := Dial(s.addr, s.o)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: s.filter, QoS: s.qos}}})
	if err == nil && (len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80) {
		err = fmt.Errorf("SUBACK %v", sa.Reasons)
	}
	if err != nil {
		Disconnect(c)
		return fmt.Errorf("benchrig: subscribe %s to %s: %w", s.o.ID, s.filter, err)
	}
	s.mu.Lock()
	s.c = c
	s.mu.Unlock()
	return nil
}

// Reconnect connects again, resuming the session (after the broker
// restarted, say).
func (s *Subscriber) Reconnect() error {
	s.mu.Lock()
	old := s.c
	s.mu.Unlock()
	_ = old.Disconnect(&paho.Disconnect{}) // keeps the session
	<-old.Done()
	s.o.CleanStart = false
	return s.connect()
}

// Track returns the Recorder of topic, made on first use. Messages on
// topics nobody tracks are dropped.
func (s *Subscriber) Track(topic string) *Recorder {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.tracks[topic]
	if r == nil {
		r = newRecorder()
		s.tracks[topic] = r
	}
	return r
}

func (s *Subscriber) received(p *paho.Publish) {
	if s.raw != nil {
		s.raw(p.Topic, p.Payload)
		return
	}
	at := time.Now()
	s.mu.Lock()
	r := s.tracks[p.Topic]
	s.mu.Unlock()
	if r == nil {
		return
	}
	seq, sent, err := ParsePayload(p.Payload)
	if err != nil {
		return
	}
	a := Arrival{Seq: seq, Sent: sent, At: at}
	if p.Properties != nil && p.Properties.User.Get("seq") != "" {
		a.Tag = p.Properties.User.Get("epoch") + "/" + p.Properties.User.Get("seq")
	}
	r.add(a)
}

// Close disconnects, ending the session.
func (s *Subscriber) Close() {
	s.mu.Lock()
	c := s.c
	s.mu.Unlock()
	Disconnect(c)
}
