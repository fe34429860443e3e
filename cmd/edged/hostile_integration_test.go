package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/edged/edged/uplink/uplinktest"
)

// These tests attack a real `edged run` as a hostile or broken LAN
// client would (issue 7): Wills around the access rules, subscribers
// that never read, connections that never send CONNECT, connect churn.

// hostileConfig is the sim example with the given anonymous role, the
// broker keys in brokerExtra added, sensor "air" sampled every second,
// and yamlExtra appended.
func hostileConfig(t *testing.T, role, brokerExtra, yamlExtra string) (cfg, mqttAddr, wsAddr, httpAddr string) {
	t.Helper()
	cfg, mqttAddr, wsAddr, httpAddr = simConfig(t)
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for old, repl := range map[string]string{
		"anonymous_role: viewer":            "anonymous_role: " + role,
		"  max_packet_size: 256KiB":         "  max_packet_size: 256KiB\n" + brokerExtra,
		"    interval: 5s\n    timeout: 2s": "    interval: 1s\n    timeout: 500ms",
	} {
		if !strings.Contains(s, old) {
			t.Fatalf("sim.yaml no longer contains %q; update the test", old)
		}
		s = strings.Replace(s, old, repl, 1)
	}
	if err := os.WriteFile(cfg, []byte(s+yamlExtra), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, mqttAddr, wsAddr, httpAddr
}

// startHostile starts edged on hostileConfig's config, on new ports
// when a picked one was taken meanwhile.
func startHostile(t *testing.T, bin, role, brokerExtra, yamlExtra string) (d *daemonProc, cfg, mqttAddr, wsAddr, httpAddr string) {
	t.Helper()
	d = startReady(t, bin, func() (string, []string) {
		cfg, mqttAddr, wsAddr, httpAddr = hostileConfig(t, role, brokerExtra, yamlExtra)
		return cfg, []string{mqttAddr, wsAddr}
	})
	return d, cfg, mqttAddr, wsAddr, httpAddr
}

// health is the part of /healthz these tests read.
type health struct {
	Sensors map[string]struct {
		Samples uint64 `json:"samples"`
	} `json:"sensors"`
	Broker struct {
		Clients            int64  `json:"clients"`
		SlowClients        uint64 `json:"slow_clients_disconnected"`
		ConnectionsRefused uint64 `json:"connections_refused"`
		WillsRefused       uint64 `json:"wills_refused"`
	} `json:"broker"`
}

func getHealth(t *testing.T, httpAddr string) health {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + httpAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

// retainedOn collects the retained messages a fresh subscriber to filter
// gets: they come first, so it stops at the first live one, or when none
// has come for a second.
func retainedOn(t *testing.T, mqttAddr, filter string) map[string]string {
	t.Helper()
	c, code := rawConnect(t, dialFrom(t, "127.0.0.9", mqttAddr), 4, fmt.Sprint("retained-check-", time.Now().UnixNano()), 30, nil)
	if code != 0 {
		t.Fatalf("retained check: CONNACK %#x", code)
	}
	c.subscribe(t, filter, 0)
	got := map[string]string{}
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(time.Second))
		h, body, err := readPacket(c.r)
		if err != nil {
			return got // quiet for a second: every retained message is in
		}
		if h&0xf0 != 0x30 {
			continue
		}
		if h&1 == 0 {
			return got // live traffic: the retained messages are all in
		}
		n := int(body[0])<<8 | int(body[1])
		got[string(body[2:2+n])] = string(body[2+n:])
	}
}

