// Package uplinktest holds the test fixtures of the uplink: a Mosquitto
// process as the cloud, a TCP proxy that can cut the link, a collector
// that records what the cloud received with its (gw, epoch, seq) user
// properties, and a plain paho QoS 1 publisher. Tests and the
// bench-uplink program use it; the daemon never does.
package uplinktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// Mosquitto is a mosquitto process started on loopback ports with a
// generated config (persistence off), stopped by its PID.
type Mosquitto struct {
	// Addr is the first listener's address; Addrs lists every listener,
	// Addrs[0] == Addr.
	Addr  string
	Addrs []string
	bin   string
	conf  string
	cmd   *exec.Cmd
	done  chan struct{}
	Log   *bytes.Buffer
	logMu *sync.Mutex
	wrote chan struct{} // signalled after each write to Log
}

// startAttempts bounds how often StartMosquitto picks new ports after
// mosquitto found one taken; startTimeout bounds one start.
const startAttempts = 5

var startTimeout = 10 * time.Second

// pickAddrs picks n distinct free loopback addresses; a test replaces it
// to hand StartMosquitto a taken port.
var pickAddrs = freeAddrs

// errAddrInUse is a start that failed because a port was taken.
var errAddrInUse = errors.New("uplinktest: mosquitto: address already in use")

