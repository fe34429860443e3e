package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edged/edged/cmd/internal/benchrig"
	"github.com/edged/edged/uplink/uplinktest"
	"github.com/edged/edged/uplink/wal"
)

type config struct {
	edged, failpoints, mosquitto string
	rounds                       int
	seed                         int64
	rate                         float64
	maxInflight                  int
	maxLife                      time.Duration
	point                        string // "point@hit": every round dies there (replays one crash point)
}

// Bounds of the checks.
const (
	readyBound = 5 * time.Second  // exec to /readyz 200
	drainBound = 20 * time.Second // a start to every accepted message in the cloud
	gw         = "tgw"
	lanTopic   = "lan/p1"
)

// hitRange is how many times each crash point may be passed before it
// fires, for the rates of the config below and a 4 s life: a commit per few appends at
// ~450 appends a second, an fsync every 200 ms and per rotation, a 16 KiB
// segment every ~100 records, the ack marker every 2 s, ack.live per ack.
var hitRange = map[string]int{
	wal.CrashAppend: 400, wal.CrashFsync: 20, wal.CrashRotate: 12, wal.CrashAckMarker: 2, wal.CrashAckLive: 400,
}

type torture struct {
	config
	rig *benchrig.Rig
	out io.Writer

	rng       *rand.Rand
	col       *uplinktest.Collector
	e         *benchrig.Edged
	http      string // edged's HTTP listener
	state     string // edged's state_dir
	cloudAddr string

	mu       sync.Mutex
	nextSeq  uint64
	accepted int                  // LAN publishes PUBACKed, all rounds
	readings map[string]bool      // topic\x00payload the LAN subscriber got
	missing  map[string]bool      // accepted (lan:seq, or a reading) not yet in the cloud
	inCloud  map[string]bool      // what the cloud got, same keys
	copies   map[[3]string]string // (gw, epoch, seq) -> topic\x00payload of the first copy
	seen     int                  // collector messages looked at
	dups     int                  // copies of a (gw, epoch, seq) in the current window
	allDups  int                  // ... in every window
	reused   int                  // copies with another topic or payload (never allowed)
}

// round is one kill and what the restart after it found.
type round struct {
	n           int
	point       string // crash point, "" for a random SIGKILL
	hit         int
	after       time.Duration // when the random kill came, or the crash point fired
	reached     bool          // the crash point fired before maxLife
	diedAtStart bool          // ... even before edged was ready
	heaterOn    bool          // the heater was on when it was killed
	accepted    int           // LAN publishes PUBACKed in this round
	readings    int           // readings the LAN subscriber got in this round

	ready      time.Duration // the restart after it
	heater     float64
	mode       string
	lost, dups int
	violations []string
}

func (r *round) kill() string {
	if r.point == "" {
		return fmt.Sprintf("SIGKILL at %v", r.after.Round(time.Millisecond))
	}
	s := fmt.Sprintf("%s@%d", r.point, r.hit)
	switch {
	case r.diedAtStart:
		return s + " (during start)"
	case r.reached:
		return s + fmt.Sprintf(" (at %v)", r.after.Round(time.Millisecond))
	}
	return s + fmt.Sprintf(" (not reached; SIGKILL at %v)", r.after.Round(time.Millisecond))
}

type summary struct {
	rounds     []*round
	violations int
}

// edgedConfig is the gateway: two simulated sensors every 20 ms, a
// heater under a hysteresis loop whose setpoint (5 °C, the plant at
// 12 °C) keeps it off in auto, the uplink forwarding the readings and
// lan/#, its buffer small-segmented and synced every 200 ms so rotations
// and fsyncs come often.
func (t *torture) edgedConfig(lan string) string {
	t.http, _ = uplinktest.FreeAddr() // a new port whenever the LAN one is picked again
	return fmt.Sprintf(`device: {id: %s}
state_dir: %s
log: {level: warn}
broker: {mqtt: %q, websocket: "", anonymous_role: operator}
http: {listen: %q}
homeassistant: {enabled: false}
sensors:
  - {id: light, driver: sim_light, interval: 20ms}
  - {id: air, driver: sim_climate, interval: 20ms, plant: greenhouse}
actuators:
  - {id: heater, driver: sim_relay, plant: greenhouse}
controllers:
  - {id: heat, input: air/temperature, output: heater, setpoint: 5, setpoint_min: 0, setpoint_max: 30,
     hysteresis: {below: 1, above: 1}, stale_after: 10s, min_on: 0s, min_off: 0s}
uplink:
  url: mqtt://%s
  client_id: torture-%s
  max_inflight: %d
  forward: [{local: "edged/%s/sensor/#"}, {local: "lan/#"}]
  buffer: {segment_bytes: 16KiB, max_bytes: 64MiB, sync: interval, sync_interval: 200ms}
`, gw, t.state, lan, t.http, t.cloudAddr, gw, t.maxInflight, gw)
}