// TestWillBypassIntegration pins issue 7's critical finding: a client
// could publish as its Last Will what its role may not publish (a viewer
// set the heater to manual full power by dropping its connection, and
// retained Wills overwrote the gateway's status). Every role, target,
// retain flag and protocol version: refused at CONNECT, nothing applied
// or stored.
func TestWillBypassIntegration(t *testing.T) {
	bin := edgedBinary(t)
	const p = "edged/sim-01/"
	targets := map[string]string{
		"control set":   p + "control/heat/set",
		"status":        p + "status",
		"availability":  p + "sensor/air/availability",
		"sensor":        p + "sensor/air/temperature",
		"control state": p + "control/heat/state",
		"$SYS":          "$SYS/broker/uptime",
	}
	const command = `{"mode":"manual","output":1}`
	for _, role := range []string{"viewer", "publisher", "operator"} {
		t.Run(role, func(t *testing.T) {
			_, cfg, mqttAddr, _, httpAddr := startHostile(t, bin, role, "", "")
			// A live subscriber sees any Will that is published, retained or not.
			live, code := rawConnect(t, dialFrom(t, "127.0.0.8", mqttAddr), 4, "live-"+role, 30, nil)
			if code != 0 {
				t.Fatalf("live subscriber: CONNACK %#x", code)
			}
			live.subscribe(t, "#", 0)
			var published []string
			var mu sync.Mutex
			liveDone := make(chan struct{})
			go func() {
				defer close(liveDone)
				for {
					_ = live.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
					h, body, err := readPacket(live.r)
					if err != nil {
						return
					}
					if h&0xf0 == 0x30 && strings.Contains(string(body), "WILL-") || strings.Contains(string(body), `"manual"`) {
						mu.Lock()
						published = append(published, string(body))
						mu.Unlock()
					}
				}
			}()

			n := 0
			for name, topic := range targets {
				for _, retain := range []bool{false, true} {
					for _, version := range []byte{4, 5} {
						n++
						payload := fmt.Sprintf("WILL-%s-%s-%v-%d", role, name, retain, version)
						if name == "control set" {
							payload = command
						}
						w := &rawWill{topic: topic, payload: payload, qos: 1, retain: retain}
						if version == 5 {
							w.delay = 1
						}
						conn := dialFrom(t, fmt.Sprintf("127.0.0.%d", 20+n%10), mqttAddr)
						_, code := rawConnect(t, conn, version, fmt.Sprintf("will-%d", n), 30, w)
						want := map[byte]byte{4: 0x05, 5: 0x87}[version]
						if code != want {
							t.Errorf("%s, Will on %s (%s), retain %v, MQTT %d: CONNACK %#x, want %#x", role, topic, name, retain, version, code, want)
						}
						// Drop the connection without DISCONNECT: that is what fires a Will.
						_ = conn.(*net.TCPConn).SetLinger(0)
						conn.Close()
					}
				}
			}
			time.Sleep(2500 * time.Millisecond) // past the 1 s Will delay, were any Will kept
			for topic, payload := range retainedOn(t, mqttAddr, "#") {
				if strings.Contains(payload, "WILL-") || strings.Contains(payload, `"mode":"manual"`) {
					t.Errorf("a refused Will is retained on %s: %s", topic, payload)
				}
			}
			for topic, payload := range retainedOn(t, mqttAddr, "$SYS/#") {
				if strings.Contains(payload, "WILL-") {
					t.Errorf("a refused Will is retained on %s: %s", topic, payload)
				}
			}
			state, err := os.ReadFile(filepath.Join(filepath.Dir(cfg), "state", "control", "heat.json"))
			if err == nil && strings.Contains(string(state), "manual") {
				t.Errorf("a Will command was applied and saved: %s", state)
			}
			live.conn.Close()
			<-liveDone
			if len(published) > 0 {
				t.Errorf("refused Wills were published: %q", published)
			}
			if h := getHealth(t, httpAddr); h.Broker.WillsRefused != uint64(n) {
				t.Errorf("wills_refused = %d, want %d", h.Broker.WillsRefused, n)
			}
		})
	}

	// The harness can see a Will: a publisher's Will on its own topic is
	// accepted, published and retained.
	t.Run("allowed Will", func(t *testing.T) {
		_, _, mqttAddr, _, _ := startHostile(t, bin, "publisher", "", "")
		conn := dialFrom(t, "", mqttAddr)
		_, code := rawConnect(t, conn, 5, "phone", 30, &rawWill{topic: "lan/phone/status", payload: "gone", qos: 1, retain: true})
		if code != 0 {
			t.Fatalf("allowed Will: CONNACK %#x", code)
		}
		_ = conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if retainedOn(t, mqttAddr, "lan/#")["lan/phone/status"] == "gone" {
				return
			}
		}
		t.Fatal("an allowed retained Will was not stored")
	})
}