// StartMosquitto writes a config into dir and starts mosquitto on a free
// 127.0.0.1 port. extra is appended to the config after that listener
// (e.g. "max_packet_size 4096", or TLS settings, which apply to it). Each
// element of more adds one more listener on its own free port, followed by
// its lines ("" for a plain one); Addrs holds them in order.
//
// The ports are picked before mosquitto binds them, so another process can
// take one in between: when mosquitto exits with "address already in
// use", StartMosquitto picks new ports and tries again, at most
// startAttempts times.
func StartMosquitto(bin, dir, extra string, more ...string) (*Mosquitto, error) {
	m := &Mosquitto{bin: bin, conf: filepath.Join(dir, "mosquitto.conf"), Log: &bytes.Buffer{}, logMu: &sync.Mutex{}, wrote: make(chan struct{}, 1)}
	var err error
	for range startAttempts {
		if err = m.configure(extra, more); err != nil {
			return nil, err
		}
		if err = m.Start(); !errors.Is(err, errAddrInUse) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// configure picks the ports and writes the config.
func (m *Mosquitto) configure(extra string, more []string) error {
	addrs, err := pickAddrs(1 + len(more))
	if err != nil {
		return err
	}
	var c strings.Builder
	for i, a := range addrs {
		_, port, _ := net.SplitHostPort(a)
		fmt.Fprintf(&c, "listener %s 127.0.0.1\n", port)
		if i == 0 {
			c.WriteString("allow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 100\nmax_keepalive 65535\n")
			c.WriteString(extra + "\n")
		} else {
			c.WriteString(more[i-1] + "\n")
		}
	}
	if err := os.WriteFile(m.conf, []byte(c.String()), 0o644); err != nil {
		return err
	}
	m.Addr, m.Addrs = addrs[0], addrs
	return nil
}

type lockedWriter struct {
	mu    *sync.Mutex
	w     io.Writer
	wrote chan struct{}
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	n, err := l.w.Write(p)
	l.mu.Unlock()
	select {
	case l.wrote <- struct{}{}:
	default:
	}
	return n, err
}

// running is the line mosquitto (2.0 and later) logs once every listener
// is open, just before it serves.
var running = regexp.MustCompile(`(?m)mosquitto version \S+ running$`)

// Start starts (or restarts) the process on the same ports and waits,
// at most startTimeout, until it serves: mosquitto has logged that it is
// running, which it does only after opening every listener; each listener
// accepts a connection; and at least one answers an MQTT CONNECT with a
// CONNACK (a TLS listener cannot, the test's plain ones do).
//
// Waiting on the first listener alone was not enough: on a busy machine
// a test dialled the second before mosquitto had opened it
// (TestMutualTLSIntegration, issue 14). The CONNACK matters too: mosquitto
// logs "running" just before its main loop starts, and a SIGTERM sent in
// between is lost (its handler's run = 0 is overwritten), so a Stop right
// after Start waited out its 5 s grace and killed it.
func (m *Mosquitto) Start() error {
	m.logMu.Lock()
	from := m.Log.Len() // a restart appends to the same log
	m.logMu.Unlock()
	m.cmd = exec.Command(m.bin, "-c", m.conf)
	// It dies with us, even when a test binary times out and runs no
	// cleanup: a mosquitto left behind holds its ports and, started
	// under flock, the lock (it inherits the descriptor).
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	m.cmd.Stdout = lockedWriter{m.logMu, m.Log, m.wrote}
	m.cmd.Stderr = lockedWriter{m.logMu, m.Log, m.wrote}
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("uplinktest: start mosquitto: %w", err)
	}
	m.done = make(chan struct{})
	cmd, done := m.cmd, m.done
	go func() { _ = cmd.Wait(); close(done) }()
	timeout := time.NewTimer(startTimeout)
	defer timeout.Stop()
	for !running.MatchString(m.outputFrom(from)) {
		select {
		case <-done:
			out := m.outputFrom(from)
			if strings.Contains(out, "Address already in use") {
				return fmt.Errorf("%w (%v):\n%s", errAddrInUse, m.Addrs, out)
			}
			return fmt.Errorf("uplinktest: mosquitto exited at start:\n%s", out)
		case <-m.wrote:
		case <-timeout.C:
			m.Stop()
			return fmt.Errorf("uplinktest: mosquitto did not log that it is running within %v:\n%s", startTimeout, m.outputFrom(from))
		}
	}
	var answered []error
	for _, a := range m.Addrs {
		c, err := net.DialTimeout("tcp", a, startTimeout)
		if err != nil {
			m.Stop()
			return fmt.Errorf("uplinktest: mosquitto is running but its listener %s is not: %w\n%s", a, err, m.outputFrom(from))
		}
		answered = append(answered, connack(c))
	}
	if !slices.Contains(answered, nil) {
		m.Stop()
		return fmt.Errorf("uplinktest: no listener of mosquitto answered CONNECT: %w\n%s", errors.Join(answered...), m.outputFrom(from))
	}
	return nil
}

// connack sends an MQTT 5 CONNECT on c, expects a CONNACK that accepts it,
// disconnects and closes c.
func connack(c net.Conn) error {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(startTimeout))
	cp := &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: "uplinktest-ready", CleanStart: true, Properties: &packets.Properties{}}
	if _, err := cp.WriteTo(c); err != nil {
		return fmt.Errorf("%s: send CONNECT: %w", c.RemoteAddr(), err)
	}
	p, err := packets.ReadPacket(c)
	if err != nil {
		return fmt.Errorf("%s: read CONNACK: %w", c.RemoteAddr(), err)
	}
	if ca, ok := p.Content.(*packets.Connack); !ok || ca.ReasonCode >= 0x80 {
		return fmt.Errorf("%s: CONNECT answered with %s", c.RemoteAddr(), p.PacketType())
	}
	_, _ = (&packets.Disconnect{Properties: &packets.Properties{}}).WriteTo(c)
	return nil
}

// outputFrom returns what mosquitto logged from offset from on.
func (m *Mosquitto) outputFrom(from int) string {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	return m.Log.String()[from:]
}

// Output returns what mosquitto logged.
func (m *Mosquitto) Output() string {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	return m.Log.String()
}