func (t *torture) run() (*summary, error) {
	t.rng = rand.New(rand.NewPCG(uint64(t.seed), 0x70727475))
	var point string
	var hit int64
	if t.point != "" {
		var err error
		if point, hit, err = wal.ParseCrash(t.point); err != nil {
			return nil, fmt.Errorf("torture: -point: %w", err)
		}
	}
	t.readings, t.missing, t.inCloud, t.copies = map[string]bool{}, map[string]bool{}, map[string]bool{}, map[[3]string]string{}
	dir := filepath.Join(t.rig.Dir, "cloud")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cloud, err := uplinktest.StartMosquitto(t.mosquitto, dir, "")
	if err != nil {
		return nil, err
	}
	t.rig.Defer(cloud.Stop)
	t.cloudAddr = cloud.Addr
	if t.col, err = uplinktest.CollectSession(cloud.Addr, "#", "torture-cloud", 86400); err != nil {
		return nil, fmt.Errorf("torture: cloud subscriber: %w", err)
	}
	t.rig.Defer(t.col.Close)
	edir := filepath.Join(t.rig.Dir, "edged")
	t.state = filepath.Join(edir, "state")
	if err := os.MkdirAll(edir, 0o755); err != nil {
		return nil, err
	}
	t.e = benchrig.NewEdged(t.edged, edir, t.edgedConfig)
	t.rig.Defer(t.e.Kill)
	fmt.Fprintf(t.out, "torture: %d rounds, seed %d; cloud mosquitto at %s; LAN QoS 1 at %.0f msg/s, readings every 20 ms; max_inflight %d\n",
		t.rounds, t.seed, cloud.Addr, t.rate, t.maxInflight)

	sum := &summary{}
	var pending []*round // killed since the last successful start
	var win []*round     // the rounds the current window's copies are blamed on
	procs := 0           // the processes whose copies the open window holds
	died := false        // the last start died before its checks were done
	for n := 1; n <= t.rounds+1; n++ {
		var r *round
		t.e.Bin, t.e.Env = t.edged, nil
		if n <= t.rounds {
			r = &round{n: n}
			if t.point != "" {
				r.point, r.hit = point, int(hit)
				t.e.Bin, t.e.Env = t.failpoints, []string{wal.CrashEnv + "=" + t.point}
			} else if t.rng.IntN(3) > 0 {
				r.point = wal.CrashPoints[t.rng.IntN(len(wal.CrashPoints))]
				// The ranges suit 4 s lives; shorter lives get fewer hits.
				r.hit = 1 + t.rng.IntN(max(1, int(int64(hitRange[r.point])*int64(t.maxLife)/int64(4*time.Second))))
				t.e.Bin, t.e.Env = t.failpoints, []string{wal.CrashEnv + "=" + fmt.Sprintf("%s@%d", r.point, r.hit)}
			}
		}
		// The last process is dead: what the cloud got from it is all there
		// is of its window (copies it sent after the restart before it).
		// A start that died early leaves its copies to the next window,
		// whose bound grows by a max_inflight for it.
		if !died {
			t.closeWindow(win, procs)
			procs = 0
		}
		win, died = nil, true
		procs++
		t0 := time.Now()
		if err := t.e.Start(); err != nil {
			if r == nil || r.point == "" || !killed(t.e.ExitState()) {
				return sum, fmt.Errorf("torture: round %d: %w", n, err)
			}
			r.diedAtStart, r.reached, r.after = true, true, time.Since(t0)
			pending = append(pending, r)
			sum.rounds = append(sum.rounds, r)
			continue
		}
		c := t.checkRestart(t0)
		if r != nil && r.point != "" && c.failed() && killed(t.e.ExitState()) {
			// The crash point fired after READY=1, before the checks were
			// done: a death at the start too. The failed checks are its,
			// and the next start checks the pending rounds again.
			c.diedDuringChecks(r, time.Since(t0))
			pending = append(pending, r)
			sum.rounds = append(sum.rounds, r)
			continue
		}
		win, died = pending, false
		pending = nil
		c.apply(win)
		if r == nil {
			break
		}
		sum.rounds = append(sum.rounds, r)
		if err := t.live(r); err != nil {
			return sum, fmt.Errorf("torture: round %d: %w", n, err)
		}
		pending = append(pending, r)
	}
	// The last start: stop it cleanly, let the cloud settle, close its window.
	t.e.Stop()
	clean := t.e.ExitState() != nil && t.e.ExitState().Success()
	t.col.WaitDistinct(1<<30, 500*time.Millisecond) // a quiet half second
	t.closeWindow(win, procs)
	for _, r := range sum.rounds {
		sum.violations += len(r.violations)
	}
	if !clean {
		sum.violations++
		fmt.Fprintf(t.out, "VIOLATION: the final clean stop failed: %v\n%s\n", t.e.ExitState(), tail(t.e.Logs()))
	}
	t.summarize(sum)
	return sum, nil
}

