package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/edged/edged/cmd/internal/benchrig"
	"github.com/edged/edged/uplink/uplinktest"
)

// TestRaceUnderTrafficIntegration runs edged built with the race
// detector through the traffic that exercises its concurrent paths at
// once, for a few seconds: sensors sampling and forwarded; a LAN QoS 1
// and QoS 2 publisher on forwarded topics; a persistent QoS 1 session
// taken over again and again by a new connection while messages are
// delivered to it; retained messages; a WebSocket subscriber; control
// commands over HTTP and MQTT; clients that vanish, leaving Wills; HTTP
// scrapes of /metrics and the API; a reload; and the cloud stopping and
// coming back under all of it. Then a clean stop: exit 0, no race
// reported.
func TestRaceUnderTrafficIntegration(t *testing.T) {
	bin := raceBinary(t)
	mqBin := requireTool(t, "mosquitto", "EDGED_REQUIRE_MOSQUITTO")
	mq, err := uplinktest.StartMosquitto(mqBin, t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mq.Stop)
	operator := func(c string) string {
		return strings.Replace(fastSim(uplinkYAML(mq.Addr, ""))(c), "anonymous_role: publisher ", "anonymous_role: operator ", 1)
	}
	d, mqttAddr, wsAddr, httpAddr := startSim(t, bin, operator)
	// A browser's client: everything over WebSocket, all along.
	dialer := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	ws, _, err := dialer.Dial("ws://"+wsAddr+"/mqtt", map[string][]string{"Origin": {"http://" + wsAddr}})
	if err != nil {
		t.Fatal(err)
	}
	readings := mqttClient(t, &wsNetConn{Conn: ws.UnderlyingConn(), ws: ws}, "#")

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	var published [3]atomic.Int64
	var takeovers, resumed, scrapes, commands, wills atomic.Int64
	run := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}

	// LAN publishers: QoS 1 (up to 16 awaiting PUBACK) and QoS 2, both
	// forwarded, every other one retained.
	for _, qos := range []byte{1, 2} {
		run(func() {
			c, err := benchrig.Dial(mqttAddr, benchrig.ClientOpts{ID: fmt.Sprintf("race-pub-%d", qos), CleanStart: true})
			if err != nil {
				report(err)
				return
			}
			defer benchrig.Disconnect(c)
			for i := 0; ctx.Err() == nil && i < 50000; i++ {
				pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := c.Publish(pctx, &paho.Publish{Topic: fmt.Sprintf("lan/race/%d", i%4), QoS: qos, Retain: i%2 == 0, Payload: benchrig.Payload(uint64(i), time.Now())})
				pcancel()
				if err != nil {
					if ctx.Err() == nil {
						report(fmt.Errorf("QoS %d publish %d: %w", qos, i, err))
					}
					return
				}
				published[qos].Add(1)
				time.Sleep(time.Millisecond) // the race detector needs interleaving, not a flood: other packages' tests share the cores
			}
		})
	}
	// A persistent session taken over by a new connection every 50 ms
	// (at most 110), each subscribing again (which scans the retained
	// messages), while QoS 1 messages are delivered to it.
	run(func() {
		var subs []*benchrig.Subscriber
		defer func() {
			for _, s := range subs {
				s.Close()
			}
		}()
		for i := 0; ctx.Err() == nil && i < 110; i++ {
			// From 8 addresses: max_connects_per_minute admits bursts of
			// 16 from one.
			// Resumed (Clean Start off), so the takeover hands the
			// session's messages in flight to the new connection.
			s, err := benchrig.Resume(mqttAddr, "race-session", net.IPv4(127, 0, 0, byte(10+i%8)), "lan/race/#", 1)
			if err != nil {
				report(fmt.Errorf("takeover %d: %w", i, err))
				return
			}
			subs = append(subs, s)
			takeovers.Add(1)
			if s.SessionPresent() {
				resumed.Add(1) // the session's messages in flight go to the new connection
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	// HTTP: metrics, readiness and the API, over and over.
	run(func() {
		paths := []string{"/metrics", "/readyz", "/healthz", "/api/v1/sensors", "/api/v1/controllers", "/api/v1/uplink"}
		for i := 0; ctx.Err() == nil && i < 20000; i++ {
			resp, err := httpClient.Get("http://" + httpAddr + paths[i%len(paths)])
			if err != nil {
				report(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			scrapes.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	})
	// Control: commands over HTTP and over MQTT, alternating.
	run(func() {
		c, err := benchrig.Dial(mqttAddr, benchrig.ClientOpts{ID: "race-control", CleanStart: true})
		if err != nil {
			report(err)
			return
		}
		defer benchrig.Disconnect(c)
		for i := 0; ctx.Err() == nil && i < 20000; i++ {
			body := `{"mode":"manual","output":1}`
			if i%2 == 1 {
				body = fmt.Sprintf(`{"mode":"auto","setpoint":%d}`, 18+i%5)
			}
			if i%4 < 2 {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, "http://"+httpAddr+"/api/v1/controllers/heat", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := httpClient.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						report(err)
					}
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					report(fmt.Errorf("PATCH %s: HTTP %d", body, resp.StatusCode))
					return
				}
			} else {
				pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := c.Publish(pctx, &paho.Publish{Topic: "edged/sim-01/control/heat/set", QoS: 1, Payload: []byte(body)})
				pcancel()
				if err != nil {
					if ctx.Err() == nil {
						report(err)
					}
					return
				}
			}
			commands.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	})
	// Clients that vanish without DISCONNECT: their Wills are published.
	run(func() {
		for i := 0; ctx.Err() == nil && i < 30; i++ {
			// From addresses of their own (max_connects_per_minute).
			dialer := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(20+i%8))}}
			conn, err := dialer.DialContext(ctx, "tcp", mqttAddr)
			if err != nil {
				report(err)
				return
			}
			c := paho.NewClient(paho.ClientConfig{Conn: conn, OnClientError: func(error) {}})
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			_, err = c.Connect(cctx, &paho.Connect{ClientID: fmt.Sprintf("race-will-%d", i), CleanStart: true, KeepAlive: 30,
				WillMessage: &paho.WillMessage{Topic: "lan/race/will", QoS: 1, Payload: []byte("gone")}})
			ccancel()
			conn.Close()
			if err != nil {
				if ctx.Err() == nil {
					report(fmt.Errorf("will client %d: %w", i, err))
				}
				return
			}
			wills.Add(1)
			select {
			case <-ctx.Done():
			case <-time.After(150 * time.Millisecond):
			}
		}
	})
	// The cloud goes away and comes back; a reload comes in between.
	run(func() {
		time.Sleep(1500 * time.Millisecond)
		mq.Stop()
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil { // by PID: the process we started
			report(err)
		}
		time.Sleep(1500 * time.Millisecond)
		if err := mq.Start(); err != nil {
			report(err)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d QoS 1 and %d QoS 2 publishes, %d takeovers (%d resuming the session), %d HTTP requests, %d commands, %d Wills, %d messages over WebSocket",
		published[1].Load(), published[2].Load(), takeovers.Load(), resumed.Load(), scrapes.Load(), commands.Load(), wills.Load(), len(readings))
	if published[1].Load() < 100 || published[2].Load() < 100 || resumed.Load() < 10 || scrapes.Load() < 10 ||
		commands.Load() < 10 || wills.Load() < 5 || len(readings) == 0 {
		t.Error("too little traffic to look for races")
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, d, 60*time.Second)
	if logs := d.logs.String(); d.err != nil || strings.Contains(logs, "DATA RACE") {
		t.Fatalf("edged built with -race: exit %v\n%s", d.err, logs)
	}
}

// TestRaceTLSAccessReloadIntegration runs edged built with the race
// detector through the paths TestRaceUnderTrafficIntegration leaves out,
// all at once for a few seconds: MQTT over TLS and over secure WebSocket,
// with users logging in, publishing, subscribing and being cut off
// without a DISCONNECT or a TLS close; wrong passwords over MQTT and
// HTTPS until the failed-login limit refuses them unchecked; publishes
// and Wills the access rules refuse; Home Assistant's birth messages;
// the dashboard's event stream and API over HTTPS with a session cookie;
// subscribers over TCP, TLS and secure WebSocket that never read, under
// a bulk publisher, until they are disconnected as stuck; MQTT 5
// sessions with a Receive Maximum, QoS 2 both ways, short session
// expiries and delayed Wills, on client ids taken over again and again;
// an uplink over
// TLS whose connection is cut again and again; and reloads that change
// the accounts, the anonymous role, a sensor and a controller (Home
// Assistant's entity removed and announced again) and broker limits
// (restart needed). Then a clean stop: exit 0, no race reported.
func TestRaceTLSAccessReloadIntegration(t *testing.T) {
	bin := raceBinary(t)
	mqBin := requireTool(t, "mosquitto", "EDGED_REQUIRE_MOSQUITTO")

	// The cloud: Mosquitto over TLS with a PKI of its own, behind a
	// proxy the test cuts; a plain listener for the collector.
	cloudCA, cloudCert, cloudKey, _ := testPKI(t)
	// Mosquitto started as root drops to its own user before it reads
	// its certificates: let it in. Test keys only; edged's stay 0600.
	for _, p := range []string{filepath.Dir(filepath.Dir(cloudKey)), filepath.Dir(cloudKey), cloudKey} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mq, err := uplinktest.StartMosquitto(mqBin, t.TempDir(), fmt.Sprintf("certfile %s\nkeyfile %s", cloudCert, cloudKey), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mq.Stop)
	proxy, err := uplinktest.NewProxy(mq.Addr, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	cloud, err := uplinktest.Collect(mq.Addrs[1], "#")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cloud.Close)

	// Config A: the access rig (users, TLS) with one failed login a
	// minute per address, anonymous viewers allowed (the stuck
	// subscribers), stuck clients cut after 2 s, and the uplink over TLS.
	limitsA, limitsB := "  max_login_failures: 1\n  write_timeout: 2s\n", "  max_login_failures: 2\n  write_timeout: 3s\n"
	r := startAccessOn(t, bin, func(s string) string {
		s = strings.Replace(s, "allow_anonymous: false", "allow_anonymous: true", 1)
		s = strings.Replace(s, "  max_login_failures: 3\n", limitsA+"  max_clients: 128\n", 1)
		return s + strings.Replace(uplinkYAML(proxy.Addr, "  tls: {ca_file: "+cloudCA+"}\n"), "mqtt://", "mqtts://", 1)
	})
	data, err := os.ReadFile(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Config B: no light sensor, another setpoint (the controller is
	// restarted), anonymous clients may publish, home-op's rules
	// narrowed, other broker limits.
	cfgA, cfgB := string(data), withoutLight(t, string(data))
	for old, repl := range map[string]string{
		"    setpoint: 22.5\n":   "    setpoint: 21.5\n",
		"anonymous_role: viewer": "anonymous_role: publisher",
		`publish: ["home/#"]`:    `publish: ["home/x/#"]`,
		limitsA:                  limitsB,
	} {
		if !strings.Contains(cfgB, old) {
			t.Fatalf("the config no longer contains %q; update the test", old)
		}
		cfgB = strings.Replace(cfgB, old, repl, 1)
	}
	pem, err := os.ReadFile(r.ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tlsConf := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	// from dials from 127.0.0.n: each address its own LAN host, within
	// max_connects_per_minute and the HTTP listener's per-address limits.
	from := func(n int) *net.Dialer {
		return &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(n))}}
	}
	// dialMQTT dials the plain MQTT listener from 127.0.0.n, and once
	// more if the dial timed out: once in CI (at 74caf26) a loopback
	// connect from 127.0.0.77 got no answer within 5 s under the -race
	// build's load, with no accept error in edged's log and every other
	// worker going on. The test looks for data races; a second timeout
	// still fails it. dialRetries counts the retries (logged).
	var dialRetries atomic.Int64
	dialMQTT := func(ctx context.Context, n int) (net.Conn, error) {
		conn, err := from(n).DialContext(ctx, "tcp", r.mqtt)
		var ne net.Error
		if err != nil && errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
			dialRetries.Add(1)
			conn, err = from(n).DialContext(ctx, "tcp", r.mqtt)
		}
		return conn, err
	}
	httpsFrom := func(n int, jar http.CookieJar) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Jar: jar, Transport: &http.Transport{DialContext: from(n).DialContext, TLSClientConfig: tlsConf}}
	}

	// Each bcrypt check takes about 0.7 s under the race detector and at
	// most two run at once; a correct password is remembered (until a
	// reload changes the accounts). Check each user's once before the
	// traffic, so that logins are not all refused as busy at the start.
	for _, user := range []string{"op", "viewer", "esp-3"} {
		req, _ := http.NewRequest("GET", r.httpsURL+"/api/v1/me", nil)
		req.SetBasicAuth(user, "pw-"+user)
		resp, err := httpsFrom(99, nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d", user, resp.StatusCode)
		}
	}

	// Subscribers to # that never read, over TCP, TLS and secure
	// WebSocket: tiny receive buffers, keep-alive 0.
	stuckTCP(t, r.mqtt, "stuck-tcp")
	nd := net.Dialer{Timeout: 5 * time.Second, Control: slowRcvBuf}
	raw, err := nd.Dial("tcp", r.mqtts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	if c, code := rawConnect(t, tls.Client(raw, tlsConf), 4, "stuck-tls", 0, nil); code != 0 {
		t.Fatalf("stuck-tls: CONNACK %#x", code)
	} else {
		c.subscribe(t, "#", 1)
	}
	wd := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second, NetDialContext: nd.DialContext, TLSClientConfig: tlsConf}
	stuckWSS, _, err := wd.Dial("wss://"+r.wss+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stuckWSS.Close() })
	if c, code := rawConnect(t, &wsNetConn{Conn: stuckWSS.UnderlyingConn(), ws: stuckWSS}, 4, "stuck-wss", 0, nil); code != 0 {
		t.Fatalf("stuck-wss: CONNACK %#x", code)
	} else {
		c.subscribe(t, "#", 1)
	}
	h0 := getHealth(t, r.http)

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	report := func(err error) {
		if ctx.Err() != nil {
			return // the end of the test cut it short
		}
		select {
		case errs <- err:
		default:
		}
	}
	run := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	var (
		sessions                  [2]atomic.Int64 // mqtts, wss
		tlsPublished, tlsReceived atomic.Int64
		loginsFailed, loginsLimited, loginsBusy,
		refused, haConfigs, haRemoved, haAnnounced,
		streams, events, logoutEnds, apiCalls, bulk, cuts, reloads,
		m5Sessions, m5Published, m5Received atomic.Int64
	)

	// connectAs logs user in over plain MQTT from 127.0.0.n, again while
	// every password check is busy (CONNACK 0x89), until ctx ends.
	connectAs := func(n int, id, user string) (*paho.Client, chan *paho.Publish, error) {
		for ctx.Err() == nil {
			conn, err := dialMQTT(ctx, n)
			if err != nil {
				return nil, nil, err
			}
			c, msgs, code, err := loginAs(conn, id, user, "pw-"+user, nil)
			if code == 0x89 {
				loginsBusy.Add(1)
				conn.Close()
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if err != nil || code != 0 {
				conn.Close()
				return nil, nil, fmt.Errorf("%s as %s: CONNACK %#x, %v", id, user, code, err)
			}
			return c, msgs, nil
		}
		return nil, nil, ctx.Err()
	}

	// Users over mqtts and wss: log in, subscribe, publish QoS 1 (one
	// retained), then the TCP connection is closed under TLS, every
	// other time with a publish in flight.
	for k, kind := range []string{"mqtts", "wss"} {
		run(func() {
			for i := 0; ctx.Err() == nil && i < 300; i++ {
				d := from(40 + 16*k + i%16)
				var raw, conn net.Conn
				if kind == "mqtts" {
					c, err := d.DialContext(ctx, "tcp", r.mqtts)
					if err != nil {
						report(err)
						return
					}
					raw, conn = c, tls.Client(c, tlsConf)
				} else {
					wd := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second, TLSClientConfig: tlsConf,
						NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
							c, err := d.DialContext(ctx, network, addr)
							raw = c
							return c, err
						}}
					ws, _, err := wd.DialContext(ctx, "wss://"+r.wss+"/mqtt", nil)
					if err != nil {
						report(fmt.Errorf("wss %d: %w", i, err))
						return
					}
					conn = &wsNetConn{Conn: ws.UnderlyingConn(), ws: ws}
				}
				user := []string{"op", "esp-3", "viewer"}[i%3]
				c, msgs, code, err := loginAs(conn, fmt.Sprintf("%s-%d", kind, i), user, "pw-"+user, nil)
				if code == 0x89 { // every bcrypt check busy: refused unchecked
					loginsBusy.Add(1)
					raw.Close()
					time.Sleep(100 * time.Millisecond)
					continue
				}
				if err != nil || code != 0 {
					raw.Close()
					report(fmt.Errorf("%s %d as %s: CONNACK %#x, %v", kind, i, user, code, err))
					return
				}
				sessions[k].Add(1)
				topic := "lan/tls/" + kind
				if user == "esp-3" {
					topic = "home/esp-3/" + kind
				}
				pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
				if _, err := c.Subscribe(pctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}}); err != nil {
					report(fmt.Errorf("%s %d subscribe: %w", kind, i, err))
				}
				for j := 0; j < 5 && pctx.Err() == nil; j++ {
					pr, err := c.Publish(pctx, &paho.Publish{Topic: topic, QoS: 1, Retain: j == 0, Payload: []byte(fmt.Sprint(i, j))})
					switch {
					case pr != nil && pr.ReasonCode == 0x87 && user == "viewer":
						refused.Add(1)
					case err != nil || pr.ReasonCode >= 0x80:
						report(fmt.Errorf("%s %d as %s, publish %s: %v %+v", kind, i, user, topic, err, pr))
					default:
						tlsPublished.Add(1)
					}
				}
				if i%2 == 0 {
					// paho's publish waits for its PUBACK until its
					// context ends, connection or not.
					inFlight := make(chan struct{})
					go func() {
						defer close(inFlight)
						_, _ = c.Publish(pctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("cut")})
					}()
					raw.Close()
					<-c.Done()
					pcancel()
					<-inFlight
				} else {
					raw.Close()
					<-c.Done()
				}
				pcancel()
				tlsReceived.Add(int64(drain(msgs)))
			}
		})
	}
	// Wrong passwords from 4 addresses, over MQTT and HTTPS by turns, ten
	// each: the first is checked and refused, then the limit refuses the
	// rest unchecked. (Each check is a bcrypt hash at cost 10, about a
	// second under the race detector, and at most two run at once: more
	// would starve the other logins.)
	run(func() {
		for a := 0; ctx.Err() == nil && a < 4; a++ {
			hc := httpsFrom(100+a, nil)
			for j := 0; ctx.Err() == nil && j < 10; j++ {
				var code int
				if (a+j)%2 == 0 {
					req, _ := http.NewRequestWithContext(ctx, "GET", r.httpsURL+"/api/v1/me", nil)
					req.SetBasicAuth("op", "guess")
					resp, err := hc.Do(req)
					if err != nil {
						report(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = map[int]int{401: 0x86, 429: 0x9f, 503: 0x89}[resp.StatusCode]
				} else {
					conn, err := dialMQTT(ctx, 100+a)
					if err != nil {
						report(err)
						return
					}
					_, _, ack, err := loginAs(conn, "guess", "op", "guess", nil)
					conn.Close()
					if err != nil {
						report(err)
						return
					}
					code = int(ack)
				}
				switch code {
				case 0x86:
					loginsFailed.Add(1)
				case 0x9f:
					loginsLimited.Add(1)
				case 0x89:
					loginsBusy.Add(1)
				default:
					report(fmt.Errorf("wrong password from 127.0.0.%d: %#x", 100+a, code))
					return
				}
			}
			hc.CloseIdleConnections()
		}
	})
	// What the access rules refuse, again and again: a viewer's command
	// (QoS 1 and 2), a retained command and a $SYS publish by an
	// operator, esp-3 outside its rules, and a viewer's Will.
	run(func() {
		var cs []*paho.Client
		defer func() {
			for _, c := range cs {
				_ = c.Disconnect(&paho.Disconnect{})
			}
		}()
		for _, user := range []string{"viewer", "op", "esp-3"} {
			c, _, err := connectAs(70+len(cs), "acl-"+user, user)
			if err != nil {
				report(err)
				return
			}
			cs = append(cs, c)
		}
		tries := []struct {
			c *paho.Client
			p paho.Publish
		}{
			{cs[0], paho.Publish{Topic: heatSet, QoS: 1, Payload: []byte(`{"setpoint":25}`)}},
			{cs[0], paho.Publish{Topic: heatSet, QoS: 2, Payload: []byte(`{"setpoint":25}`)}},
			{cs[1], paho.Publish{Topic: heatSet, QoS: 1, Retain: true, Payload: []byte(`{"setpoint":25}`)}},
			{cs[1], paho.Publish{Topic: "$SYS/broker/x", QoS: 1, Payload: []byte("x")}},
			{cs[2], paho.Publish{Topic: "home/esp-4/temp", QoS: 1, Payload: []byte("x")}},
		}
		for i := 0; ctx.Err() == nil && i < 5000; i++ {
			if i%50 == 49 {
				conn, err := dialMQTT(ctx, 74+i/50%8)
				if err != nil {
					report(err)
					return
				}
				_, _, code, err := loginAs(conn, "acl-will", "viewer", "pw-viewer", &paho.WillMessage{Topic: heatSet, Payload: []byte(`{"mode":"off"}`)})
				conn.Close()
				if code != 0x87 && code != 0x89 {
					report(fmt.Errorf("a viewer's Will command: CONNACK %#x %v", code, err))
					return
				}
				refused.Add(1)
				continue
			}
			try := tries[i%len(tries)]
			pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
			p := try.p
			pr, err := try.c.Publish(pctx, &p)
			pcancel()
			if pr == nil || pr.ReasonCode != 0x87 {
				report(fmt.Errorf("publish %s qos %d retain %v: %+v %v, want 0x87", p.Topic, p.QoS, p.Retain, pr, err))
				return
			}
			refused.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	})
	// Home Assistant: a birth message every 500 ms; the light sensor's
	// entity is removed (empty config) by one reload and announced again
	// by the next.
	run(func() {
		c, msgs, err := connectAs(80, "homeassistant", "op")
		if err != nil {
			report(err)
			return
		}
		defer func() { _ = c.Disconnect(&paho.Disconnect{}); <-c.Done(); drain(msgs) }()
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = c.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "homeassistant/#", QoS: 1}}})
		scancel()
		if err != nil {
			report(err)
			return
		}
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		light, gone := "homeassistant/sensor/sim-01/light_illuminance/config", false
		for i := 0; i < 10000; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := c.Publish(pctx, &paho.Publish{Topic: "homeassistant/status", QoS: 1, Payload: []byte("online")})
				pcancel()
				if err != nil {
					report(fmt.Errorf("birth: %w", err))
					return
				}
			case m := <-msgs:
				if !strings.HasSuffix(m.Topic, "/config") {
					continue
				}
				haConfigs.Add(1)
				switch {
				case m.Topic == light && len(m.Payload) == 0:
					haRemoved.Add(1)
					gone = true
				case m.Topic == light && gone:
					haAnnounced.Add(1)
					gone = false
				}
			}
		}
	})
	// The dashboard: a viewer's browser session over HTTPS with the event
	// stream open; a reload that changes the accounts ends the session
	// and its stream, and the page logs in again.
	run(func() {
		jar, _ := cookiejar.New(nil)
		hc := httpsFrom(90, jar)
		hc.Timeout = 0 // the stream is long; ctx bounds it
		defer hc.CloseIdleConnections()
		for i := 0; ctx.Err() == nil && i < 50; i++ {
			req, _ := http.NewRequestWithContext(ctx, "POST", r.httpsURL+"/api/v1/login", strings.NewReader(`{"user":"viewer","password":"pw-viewer"}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				report(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				if resp.StatusCode == http.StatusServiceUnavailable { // bcrypt busy
					loginsBusy.Add(1)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				report(fmt.Errorf("dashboard login: HTTP %d", resp.StatusCode))
				return
			}
			req, _ = http.NewRequestWithContext(ctx, "GET", r.httpsURL+"/api/v1/events", nil)
			resp, err = hc.Do(req)
			if err != nil {
				report(err)
				return
			}
			if resp.StatusCode == http.StatusUnauthorized {
				resp.Body.Close()
				continue // a reload ended the session since the login
			}
			if resp.StatusCode != http.StatusOK {
				resp.Body.Close()
				report(fmt.Errorf("events: HTTP %d", resp.StatusCode))
				return
			}
			streams.Add(1)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "event: ") {
					events.Add(1)
				}
			}
			resp.Body.Close()
		}
	})
	// An operator's API client over HTTPS: each round logs in, opens the
	// event stream, polls what the dashboard reads, sends a command, and
	// logs out, which ends the stream. Each of its 4 addresses keeps its
	// connections from round to round, as a browser or Home Assistant
	// does. Two new TLS connections a round ran out an address's
	// httpConnectsPerMinute (a burst of httpMaxConnsPerAddr, then 4 a
	// second) within the 8 s, and the gate closed the next connection at
	// accept: the client saw EOF or a reset, and edged logged "refused a
	// connection" with max_connects_per_minute.
	var opTransports [4]*http.Transport
	for a := range opTransports {
		opTransports[a] = httpsFrom(91+a, nil).Transport.(*http.Transport)
		defer opTransports[a].CloseIdleConnections()
	}
	run(func() {
		paths := []string{"/api/v1/me", "/api/v1/sensors", "/api/v1/sensors/air", "/api/v1/sensors/air/history?quantity=temperature&since=10m",
			"/api/v1/controllers", "/api/v1/controllers/heat", "/api/v1/actuators", "/api/v1/uplink", "/healthz", "/readyz", "/metrics"}
		for i := 0; ctx.Err() == nil && i < 100; i++ {
			jar, _ := cookiejar.New(nil)
			hc := &http.Client{Timeout: 10 * time.Second, Jar: jar, Transport: opTransports[i%4]}
			do := func(method, path, body string) (int, error) {
				req, _ := http.NewRequestWithContext(ctx, method, r.httpsURL+path, strings.NewReader(body))
				if body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				resp, err := hc.Do(req)
				if err != nil {
					return 0, err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode, nil
			}
			code, err := do("POST", "/api/v1/login", `{"user":"op","password":"pw-op"}`)
			if err != nil || code == http.StatusServiceUnavailable {
				if err != nil {
					report(err)
					return
				}
				loginsBusy.Add(1)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if code != http.StatusNoContent {
				report(fmt.Errorf("op login: HTTP %d", code))
				return
			}
			sctx, scancel := context.WithCancel(ctx)
			req, _ := http.NewRequestWithContext(sctx, "GET", r.httpsURL+"/api/v1/events", nil)
			stream, err := hc.Do(req)
			if err != nil {
				scancel()
				report(err)
				return
			}
			ended := make(chan struct{})
			go func() {
				defer close(ended)
				_, _ = io.Copy(io.Discard, stream.Body)
			}()
			for j, p := range paths {
				code, err := do("GET", p, "")
				if err != nil {
					report(err)
					break
				}
				if code == http.StatusUnauthorized && j > 0 {
					break // a reload ended the session
				}
				apiCalls.Add(1)
			}
			if code, err := do("PATCH", "/api/v1/controllers/heat", fmt.Sprintf(`{"setpoint":%d}`, 18+i%5)); err == nil && code == http.StatusOK {
				apiCalls.Add(1)
			}
			if _, err := do("POST", "/api/v1/logout", ""); err == nil {
				select {
				case <-ended:
					logoutEnds.Add(1)
				case <-time.After(5 * time.Second):
					report(errors.New("the event stream outlived its session's logout by 5 s"))
				}
			}
			scancel()
			<-ended
			stream.Body.Close()
		}
	})
	// MQTT 5 sessions on four client ids by turns, each cut off without
	// a DISCONNECT or ended by one that shortens its expiry: a Receive
	// Maximum of 2 (the connection's send window), QoS 2 both ways (ids
	// that clash with the broker's own are swapped), a subscription
	// identifier, a 1 s session expiry for some (expired by mochi's
	// loop) and a Will delayed by 1 s (sent by mochi's loop, or made void
	// by the next connection with the id, which comes about when the
	// delay ends). Their logins wait for bcrypt after each reload, so
	// most come before the first.
	run(func() {
		u16, u32 := func(v uint16) *uint16 { return &v }, func(v uint32) *uint32 { return &v }
		for i := 0; ctx.Err() == nil && i < 300; i++ {
			conn, err := dialMQTT(ctx, 110+i%8)
			if err != nil {
				report(err)
				return
			}
			id := fmt.Sprintf("m5-%d", i%4)
			c := paho.NewClient(paho.ClientConfig{Conn: conn, OnClientError: func(error) {}, OnServerDisconnect: func(*paho.Disconnect) {},
				OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(paho.PublishReceived) (bool, error) {
					m5Received.Add(1)
					return true, nil
				}}})
			expiry := uint32(60)
			if i%3 == 0 {
				expiry = 1
			}
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			ca, err := c.Connect(cctx, &paho.Connect{ClientID: id, CleanStart: i%5 == 0, KeepAlive: 30,
				Username: "op", UsernameFlag: true, Password: []byte("pw-op"), PasswordFlag: true,
				Properties:     &paho.ConnectProperties{SessionExpiryInterval: u32(expiry), ReceiveMaximum: u16(2)},
				WillMessage:    &paho.WillMessage{Topic: "lan/m5/will/" + id, QoS: 1, Retain: i%2 == 0, Payload: []byte(fmt.Sprint(i))},
				WillProperties: &paho.WillProperties{WillDelayInterval: u32(1)}})
			if ca != nil && ca.ReasonCode == 0x89 {
				ccancel()
				conn.Close()
				loginsBusy.Add(1)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if err != nil {
				ccancel()
				conn.Close()
				report(fmt.Errorf("mqtt 5 session %d: %v %+v", i, err, ca))
				return
			}
			m5Sessions.Add(1)
			subID := i%4 + 1
			if _, err := c.Subscribe(cctx, &paho.Subscribe{Properties: &paho.SubscribeProperties{SubscriptionIdentifier: &subID},
				Subscriptions: []paho.SubscribeOptions{{Topic: "lan/m5/#", QoS: 2}}}); err != nil {
				report(fmt.Errorf("mqtt 5 session %d subscribe: %w", i, err))
			}
			for j := 0; j < 4 && cctx.Err() == nil; j++ {
				if _, err := c.Publish(cctx, &paho.Publish{Topic: "lan/m5/" + id, QoS: byte(1 + j%2), Payload: []byte(fmt.Sprint(i, j))}); err != nil {
					report(fmt.Errorf("mqtt 5 session %d publish: %w", i, err))
					break
				}
				m5Published.Add(1)
			}
			if i%4 == 3 {
				_ = c.Disconnect(&paho.Disconnect{Properties: &paho.DisconnectProperties{SessionExpiryInterval: u32(0)}})
			}
			conn.Close()
			<-c.Done()
			ccancel()
			time.Sleep(time.Duration(50+i%7*50) * time.Millisecond)
		}
	})
	// A bulk publisher fills the stuck subscribers' buffers (topics
	// the uplink does not forward).
	run(func() {
		c, _, err := connectAs(85, "bulk", "op")
		if err != nil {
			report(err)
			return
		}
		defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
		payload := make([]byte, 8<<10)
		for i := 0; ctx.Err() == nil && i < 4000; i++ {
			if _, err := c.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("bulk/%d", i%8), QoS: 0, Payload: payload}); err != nil {
				report(fmt.Errorf("bulk publish %d: %w", i, err))
				return
			}
			bulk.Add(1)
		}
	})
	// The uplink's TLS connection is cut every 1.5 s.
	run(func() {
		for i := 0; i < 5; i++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(1500 * time.Millisecond):
			}
			proxy.Cut()
			cuts.Add(1)
		}
	})
	// Reloads: B, A, B, A, 1.8 s apart.
	run(func() {
		for i, cfg := range []string{cfgB, cfgA, cfgB, cfgA} {
			select {
			case <-ctx.Done():
				return
			case <-time.After(1800 * time.Millisecond):
			}
			if err := os.WriteFile(r.cfg, []byte(cfg), 0o644); err != nil {
				report(err)
				return
			}
			if err := r.d.cmd.Process.Signal(syscall.SIGHUP); err != nil { // by PID: the process we started
				report(fmt.Errorf("reload %d: %w", i, err))
				return
			}
			reloads.Add(1)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	h1 := getHealth(t, r.http)
	slow := h1.Broker.SlowClients - h0.Broker.SlowClients
	applied := strings.Count(r.d.logs.String(), "config reloaded")
	t.Logf("%d MQTT dials retried after a timeout", dialRetries.Load())
	t.Logf("%d mqtts and %d wss sessions cut (%d publishes, %d received), logins: %d wrong, %d limited, %d busy; %d refused by the rules; "+
		"Home Assistant: %d configs, %d removals, %d announced again; %d event streams (%d events, %d ended by logout), %d API calls; "+
		"%d MQTT 5 sessions (%d publishes, %d received); %d bulk messages, %d stuck clients disconnected; %d uplink cuts, %d uplink connections, %d messages in the cloud; %d reloads sent, %d applied",
		sessions[0].Load(), sessions[1].Load(), tlsPublished.Load(), tlsReceived.Load(), loginsFailed.Load(), loginsLimited.Load(), loginsBusy.Load(), refused.Load(),
		haConfigs.Load(), haRemoved.Load(), haAnnounced.Load(), streams.Load(), events.Load(), logoutEnds.Load(), apiCalls.Load(),
		m5Sessions.Load(), m5Published.Load(), m5Received.Load(), bulk.Load(), slow, cuts.Load(), proxy.Accepted(), cloud.Len(), reloads.Load(), applied)
	for _, m := range []struct {
		what     string
		got, min int64
	}{
		{"mqtts sessions", sessions[0].Load(), 5}, {"wss sessions", sessions[1].Load(), 5}, {"TLS publishes", tlsPublished.Load(), 20},
		{"wrong logins checked", loginsFailed.Load(), 1}, {"logins limited", loginsLimited.Load(), 5},
		{"MQTT 5 sessions", m5Sessions.Load(), 5}, {"MQTT 5 publishes", m5Published.Load(), 20}, {"MQTT 5 deliveries", m5Received.Load(), 20}, {"refusals", refused.Load(), 20},
		{"removals in Home Assistant", haRemoved.Load(), 1}, {"entities announced again", haAnnounced.Load(), 1},
		{"event streams", streams.Load(), 2}, {"events", events.Load(), 5}, {"streams ended by logout", logoutEnds.Load(), 2},
		{"API calls", apiCalls.Load(), 20}, {"stuck clients disconnected", int64(slow), 2},
		{"uplink cuts", cuts.Load(), 3}, {"uplink connections", int64(proxy.Accepted()), 3}, {"messages in the cloud", int64(cloud.Len()), 5},
		{"reloads applied", int64(applied), 3},
	} {
		if m.got < m.min {
			t.Errorf("%s: %d, want at least %d: too little traffic to look for races", m.what, m.got, m.min)
		}
	}

	if err := r.d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, r.d, 60*time.Second)
	if logs := r.d.logs.String(); r.d.err != nil || strings.Contains(logs, "DATA RACE") {
		t.Fatalf("edged built with -race: exit %v\n%s", r.d.err, logs)
	}
}