// slowRcvBuf makes a client socket's receive buffer tiny, so a client
// that never reads fills its kernel buffers after a few kilobytes.
func slowRcvBuf(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
	return errors.Join(err, serr)
}

// stuckTCP subscribes to # at QoS 1 over MQTT 3.1.1 with keep-alive 0
// (no deadline of its own), then never reads again.
func stuckTCP(t *testing.T, mqttAddr, id string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: slowRcvBuf}
	conn, err := d.Dial("tcp", mqttAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c, code := rawConnect(t, conn, 4, id, 0, nil)
	if code != 0 {
		t.Fatalf("%s: CONNACK %#x", id, code)
	}
	c.subscribe(t, "#", 1)
	return conn
}

// stuckWS does the same over MQTT over WebSocket, as a browser tab that
// the phone put to sleep.
func stuckWS(t *testing.T, wsAddr, id string) net.Conn {
	t.Helper()
	nd := net.Dialer{Timeout: 5 * time.Second, Control: slowRcvBuf}
	dialer := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second, NetDialContext: nd.DialContext}
	ws, _, err := dialer.Dial("ws://"+wsAddr+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	conn := &wsNetConn{Conn: ws.UnderlyingConn(), ws: ws}
	t.Cleanup(func() { ws.Close() })
	c, code := rawConnect(t, conn, 4, id, 0, nil)
	if code != 0 {
		t.Fatalf("%s: CONNACK %#x", id, code)
	}
	c.subscribe(t, "#", 1)
	return ws.UnderlyingConn()
}

// slowSeconds is how long the stuck subscribers are held (issue 7: 60 s).
const slowSeconds = 60

// TestSlowSubscriberIntegration pins issue 7's second finding: one QoS 1
// subscriber to # that stops reading froze sampling, control, the uplink
// and SIGTERM (mochi writes to a client under its lock, and every
// publish waited for that lock). With stuck subscribers over TCP and
// WebSocket for 60 s, the sensor keeps its 1 s schedule, a healthy
// subscriber and the cloud keep receiving, the stuck clients are
// disconnected and counted, and SIGTERM exits 0 within 10 s.
func TestSlowSubscriberIntegration(t *testing.T) {
	bin := edgedBinary(t)
	mqBin := requireTool(t, "mosquitto", "EDGED_REQUIRE_MOSQUITTO")
	for _, tc := range []struct {
		name    string
		tcp, ws int
	}{{"one TCP", 1, 0}, {"ten TCP and two WebSocket", 10, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mq, err := uplinktest.StartMosquitto(mqBin, t.TempDir(), "")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(mq.Stop)
			cloud, err := uplinktest.Collect(mq.Addr, "cloud/#")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cloud.Close)
			d, _, mqttAddr, wsAddr, httpAddr := startHostile(t, bin, "publisher", "  max_clients_per_address: 32\n", fmt.Sprintf(`
uplink:
  url: mqtt://%s
  forward:
    - {local: "edged/sim-01/sensor/#", remote: "cloud/{topic}"}
`, mq.Addr))

			// A healthy LAN subscriber, on the sensor only.
			conn, err := net.Dial("tcp", mqttAddr)
			if err != nil {
				t.Fatal(err)
			}
			healthy := mqttClient(t, conn, "edged/sim-01/sensor/air/temperature")

			for i := range tc.tcp {
				stuckTCP(t, mqttAddr, fmt.Sprint("stuck-tcp-", i))
			}
			for i := range tc.ws {
				stuckWS(t, wsAddr, fmt.Sprint("stuck-ws-", i))
			}
			// Fill the stuck clients' buffers: 16 MB of QoS 0 traffic on
			// a LAN topic they subscribed to with #.
			bulk, err := uplinktest.Connect(mqttAddr, "bulk")
			if err != nil {
				t.Fatal(err)
			}
			bulkDone := make(chan error, 1)
			go func() { bulkDone <- bulk.Window("lan/bulk", 2000, 8<<10, 64) }()
			t.Cleanup(func() {
				bulk.Close()
				if err := <-bulkDone; err != nil {
					t.Errorf("the bulk publisher (a polite client) was held up: %v", err)
				}
			})

			h0, start := getHealth(t, httpAddr), time.Now()
			cloud0 := cloud.Len()
			drain(healthy)
			time.Sleep(slowSeconds * time.Second) // the stall under test: what happens meanwhile is measured below
			h1, elapsed := getHealth(t, httpAddr), time.Since(start)
			got := int(h1.Sensors["air"].Samples - h0.Sensors["air"].Samples)
			want := int(elapsed / time.Second)
			t.Logf("%v: %d samples (%d expected), %d to the healthy subscriber, %d to the cloud, %d stuck clients disconnected",
				elapsed.Round(time.Millisecond), got, want, len(healthy), cloud.Len()-cloud0, h1.Broker.SlowClients)
			if got < want-1 || got > want+1 {
				t.Errorf("sensor air took %d samples in %v at a 1 s interval, want %d ± 1", got, elapsed, want)
			}
			if n := len(healthy); n < want/2 {
				t.Errorf("the healthy subscriber got %d readings in %v, want at least %d", n, elapsed, want/2)
			}
			if n := cloud.Len() - cloud0; n < want/2 {
				t.Errorf("the cloud got %d readings in %v, want at least %d", n, elapsed, want/2)
			}
			if int(h1.Broker.SlowClients) != tc.tcp+tc.ws {
				t.Errorf("slow_clients_disconnected = %d, want %d", h1.Broker.SlowClients, tc.tcp+tc.ws)
			}
			stop := time.Now()
			if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-d.done:
				if d.err != nil {
					t.Errorf("exit after SIGTERM: %v", d.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("edged did not exit within 10 s of SIGTERM")
			}
			t.Logf("stopped in %v", time.Since(stop).Round(time.Millisecond))
		})
	}
}

