package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/edged/edged/cmd/internal/benchrig"
	"github.com/edged/edged/uplink/uplinktest"
)

var (
	raceOnce sync.Once
	raceBin  string
	raceErr  error
)

// raceBinary builds cmd/edged with the race detector, once per test run:
// the other integration tests run a plain build, so a data race inside
// the daemon (the patched mochi, the uplink's inline writes) shows only
// here. A race found makes the binary print "DATA RACE" and exit 66.
func raceBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped under -short")
	}
	raceOnce.Do(func() {
		raceBin = filepath.Join(filepath.Dir(edgedBinary(t)), "edged-race")
		if out, err := exec.Command("go", "build", "-race", "-o", raceBin, ".").CombinedOutput(); err != nil {
			raceErr = fmt.Errorf("go build -race: %v\n%s", err, out)
		}
	})
	if raceErr != nil {
		t.Fatal(raceErr)
	}
	return raceBin
}

// TestRaceUnderTrafficIntegration runs edged built with the race
// detector through the traffic that exercises its concurrent paths at
// once, for a few seconds: sensors sampling and forwarded; a LAN QoS 1
// and QoS 2 publisher on forwarded topics; a persistent QoS 1 session
// taken over again and again by a new connection while messages are
// delivered to it; retained messages; HTTP scrapes of /metrics and the
// API; a reload; and the cloud stopping and coming back under all of
// it. Then a clean stop: exit 0, no race reported.
func TestRaceUnderTrafficIntegration(t *testing.T) {
	bin := raceBinary(t)
	mqBin := requireTool(t, "mosquitto", "EDGED_REQUIRE_MOSQUITTO")
	mq, err := uplinktest.StartMosquitto(mqBin, t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mq.Stop)
	d, mqttAddr, _, httpAddr := startSim(t, bin, fastSim(uplinkYAML(mq.Addr, "")))

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
	var takeovers, scrapes atomic.Int64
	run := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}

	// LAN publishers: QoS 1 (up to 16 awaiting PUBACK) and QoS 2, both
	// forwarded, one in ten retained.
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
				_, err := c.Publish(pctx, &paho.Publish{Topic: fmt.Sprintf("lan/race/%d", i%4), QoS: qos, Retain: i%10 == 0, Payload: benchrig.Payload(uint64(i), time.Now())})
				pcancel()
				if err != nil {
					if ctx.Err() == nil {
						report(fmt.Errorf("QoS %d publish %d: %w", qos, i, err))
					}
					return
				}
				published[qos].Add(1)
			}
		})
	}
	// A persistent session taken over by a new connection every 100 ms
	// (at most 60), each subscribing again, while QoS 1 messages are
	// delivered to it.
	run(func() {
		var subs []*benchrig.Subscriber
		defer func() {
			for _, s := range subs {
				s.Close()
			}
		}()
		for i := 0; ctx.Err() == nil && i < 60; i++ {
			// From 8 addresses: max_connects_per_minute admits bursts of
			// 16 from one.
			s, err := benchrig.Subscribe(mqttAddr, "race-session", net.IPv4(127, 0, 0, byte(10+i%8)), "lan/race/#", 1, true)
			if err != nil {
				report(fmt.Errorf("takeover %d: %w", i, err))
				return
			}
			subs = append(subs, s)
			takeovers.Add(1)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
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
	t.Logf("%d QoS 1 and %d QoS 2 publishes, %d takeovers, %d HTTP requests", published[1].Load(), published[2].Load(), takeovers.Load(), scrapes.Load())
	if published[1].Load() < 100 || published[2].Load() < 100 || takeovers.Load() < 10 || scrapes.Load() < 10 {
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
