package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
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