// Stop terminates the process by PID and waits for it.
func (m *Mosquitto) Stop() {
	if m.cmd == nil {
		return
	}
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

// Pid returns the process id of the running mosquitto (0 before Start).
func (m *Mosquitto) Pid() int {
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Kill ends the process with SIGKILL, as a crash or a power cut would
// (no persistence save), and waits for it; Start starts it again.
func (m *Mosquitto) Kill() {
	if m.cmd == nil {
		return
	}
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Kill() // by PID: the process Start started
	<-m.done
}

// FreeAddr returns a loopback address that was free a moment ago. Another
// process may take it before the caller binds it: a caller that starts a
// process on it should retry on "address already in use", as
// StartMosquitto does.
func FreeAddr() (string, error) {
	a, err := freeAddrs(1)
	if err != nil {
		return "", err
	}
	return a[0], nil
}

// freeAddrs returns n distinct loopback addresses that were free a moment
// ago: all n are held open until the last is picked.
func freeAddrs(n int) ([]string, error) {
	addrs := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// Proxy forwards TCP connections to a target. While down it refuses (closes)
// new connections; Cut closes every open one.
type Proxy struct {
	Addr   string
	target string
	ln     net.Listener
	mu     sync.Mutex
	up     bool
	stall  bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	Accept int // connections accepted while up
}

// NewProxy listens on a free loopback port; it starts down when up is false.
func NewProxy(target string, up bool) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, up: up, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		up := p.up
		if up {
			p.Accept++
		}
		p.mu.Unlock()
		if !up {
			c.Close()
			continue
		}
		t, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[t] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(t, c)
		go func() {
			defer p.wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := t.Read(buf)
				if n > 0 && !p.stalled() {
					if _, werr := c.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			c.Close()
			t.Close()
			p.mu.Lock()
			delete(p.conns, c)
			delete(p.conns, t)
			p.mu.Unlock()
		}()
	}
}

// SetUp lets new connections through (true) or refuses them (false).
func (p *Proxy) SetUp(up bool) {
	p.mu.Lock()
	p.up = up
	p.mu.Unlock()
}

// SetStall makes the proxy swallow everything the target sends (true),
// as a link that lost its return path: no CONNACK, no PUBACK.
func (p *Proxy) SetStall(on bool) {
	p.mu.Lock()
	p.stall = on
	p.mu.Unlock()
}

func (p *Proxy) stalled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stall
}

// Cut closes every open connection.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Accepted returns how many connections were let through.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Accept
}

// Close stops the proxy and waits for its goroutines.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

// Received is one message the collector saw.
type Received struct {
	Topic   string
	Payload string
	GW      string
	Epoch   string
	Seq     uint64
	TS      string
	// Clock is the "clock" user property: "unsynced" for a capture time
	// taken before the gateway's clock was trusted and not corrected.
	Clock string
}

// Collector subscribes to a filter on the cloud broker with QoS 1 and
// records every message in arrival order.
type Collector struct {
	c    *paho.Client
	mu   sync.Mutex
	msgs []Received
	cond chan struct{}
}

// Collect connects to addr and subscribes to filter.
func Collect(addr, filter string) (*Collector, error) {
	return CollectSession(addr, filter, fmt.Sprintf("collector-%d", time.Now().UnixNano()), 0)
}

// CollectSession is Collect with a client id and, for expiry > 0 (s), a
// persistent session the broker keeps queueing into while the collector
// is away, as a cloud consumer has.
func CollectSession(addr, filter, clientID string, expiry uint32) (*Collector, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	col := &Collector{cond: make(chan struct{}, 1)}
	col.c = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			r := Received{Topic: p.Topic, Payload: string(p.Payload)}
			if p.Properties != nil {
				r.GW = p.Properties.User.Get("gw")
				r.Epoch = p.Properties.User.Get("epoch")
				r.Seq, _ = strconv.ParseUint(p.Properties.User.Get("seq"), 10, 64)
				r.TS = p.Properties.User.Get("ts")
				r.Clock = p.Properties.User.Get("clock")
			}
			col.mu.Lock()
			col.msgs = append(col.msgs, r)
			col.mu.Unlock()
			select {
			case col.cond <- struct{}{}:
			default:
			}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 60}
	if expiry > 0 {
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	if _, err := col.c.Connect(ctx, cp); err != nil {
		return nil, err
	}
	if _, err := col.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		_ = col.c.Disconnect(&paho.Disconnect{})
		return nil, err
	}
	return col, nil
}

// Messages returns a copy of what arrived so far.
func (c *Collector) Messages() []Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Received(nil), c.msgs...)
}

// MessagesFrom returns a copy of the messages from the i-th on, so a
// long run can look at what is new without copying everything again.
func (c *Collector) MessagesFrom(i int) []Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i >= len(c.msgs) {
		return nil
	}
	return append([]Received(nil), c.msgs[i:]...)
}

