package localbroker

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Our own listeners instead of mochi's: both bind in Init, so a busy or
// bad address fails startup instead of being logged from a goroutine,
// both report the address actually bound (port 0 in tests), and the
// WebSocket one checks the Origin header (mochi's accepts any origin,
// which lets any web page the user visits talk to the broker).

// handoff orders connection hand-over against Close. mochi's
// attachClient does ClientsWg.Add(1) and its Close does ClientsWg.Wait()
// after closing the listeners, so a connection handed over while Close
// runs is an Add racing a Wait. After begin reports false nothing more is
// handed over, and closeWait returns once every connection already handed
// over has reached mochi's first Read, which comes after its Add.
type handoff struct {
	mu      sync.Mutex
	closing bool
	pending sync.WaitGroup
}

// begin registers a hand-over; it returns nil once closing has started.
// The returned func marks the hand-over done; it is safe to call twice.
func (h *handoff) begin() func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return nil
	}
	h.pending.Add(1)
	var once sync.Once
	return func() { once.Do(h.pending.Done) }
}

func (h *handoff) closeWait() {
	h.mu.Lock()
	h.closing = true
	h.mu.Unlock()
	h.pending.Wait()
}

type tcpListener struct {
	id, addr string
	tls      *tls.Config // nil: plain
	policy   *connPolicy
	mu       sync.Mutex
	ln       net.Listener
	log      *slog.Logger
	wg       sync.WaitGroup
	handoff  handoff
}

var _ listeners.Listener = (*tcpListener)(nil)

// newTCPListener serves MQTT on addr, over TLS when tc is not nil.
func newTCPListener(id, addr string, tc *tls.Config, p *connPolicy) *tcpListener {
	return &tcpListener{id: id, addr: addr, tls: tc, policy: p}
}

func (l *tcpListener) Init(log *slog.Logger) error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	l.ln, l.log = &gatedListener{Listener: ln, p: l.policy}, log
	if l.tls != nil {
		// The handshake runs in mochi's first Read, within connect_timeout.
		l.ln = tls.NewListener(l.ln, l.tls)
	}
	return nil
}

func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return // closed
		}
		started := l.handoff.begin()
		if started == nil {
			conn.Close()
			return
		}
		// The CONNECT (and the TLS handshake before it) must arrive
		// within connect_timeout; mochi replaces this read deadline with
		// the keep-alive's once it has read one, and the writer sets its
		// own write deadlines.
		_ = conn.SetDeadline(time.Now().Add(l.policy.connectTimeout))
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer started()
			cc := l.policy.wrap(conn, started)
			if err := establish(l.id, cc); err != nil && !errors.Is(err, io.EOF) {
				l.log.Debug("mqtt connection ended", "listener", l.id, "remote", conn.RemoteAddr().String(), "error", err)
			}
			_ = cc.Close() // mochi closed it already; this is for sure
			cc.wait()      // the last packets (a refusing CONNACK) are out, the socket and its slot freed
		}()
	}
}

func (l *tcpListener) ID() string       { return l.id }
func (l *tcpListener) Protocol() string { return "tcp" }

// Address returns the bound address once Init has run.
func (l *tcpListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *tcpListener) Close(listeners.CloseFn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		_ = l.ln.Close()
	}
	l.handoff.closeWait()
	l.policy.disconnect(l.id) // not mochi's closeClients: see disconnectListener
	l.wg.Wait()               // every connection's socket is closed
}

// wsListener serves MQTT over WebSocket (subprotocol "mqtt", binary
// frames) on any path, for browsers using MQTT.js or Paho JS.
type wsListener struct {
	id, addr string
	// origins that may connect besides same-host pages; "*" allows any.
	origins []string
	// selfHosts are the Origin host names that count as this machine.
	selfHosts map[string]struct{}
	ln        net.Listener
	tls       *tls.Config // nil: plain
	srv       *http.Server
	log       *slog.Logger
	up        websocket.Upgrader
	policy    *connPolicy

	establish listeners.EstablishFn
	handoff   handoff
}

var _ listeners.Listener = (*wsListener)(nil)

// newWSListener serves MQTT over WebSocket on addr, over TLS (wss://)
// when tc is not nil.
func newWSListener(id, addr string, origins []string, tc *tls.Config, p *connPolicy) *wsListener {
	l := &wsListener{id: id, addr: addr, origins: origins, tls: tc, policy: p}
	l.up = websocket.Upgrader{
		Subprotocols:    []string{"mqtt"},
		CheckOrigin:     l.checkOrigin,
		ReadBufferSize:  2048,
		WriteBufferSize: 2048,
	}
	return l
}

