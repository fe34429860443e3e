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
	// Tags, if set, puts edged's user properties on every message (gw
	// Tags, epoch 1, seq, ts), so a broker and its subscribers do for
	// them what they do for edged's uplink.
	Tags string
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
				now := time.Now()
				pb := &paho.Publish{Topic: topic, QoS: qos, Payload: Payload(seq, now)}
				if p.Tags != "" {
					pb.Properties = &paho.PublishProperties{User: paho.UserProperties{
						{Key: "gw", Value: p.Tags}, {Key: "epoch", Value: "1"},
						{Key: "seq", Value: strconv.FormatUint(seq, 10)}, {Key: "ts", Value: strconv.FormatInt(now.UnixMilli(), 10)},
					}}
				}
				r, err := p.c.Publish(ctx, pb)
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

// Recorder keeps the arrivals on one topic. It wakes its waiter only
// when what it waits for happened, not at every arrival: at a drain's
// rate a wake-up per message cost the bench (which shares the machine
// with what it measures) a good part of a core.
type Recorder struct {
	mu   sync.Mutex
	arr  []Arrival
	seen map[uint64]bool
	last time.Time // of the latest arrival
	// want is WaitDistinct's target, 0 when nobody waits; reached is
	// signalled when it is.
	want    int
	reached chan struct{}
}

func newRecorder() *Recorder {
	return &Recorder{seen: map[uint64]bool{}, reached: make(chan struct{}, 1)}
}

func (r *Recorder) add(a Arrival) {
	r.mu.Lock()
	r.arr = append(r.arr, a)
	r.seen[a.Seq] = true
	r.last = a.At
	if r.want > 0 && len(r.seen) >= r.want {
		r.want = 0
		select {
		case r.reached <- struct{}{}:
		default:
		}
	}
	r.mu.Unlock()
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
// and reports whether they did. One goroutine at a time may wait.
func (r *Recorder) WaitDistinct(n int, timeout time.Duration) bool {
	r.mu.Lock()
	if len(r.seen) >= n {
		r.mu.Unlock()
		return true
	}
	select {
	case <-r.reached: // a stale signal
	default:
	}
	r.want = n
	r.mu.Unlock()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	select {
	case <-r.reached:
		return true
	case <-deadline.C:
		r.mu.Lock()
		defer r.mu.Unlock()
		r.want = 0
		return len(r.seen) >= n
	}
}

// WaitQuiet waits until nothing arrived for quiet, or timeout passed,
// looking every tenth of quiet.
func (r *Recorder) WaitQuiet(quiet, timeout time.Duration) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		r.mu.Lock()
		from := r.last
		r.mu.Unlock()
		if from.Before(start) {
			from = start
		}
		now := time.Now()
		if now.Sub(from) >= quiet || !now.Before(deadline) {
			return
		}
		time.Sleep(min(quiet/10, deadline.Sub(now)))
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
