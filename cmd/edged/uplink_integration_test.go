package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/uplink/uplinktest"
)

// The uplink's end-to-end tests: a real edged process, a LAN QoS 1
// publisher, Mosquitto as the cloud behind an in-test proxy, and kill -9.
// They send the 50,000 messages (10-15 s each here). Under the
// race detector, which slows the in-test proxy and collector tenfold, they
// send 10,000; `make test` runs them once more without it, at 50,000.
var uplinkMessages = map[bool]int{false: 50000, true: 10000}[raceDetector]

type uplinkRig struct {
	bin, dir, cfg, mqttAddr string
	mq                      *uplinktest.Mosquitto
	proxy                   *uplinktest.Proxy
	col                     *uplinktest.Collector
}

// cloudBehindProxy starts a Mosquitto as the cloud and a proxy to it
// that starts closed (the cloud is down until the test opens it); both
// stop with the test.
func cloudBehindProxy(t *testing.T) (*uplinktest.Mosquitto, *uplinktest.Proxy) {
	t.Helper()
	mqBin := requireTool(t, "mosquitto", "EDGED_REQUIRE_MOSQUITTO")
	mq, err := uplinktest.StartMosquitto(mqBin, t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mq.Stop)
	p, err := uplinktest.NewProxy(mq.Addr, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return mq, p
}

func newUplinkRig(t *testing.T) *uplinkRig {
	t.Helper()
	bin := edgedBinary(t)
	mq, p := cloudBehindProxy(t)
	r := &uplinkRig{bin: bin, mq: mq, proxy: p, dir: t.TempDir()}
	r.cfg = filepath.Join(r.dir, "edged.yaml")
	r.collect(t)
	return r
}

// writeConfig writes edged's config with a newly picked LAN port (and the
// same state directory every time).
func (r *uplinkRig) writeConfig(t *testing.T) (string, []string) {
	t.Helper()
	r.mqttAddr = freePort(t)
	conf := fmt.Sprintf(`device: {id: gw-it}
state_dir: %s
log: {level: info}
broker: {mqtt: %q, websocket: "", allow_anonymous: true, anonymous_role: publisher}
http: {listen: ""}
uplink:
  url: mqtt://%s
  keep_alive: 5s
  max_inflight: 32
  forward:
    - {local: "lan/#", remote: "cloud/{topic}"}
  buffer: {sync: interval, sync_interval: 20ms}
`, filepath.Join(r.dir, "state"), r.mqttAddr, r.proxy.Addr)
	if err := os.WriteFile(r.cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return r.cfg, []string{r.mqttAddr}
}

func (r *uplinkRig) collect(t *testing.T) {
	t.Helper()
	col, err := uplinktest.Collect(r.mq.Addr, "cloud/#")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(col.Close)
	r.col = col
}

// start starts edged, on a newly picked LAN port each time, and waits
// until it is ready.
func (r *uplinkRig) start(t *testing.T) *daemonProc {
	t.Helper()
	return startReady(t, r.bin, func() (string, []string) { return r.writeConfig(t) })
}

// publish sends n QoS 1 messages from the LAN, spread over 4 topics, each
// topic in order from its own goroutine. Every one must be PUBACKed: the
// publisher saw it accepted.
func (r *uplinkRig) publish(t *testing.T, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for k := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := uplinktest.Connect(r.mqttAddr, fmt.Sprintf("lan-%d", k))
			if err != nil {
				errs <- err
				return
			}
			defer p.Close()
			for i := k; i < n; i += 4 {
				if err := p.Publish(fmt.Sprintf("lan/t%d", k), []byte(strconv.Itoa(i))); err != nil {
					errs <- fmt.Errorf("publish %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// backlog reads the buffer's backlog with `edged buffer stat`, as an
// operator would.
func (r *uplinkRig) backlog(t *testing.T) int {
	t.Helper()
	out, err := exec.Command(r.bin, "buffer", "stat", "-c", r.cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("edged buffer stat: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		var n int
		if _, err := fmt.Sscanf(line, "backlog:  %d messages", &n); err == nil {
			return n
		}
	}
	t.Fatalf("no backlog line in edged buffer stat:\n%s", out)
	return 0
}

func kill9(t *testing.T, d *daemonProc) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil { // by PID: the process we started
		t.Fatal(err)
	}
	<-d.done
}

func TestUplinkOutageIntegration(t *testing.T) {
	r := newUplinkRig(t)
	d := r.start(t)
	r.proxy.SetUp(true)
	// The cloud goes down.
	r.col.Close()
	r.mq.Stop()
	r.publish(t, uplinkMessages)

	// The backlog is on disk, and `edged buffer stat` sees it beside the
	// running daemon (which holds the buffer's lock).
	out, err := exec.Command(r.bin, "buffer", "stat", "-c", r.cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("edged buffer stat: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("backlog:  %d messages", uplinkMessages); !strings.Contains(string(out), want) {
		t.Errorf("edged buffer stat: want %q in\n%s", want, out)
	}

	// The cloud comes back; the collector subscribes before edged may
	// reconnect, so it sees everything.
	r.proxy.SetUp(false)
	if err := r.mq.Start(); err != nil {
		t.Fatal(err)
	}
	r.collect(t)
	r.proxy.Cut()
	r.proxy.SetUp(true)
	if !r.col.WaitDistinct(uplinkMessages, 60*time.Second) {
		t.Fatalf("only %d of %d arrived", r.col.Distinct(), uplinkMessages)
	}
	time.Sleep(200 * time.Millisecond) // let any stray duplicate show up
	rep := uplinktest.Analyze(r.col.Messages())
	if rep.Distinct != uplinkMessages || rep.OrderErrors != 0 || rep.BadProps != 0 || rep.Dups != 0 {
		t.Errorf("outage: %d distinct of %d, %d order errors, %d without properties, %d duplicates (want 0 in steady state)",
			rep.Distinct, uplinkMessages, rep.OrderErrors, rep.BadProps, rep.Dups)
	}
	// A clean stop says offline and writes the ack marker: nothing is
	// left for the next start.
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-d.done
	if d.err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", d.err, d.logs.String())
	}
	out, err = exec.Command(r.bin, "buffer", "stat", "-c", r.cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "backlog:  0 messages") {
		t.Errorf("after a clean stop: %v\n%s", err, out)
	}
}

func TestUplinkCrashIntegration(t *testing.T) {
	r := newUplinkRig(t)
	d := r.start(t)
	r.publish(t, uplinkMessages)
	kill9(t, d) // crash 1: after publishing, during the outage

	d = r.start(t)
	r.proxy.SetUp(true)
	deadline := time.Now().Add(60 * time.Second)
	for r.col.Distinct() < uplinkMessages/3 {
		if time.Now().After(deadline) {
			t.Fatalf("the drain did not start: %d arrived", r.col.Distinct())
		}
		time.Sleep(time.Millisecond)
	}
	kill9(t, d) // crash 2: in the middle of the drain
	t.Logf("killed mid-drain after %d had arrived", r.col.Distinct())
	// What the buffer on disk says the cloud has: none of it may be sent
	// again.
	onDisk := uint64(uplinkMessages - r.backlog(t))

	r.start(t)
	if !r.col.WaitDistinct(uplinkMessages, 60*time.Second) {
		t.Fatalf("only %d of %d PUBACKed messages arrived", r.col.Distinct(), uplinkMessages)
	}
	time.Sleep(200 * time.Millisecond)
	msgs := r.col.Messages()
	rep := uplinktest.Analyze(msgs)
	// Crash 1 came during the outage with nothing in flight, so only
	// crash 2 may duplicate, and only messages past the ack marker on
	// disk. How many is not bounded by the window alone: the window
	// bounds what was sent past the forwarder's acknowledged prefix
	// (TestWindowBoundsResentAfterReconnect), but ack.live trails that
	// prefix by the acks the buffer's writer goroutine has not written
	// yet, which on a busy machine can be more than a window (issue 14:
	// 45 and 55 duplicates with window 32, under -race beside two busy
	// loops). The count is logged, not asserted.
	t.Logf("crash: %d distinct, %d duplicates past the ack marker on disk (%d), epochs %v", rep.Distinct, rep.Dups, onDisk, rep.Epochs)
	if rep.Distinct != uplinkMessages {
		t.Errorf("%d distinct of %d: PUBACKed messages lost", rep.Distinct, uplinkMessages)
	}
	copies := map[uint64]int{}
	for _, m := range msgs {
		copies[m.Seq]++
	}
	for seq, n := range copies {
		if n > 1 && seq <= onDisk {
			t.Errorf("seq %d arrived %d times, but the ack marker on disk (%d) covered it", seq, n, onDisk)
		}
	}
	if rep.DupMismatch != 0 || len(rep.Epochs) != 1 {
		t.Errorf("duplicates must repeat (gw, epoch, seq) with the same message: %d mismatched, epochs %v", rep.DupMismatch, rep.Epochs)
	}
	if rep.OrderErrors != 0 {
		t.Errorf("%d order errors among first arrivals", rep.OrderErrors)
	}
}