// drain empties a message channel and returns how many it held.
func drain(c chan *paho.Publish) int {
	for n := 0; ; n++ {
		select {
		case <-c:
		default:
			return n
		}
	}
}

// collectQuiet returns what arrives on c until it has been quiet for quiet, or
// limit has passed, whichever comes first: a busy topic tree is never
// quiet, so the wait is bounded either way.
func collectQuiet(c chan *paho.Publish, quiet, limit time.Duration) []*paho.Publish {
	var got []*paho.Publish
	end := time.NewTimer(limit)
	defer end.Stop()
	for {
		select {
		case m := <-c:
			got = append(got, m)
		case <-time.After(quiet):
			return got
		case <-end.C:
			return got
		}
	}
}

// closedBy waits until the peer closes c (a read ends in EOF or a
// reset), for at most limit, and says how long that took; ok is false
// when c was still open at the limit.
func closedBy(c net.Conn, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return limit, false
	}
	return time.Since(start), true
}

// TestSilentConnectionsIntegration pins issue 7's third finding:
// connections that never send CONNECT stayed open for ever outside
// max_clients (1,000 of them: +16 MB RSS, 1,010 fds), and 64 idle
// keep-alive-0 clients held every client slot for ever. Now 1,000
// silent TCP connections, half CONNECTs and silent WebSockets are all
// closed by the connect deadline (most refused at once by the
// per-address cap), a client from another address gets in meanwhile,
// and idle keep-alive-0 clients go after 1.5 times max_keepalive.
func TestSilentConnectionsIntegration(t *testing.T) {
	bin := edgedBinary(t)
	_, _, mqttAddr, wsAddr, httpAddr := startHostile(t, bin, "viewer",
		"  max_clients: 8\n  max_clients_per_address: 4\n  connect_timeout: 2s\n  max_keepalive: 2s\n", "")

	const silent = 1000
	var conns []net.Conn
	for range silent {
		conns = append(conns, dialFrom(t, "127.0.0.1", mqttAddr))
	}
	// Half a CONNECT, from another address.
	half := dialFrom(t, "127.0.0.2", mqttAddr)
	if _, err := half.Write(connectPacket(4, "half", 30, nil)[:6]); err != nil {
		t.Fatal(err)
	}
	conns = append(conns, half)
	// An upgraded WebSocket that never sends CONNECT.
	nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.4")}}
	wd := websocket.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: 5 * time.Second}
	ws, _, err := wd.Dial("ws://"+wsAddr+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	conns = append(conns, ws.UnderlyingConn())

	// Meanwhile a real client from another address gets in.
	politeConn := dialFrom(t, "127.0.0.3", mqttAddr)
	if _, code := rawConnect(t, politeConn, 4, "polite", 2, nil); code != 0 {
		t.Fatalf("a polite client was refused during the flood: CONNACK %#x", code)
	}
	conns = append(conns, politeConn) // silent from now on: keep-alive 2 s ends it

	var wg sync.WaitGroup
	var mu sync.Mutex
	open, slowest := 0, time.Duration(0)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			took, ok := closedBy(c, 10*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if !ok {
				open++
			}
			slowest = max(slowest, took)
		}()
	}
	wg.Wait()
	t.Logf("%d silent connections: the last closed after %v; %d refused at accept", len(conns), slowest.Round(time.Millisecond), getHealth(t, httpAddr).Broker.ConnectionsRefused)
	if open > 0 {
		t.Fatalf("%d of %d silent connections still open 10 s after a 2 s connect_timeout (keep-alive 2 s)", open, len(conns))
	}

	// max_clients is 8: eight idle keep-alive-0 clients from eight
	// addresses take every slot, then go after 1.5 x max_keepalive (3 s).
	var idle []net.Conn
	for i := range 8 {
		c := dialFrom(t, fmt.Sprintf("127.0.0.%d", 40+i), mqttAddr)
		if _, code := rawConnect(t, c, 4, fmt.Sprint("idle-", i), 0, nil); code != 0 {
			t.Fatalf("idle client %d: CONNACK %#x", i, code)
		}
		idle = append(idle, c)
	}
	if took, ok := closedBy(dialFrom(t, "127.0.0.60", mqttAddr), 5*time.Second); !ok {
		t.Fatalf("a ninth client was not refused at max_clients 8 (open after %v)", took)
	}
	for i, c := range idle {
		if took, ok := closedBy(c, 10*time.Second); !ok {
			t.Fatalf("idle keep-alive-0 client %d still connected after %v (max_keepalive 2s)", i, took)
		}
	}
	if _, code := rawConnect(t, dialFrom(t, "127.0.0.61", mqttAddr), 4, "after", 2, nil); code != 0 {
		t.Fatalf("after the idle clients went, a new one was refused: CONNACK %#x", code)
	}
}