// checkOrigin admits requests without an Origin (programs, not pages),
// pages served from one of this listener's own addresses or this
// machine's names, and the configured origins. It never trusts the
// request's Host header: a DNS-rebinding page controls it.
func (l *wsListener) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, o := range l.origins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	_, ok := l.selfHosts[strings.ToLower(u.Hostname())]
	return ok
}

// OwnHosts lists the host names and addresses under which a page on this
// machine can reach a listener bound to addr: the bound IP itself, or
// every interface address when bound to all of them, plus the machine's
// names (hostname and hostname.local for mDNS) unless bound to loopback
// only, and "localhost" when loopback is reachable.
func OwnHosts(addr net.Addr) map[string]struct{} {
	hosts := map[string]struct{}{}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return hosts
	}
	var ips []net.IP
	if tcp.IP.IsUnspecified() {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					ips = append(ips, n.IP)
				}
			}
		}
	} else {
		ips = append(ips, tcp.IP)
	}
	loopbackOnly := true
	for _, ip := range ips {
		hosts[strings.ToLower(ip.String())] = struct{}{}
		if ip.IsLoopback() {
			hosts["localhost"] = struct{}{}
		} else {
			loopbackOnly = false
		}
	}
	if name, err := os.Hostname(); err == nil && name != "" && !loopbackOnly {
		name = strings.ToLower(name)
		hosts[name] = struct{}{}
		hosts[name+".local"] = struct{}{}
	}
	return hosts
}

func (l *wsListener) Init(log *slog.Logger) error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	l.ln, l.log = &gatedListener{Listener: ln, p: l.policy}, log
	if l.tls != nil {
		// net/http runs the handshake within ReadTimeout.
		l.ln = tls.NewListener(l.ln, l.tls)
	}
	l.selfHosts = OwnHosts(ln.Addr())
	// One request per connection, read within connect_timeout: a
	// connection that does not upgrade cannot keep its slot with
	// keep-alive requests or a body it never sends.
	l.srv = &http.Server{
		Handler:           http.HandlerFunc(l.handle),
		ReadHeaderTimeout: l.policy.connectTimeout,
		ReadTimeout:       l.policy.connectTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug), // client mistakes, not ours
	}
	l.srv.SetKeepAlivesEnabled(false)
	return nil
}

func (l *wsListener) handle(w http.ResponseWriter, r *http.Request) {
	c, err := l.up.Upgrade(w, r, nil)
	if err != nil {
		l.log.Debug("websocket upgrade refused", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "error", err)
		return // Upgrade has answered the request
	}
	defer c.Close()
	started := l.handoff.begin()
	if started == nil {
		return // closing
	}
	defer started()
	_ = c.SetReadDeadline(time.Now().Add(l.policy.connectTimeout)) // until mochi has read a CONNECT
	cc := l.policy.wrap(&wsConn{Conn: c.UnderlyingConn(), ws: c}, started)
	if err := l.establish(l.id, cc); err != nil && !errors.Is(err, io.EOF) {
		l.log.Debug("websocket connection ended", "remote", r.RemoteAddr, "error", err)
	}
	_ = cc.Close()
	cc.wait()
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener stopped", "listener", l.id, "error", err)
	}
}

func (l *wsListener) ID() string       { return l.id }
func (l *wsListener) Protocol() string { return "ws" }

func (l *wsListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *wsListener) Close(listeners.CloseFn) {
	if l.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if l.srv.Shutdown(ctx) != nil { // hijacked websocket conns are closed by closeClients
			_ = l.srv.Close() // requests still being read
		}
		cancel()
	}
	l.handoff.closeWait()
	l.policy.disconnect(l.id) // not mochi's closeClients: see disconnectListener
}

// wsConn turns a message-based websocket into the byte stream mochi reads
// MQTT packets from. An MQTT packet may span frames and a frame may carry
// several packets.
type wsConn struct {
	net.Conn
	ws *websocket.Conn
	r  io.Reader
	wm sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			op, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errors.New("localbroker: websocket: text frame (MQTT needs binary frames)")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wm.Lock()
	defer c.wm.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error { return c.ws.Close() }

// The websocket library applies its own write deadline to every frame
// (none unless set), so deadlines go through it.
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetDeadline(t time.Time) error {
	return errors.Join(c.ws.SetReadDeadline(t), c.ws.SetWriteDeadline(t))
}