func killed(ps *os.ProcessState) bool {
	if ps == nil {
		return false
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// restartCheck is what a start after kills found: ready in time, heater
// safe, everything accepted so far in the cloud.
type restartCheck struct {
	ready     time.Duration
	readyErr  error
	heater    float64
	mode      string
	heaterErr error
	lost      int
}

func (t *torture) checkRestart(t0 time.Time) restartCheck {
	var c restartCheck
	c.ready, c.readyErr = t.waitReady(t0)
	c.heater, c.mode, c.heaterErr = t.heater()
	c.lost = t.drain()
	return c
}

func (c restartCheck) failed() bool {
	return c.readyErr != nil || c.heaterErr != nil || c.lost > 0
}

// observed records what a live daemon answered that breaks the
// contract: a ready past the bound, the heater on or its loop in manual.
func (c restartCheck) observed(r *round, prefix string) {
	if c.readyErr == nil && c.ready > readyBound {
		r.violate("%sready after %v (bound %v)", prefix, c.ready.Round(time.Millisecond), readyBound)
	}
	if c.heaterErr == nil && (c.heater != 0 || c.mode == "manual") {
		r.violate("%sheater at %v, loop in %s after the restart (want 0, not manual)", prefix, c.heater, c.mode)
	}
}

// diedDuringChecks records a start whose crash point fired during the
// checks as round r's death at the start, after the given time. A loss
// or a failed request is the crash's; what the daemon answered before it
// died still counts.
func (c restartCheck) diedDuringChecks(r *round, after time.Duration) {
	r.diedAtStart, r.reached, r.after = true, true, after
	c.observed(r, "at its own start, before the crash point fired: ")
}

// apply records the check on the rounds killed since the last start.
func (c restartCheck) apply(win []*round) {
	for _, r := range win {
		r.ready, r.heater, r.mode, r.lost = c.ready, c.heater, c.mode, c.lost
		if c.readyErr != nil {
			r.violate("not ready: %v", c.readyErr)
		}
		if c.heaterErr != nil {
			r.violate("heater: %v", c.heaterErr)
		}
		c.observed(r, "")
		if c.lost > 0 {
			r.violate("%d accepted messages not in the cloud %v after the restart", c.lost, drainBound)
		}
	}
}

func (r *round) violate(format string, args ...any) {
	r.violations = append(r.violations, fmt.Sprintf(format, args...))
}

// closeWindow blames the copies that arrived since the window opened on
// its rounds, and prints their lines.
func (t *torture) closeWindow(win []*round, procs int) {
	t.absorb()
	t.blame(win, procs)
}

// blame puts the copies counted since the window opened on its rounds:
// at most max_inflight for each of the window's procs processes.
func (t *torture) blame(win []*round, procs int) {
	t.mu.Lock()
	dups := t.dups
	t.allDups += dups
	t.dups = 0 // the next window's copies start here
	t.mu.Unlock()
	bound := t.maxInflight * max(procs, 1)
	for _, r := range win {
		r.dups = dups
		if dups > bound {
			r.violate("%d duplicates after the restart (bound: max_inflight %d x %d start(s))", dups, t.maxInflight, max(procs, 1))
		}
		status := "ok"
		if len(r.violations) > 0 {
			status = "VIOLATION: " + strings.Join(r.violations, "; ")
		}
		fmt.Fprintf(t.out, "round %3d/%d  %-44s heater on %-5v accepted %4d readings %4d | restart: ready %5.2f s, heater %v (%s), lost %d, duplicates %2d  %s\n",
			r.n, t.rounds, r.kill(), r.heaterOn, r.accepted, r.readings, r.ready.Seconds(), r.heater, r.mode, r.lost, r.dups, status)
	}
}

// absorb looks at the messages the cloud got since the last call.
func (t *torture) absorb() {
	t.mu.Lock()
	from := t.seen
	t.mu.Unlock()
	msgs := t.col.MessagesFrom(from)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen += len(msgs)
	for _, m := range msgs {
		if m.GW == "" {
			continue // the status topic: not from the buffer
		}
		content := m.Topic + "\x00" + m.Payload
		k := [3]string{m.GW, m.Epoch, fmt.Sprint(m.Seq)}
		if first, ok := t.copies[k]; ok {
			t.dups++
			if first != content {
				t.reused++
			}
			continue
		}
		t.copies[k] = content
		key := content
		if m.Topic == lanTopic {
			seq, _, err := benchrig.ParsePayload([]byte(m.Payload))
			if err != nil {
				continue
			}
			key = fmt.Sprint("lan:", seq)
		}
		t.inCloud[key] = true
		delete(t.missing, key)
	}
}

// accept records a message edged accepted (a PUBACKed LAN publish, a
// reading a LAN subscriber got).
func (t *torture) accept(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.inCloud[key] {
		t.missing[key] = true
	}
}

// drain waits until every accepted message is in the cloud, at most
// drainBound, and returns how many are not.
func (t *torture) drain() int {
	deadline := time.Now().Add(drainBound)
	for {
		t.absorb()
		t.mu.Lock()
		n := len(t.missing)
		t.mu.Unlock()
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		select {
		case <-t.e.Done(): // a crash point fired: nothing more comes
			if soon := time.Now().Add(time.Second); soon.Before(deadline) {
				deadline = soon
			}
		default:
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (t *torture) get(path string, v any) error {
	return t.do(http.MethodGet, path, "", v)
}

func (t *torture) do(method, path, body string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+t.http+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if v != nil {
		return json.Unmarshal(b, v)
	}
	return nil
}

// waitReady polls /readyz until 200 and returns the time since t0.
func (t *torture) waitReady(t0 time.Time) (time.Duration, error) {
	deadline := t0.Add(2 * readyBound)
	for {
		err := t.get("/readyz", nil)
		if err == nil {
			return time.Since(t0), nil
		}
		if time.Now().After(deadline) {
			return time.Since(t0), err
		}
		select {
		case <-t.e.Done(): // a crash point fired
			return time.Since(t0), err
		default:
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// heater returns the heater's level and its loop's mode.
func (t *torture) heater() (float64, string, error) {
	var a struct {
		Actuators []struct {
			ID    string  `json:"id"`
			Level float64 `json:"level"`
		} `json:"actuators"`
	}
	var c struct {
		State struct {
			Mode string `json:"mode"`
		} `json:"state"`
	}
	if err := t.get("/api/v1/actuators", &a); err != nil {
		return 0, "", err
	}
	if err := t.get("/api/v1/controllers/heat", &c); err != nil {
		return 0, "", err
	}
	for _, x := range a.Actuators {
		if x.ID == "heater" {
			return x.Level, c.State.Mode, nil
		}
	}
	return 0, "", errors.New("no actuator heater")
}

// live is one round's life: heater on by hand, the LAN clients running,
// until the crash point fires or the random SIGKILL comes.
func (t *torture) live(r *round) error {
	t0 := time.Now()
	if err := t.do(http.MethodPatch, "/api/v1/controllers/heat", `{"mode":"manual","output":1}`, nil); err == nil {
		if lvl, _, err := t.heater(); err == nil && lvl == 1 {
			r.heaterOn = true
		}
	}
	sub, err := benchrig.SubscribeRaw(t.e.LAN, "torture-lan-sub", "edged/"+gw+"/sensor/#", 1, func(topic string, payload []byte) {
		key := topic + "\x00" + string(payload)
		t.mu.Lock()
		fresh := !t.readings[key]
		t.readings[key] = true
		if fresh {
			r.readings++
		}
		t.mu.Unlock()
		if fresh {
			t.accept(key)
		}
	})
	if err != nil {
		return t.deadEarly(r, t0, err)
	}
	pub, err := benchrig.NewPublisher(t.e.LAN, "torture-lan-pub", nil)
	if err != nil {
		sub.Close()
		return t.deadEarly(r, t0, err)
	}
	pub.OnAck = func(seq uint64) {
		t.mu.Lock()
		r.accepted++
		t.accepted++
		t.mu.Unlock()
		t.accept(fmt.Sprint("lan:", seq))
	}
	n := int(t.rate*t.maxLife.Seconds()) + 1000
	t.mu.Lock()
	from := t.nextSeq
	t.nextSeq += uint64(n)
	t.mu.Unlock()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		_, _ = pub.Send(lanTopic, from, n, t.rate, 1, 16) // ends with an error at the kill
	}()

	life := t.maxLife
	if r.point == "" {
		life = time.Duration(50+t.rng.IntN(int(t.maxLife/time.Millisecond)-50)) * time.Millisecond
	}
	select {
	case <-t.e.Done():
		r.reached, r.after = true, time.Since(t0)
	case <-time.After(time.Until(t0.Add(life))):
		r.after = time.Since(t0)
		t.e.Kill()
	}
	if !killed(t.e.ExitState()) {
		r.violate("edged ended otherwise than by SIGKILL: %v\n%s", t.e.ExitState(), tail(t.e.Logs()))
	}
	// paho does not end a publish awaiting its PUBACK when the connection
	// drops (it waits out its 30 s timeout): what was PUBACKed is known
	// now, so end the rest.
	pub.Close()
	select {
	case <-sent:
	case <-time.After(10 * time.Second):
		return errors.New("the LAN publisher did not stop")
	}
	sub.Close()
	return nil
}

// deadEarly handles a LAN client that could not connect: fine if the
// crash point already killed edged, an error otherwise.
func (t *torture) deadEarly(r *round, t0 time.Time, err error) error {
	select {
	case <-t.e.Done():
	case <-time.After(2 * time.Second):
		return fmt.Errorf("LAN client: %w", err)
	}
	r.reached, r.after = true, time.Since(t0)
	if !killed(t.e.ExitState()) {
		r.violate("edged ended otherwise than by SIGKILL: %v\n%s", t.e.ExitState(), tail(t.e.Logs()))
	}
	return nil
}

func tail(s string) string {
	if len(s) > 2000 {
		return "..." + s[len(s)-2000:]
	}
	return s
}

func (t *torture) summarize(sum *summary) {
	var random, points, reached, atStart, heaterOn, maxDups int
	var ready []time.Duration
	byPoint := map[string]int{}
	for _, r := range sum.rounds {
		if r.point == "" {
			random++
		} else {
			points++
			if r.reached {
				reached++
				byPoint[r.point]++
			}
		}
		if r.diedAtStart {
			atStart++
		}
		if r.heaterOn {
			heaterOn++
		}
		maxDups = max(maxDups, r.dups)
		ready = append(ready, r.ready)
	}
	t.mu.Lock()
	totalDups, reused := t.allDups, t.reused
	accepted, readings, missing := t.accepted, len(t.readings), len(t.missing)
	t.mu.Unlock()
	slices.Sort(ready)
	var pts []string
	for _, p := range wal.CrashPoints {
		pts = append(pts, fmt.Sprintf("%s %d", p, byPoint[p]))
	}
	fmt.Fprintf(t.out, "\ntorture: %d rounds, seed %d\n", len(sum.rounds), t.seed)
	fmt.Fprintf(t.out, "  kills: %d random SIGKILL, %d at crash points (%d reached: %s; %d during start)\n", random, points, reached, strings.Join(pts, ", "), atStart)
	fmt.Fprintf(t.out, "  accepted: %d LAN QoS 1 publishes, %d readings; not in the cloud at the end: %d\n", accepted, readings, missing)
	fmt.Fprintf(t.out, "  duplicates: %d in all, at most %d after one restart (bound %d); a (gw, epoch, seq) with other content: %d\n", totalDups, maxDups, t.maxInflight, reused)
	fmt.Fprintf(t.out, "  restart to /readyz 200: median %.2f s, max %.2f s (bound %v)\n", benchrig.Percentile(ready, 50).Seconds(), benchrig.Percentile(ready, 100).Seconds(), readyBound)
	fmt.Fprintf(t.out, "  heater on (manual) at %d of %d kills; at its safe level and not in manual after every restart unless listed\n", heaterOn, len(sum.rounds))
	if reused > 0 {
		sum.violations++
		fmt.Fprintf(t.out, "VIOLATION: %d (gw, epoch, seq) reused for other content\n", reused)
	}
	if missing > 0 {
		sum.violations++
		fmt.Fprintf(t.out, "VIOLATION: %d accepted messages never reached the cloud\n", missing)
	}
	fmt.Fprintf(t.out, "  violations: %d\n", sum.violations)
}