// TestLogVolumeUnderChurnIntegration pins issue 7's log flood: connect
// and disconnect churn with keep-alive 0 logged a WARN per connection
// (about 3,000 lines/s). 600 connections from 60 addresses, half with
// keep-alive 0, plus a flood refused by the per-address rate, add a
// bounded number of log lines.
func TestLogVolumeUnderChurnIntegration(t *testing.T) {
	bin := edgedBinary(t)
	d, _, mqttAddr, _, _ := startHostile(t, bin, "viewer", "  max_connects_per_minute: 600\n  connect_timeout: 2s\n", "")
	time.Sleep(time.Second) // start-up lines are written; what follows is the churn's
	before := strings.Count(d.logs.String(), "\n")
	for i := range 600 {
		c := dialFrom(t, fmt.Sprintf("127.0.1.%d", i%60), mqttAddr)
		_, _ = rawConnect(t, c, 4, fmt.Sprint("churn-", i), uint16(i%2), nil)
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	var flood []net.Conn
	for range 300 { // one address past its rate: refused at accept
		flood = append(flood, dialFrom(t, "127.0.2.1", mqttAddr))
	}
	for _, c := range flood {
		if _, ok := closedBy(c, 10*time.Second); !ok {
			t.Fatal("a connection without CONNECT is still open 10 s after a 2 s connect_timeout")
		}
	}
	lines := strings.Count(d.logs.String(), "\n") - before
	t.Logf("900 connections added %d log lines", lines)
	if lines > 30 {
		t.Errorf("900 connections added %d log lines, want at most 30:\n%s", lines, d.logs.String())
	}
}