// Len returns how many messages arrived.
func (c *Collector) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// WaitDistinct waits until n distinct (gw, epoch, seq) arrived or the
// timeout passes, and reports whether they did.
func (c *Collector) WaitDistinct(n int, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if c.Distinct() >= n {
			return true
		}
		select {
		case <-c.cond:
		case <-deadline.C:
			return c.Distinct() >= n
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Distinct counts distinct (gw, epoch, seq) triples.
func (c *Collector) Distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[[2]string]map[uint64]bool)
	n := 0
	for _, m := range c.msgs {
		k := [2]string{m.GW, m.Epoch}
		if seen[k] == nil {
			seen[k] = map[uint64]bool{}
		}
		if !seen[k][m.Seq] {
			seen[k][m.Seq] = true
			n++
		}
	}
	return n
}

// Close disconnects.
func (c *Collector) Close() {
	_ = c.c.Disconnect(&paho.Disconnect{})
	<-c.c.Done()
}

// Publisher is a plain paho MQTT 5 client publishing QoS 1.
type Publisher struct {
	c *paho.Client
}

// Connect connects a publisher to addr.
func Connect(addr, clientID string) (*Publisher, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, PacketTimeout: 30 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 60}); err != nil {
		return nil, err
	}
	return &Publisher{c: c}, nil
}

// ErrRefused wraps a PUBACK with a reason code >= 0x80.
var ErrRefused = errors.New("uplinktest: publish refused")

// Publish sends one QoS 1 message and waits for its PUBACK.
func (p *Publisher) Publish(topic string, payload []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := p.c.Publish(ctx, &paho.Publish{Topic: topic, Payload: payload, QoS: 1})
	if r != nil && r.ReasonCode >= 0x80 {
		return fmt.Errorf("%w: reason %#x", ErrRefused, r.ReasonCode)
	}
	return err
}

// Window publishes n QoS 1 messages of size bytes to topic with up to
// window awaiting PUBACK, as a plain paho user would: the baseline of the
// drain benchmark.
func (p *Publisher) Window(topic string, n, size, window int) error {
	payload := bytes.Repeat([]byte("x"), size)
	var wg sync.WaitGroup
	errs := make(chan error, window)
	next := make(chan int)
	for range window {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				if err := p.Publish(topic, payload); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// Close disconnects.
func (p *Publisher) Close() {
	_ = p.c.Disconnect(&paho.Disconnect{})
	<-p.c.Done()
}

// Report is what Analyze found in a collector's messages.
type Report struct {
	Distinct int
	// Dups counts repeated (gw, epoch, seq); DupMismatch counts repeats
	// whose topic or payload differ from the first copy (must be 0).
	Dups, DupMismatch int
	// OrderErrors counts first arrivals whose payload counter is not
	// above the previous one on the same topic (payloads are counters).
	OrderErrors int
	// Seqs and Epochs are the distinct seqs and epochs seen.
	Seqs     map[uint64]bool
	Epochs   map[string]bool
	BadProps int // messages without gw/epoch/seq/ts
}

// Analyze checks messages whose payloads are per-topic decimal counters.
func Analyze(msgs []Received) Report {
	r := Report{Seqs: map[uint64]bool{}, Epochs: map[string]bool{}}
	first := map[string]Received{}
	last := map[string]int{}
	for _, m := range msgs {
		if m.GW == "" || m.Epoch == "" || m.Seq == 0 || m.TS == "" {
			r.BadProps++
			continue
		}
		k := m.GW + "/" + m.Epoch + "/" + strconv.FormatUint(m.Seq, 10)
		if f, ok := first[k]; ok {
			r.Dups++
			if f.Topic != m.Topic || f.Payload != m.Payload {
				r.DupMismatch++
			}
			continue
		}
		first[k] = m
		r.Distinct++
		r.Seqs[m.Seq] = true
		r.Epochs[m.Epoch] = true
		i, err := strconv.Atoi(m.Payload)
		if err != nil {
			continue
		}
		if l, ok := last[m.Topic]; ok && i <= l {
			r.OrderErrors++
		}
		last[m.Topic] = i
	}
	return r
}
