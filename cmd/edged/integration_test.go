package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/edged/edged/uplink/uplinktest"
)

// The integration tests build the real binary and run it as a process,
// talking to it with real MQTT clients. They are skipped under -short.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// edgedBinary builds cmd/edged once per test run.
func edgedBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped under -short")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "edged-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "edged")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// variant is a build of cmd/edged other than edgedBinary's, made once per
// test run, beside it.
type variant struct {
	name string   // file name
	args []string // go build flags
	env  []string // added to the environment
	once sync.Once
	path string
	err  error
}

var (
	// failpointBuild's loops can be stalled by liveness.StallEnv.
	failpointBuild = &variant{name: "edged-failpoints", args: []string{"-tags", "edgedfailpoints"}}
	// armv7Build is the Pi 2 build (README "On the Raspberry Pi", `make pi`).
	armv7Build = &variant{name: "edged-armv7", args: []string{"-trimpath", "-ldflags", "-s -w"},
		env: []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm", "GOARM=7"}}
	// raceBuild has the race detector: the other builds would not show a
	// data race inside the daemon (the patched mochi, the uplink's inline
	// writes). A race found makes it print "DATA RACE" and exit 66. It
	// needs cgo whatever the environment says (make exports
	// CGO_ENABLED=0, and make stress runs the suite with it).
	raceBuild = &variant{name: "edged-race", args: []string{"-race"}, env: []string{"CGO_ENABLED=1"}}
)

func (v *variant) binary(t *testing.T) string {
	t.Helper()
	edgedBinary(t) // the skip under -short, and binPath's temp dir
	v.once.Do(func() {
		v.path = filepath.Join(filepath.Dir(binPath), v.name)
		build := exec.Command("go", append(append([]string{"build"}, v.args...), "-o", v.path, ".")...)
		build.Env = append(os.Environ(), v.env...)
		if out, err := build.CombinedOutput(); err != nil {
			v.err = fmt.Errorf("go build %s: %v\n%s", strings.Join(v.args, " "), err, out)
		}
	})
	if v.err != nil {
		t.Fatal(v.err)
	}
	return v.path
}

func failpointBinary(t *testing.T) string { return failpointBuild.binary(t) }
func armv7Binary(t *testing.T) string     { return armv7Build.binary(t) }
func raceBinary(t *testing.T) string      { return raceBuild.binary(t) }

// requireTool skips when a tool is missing, unless the environment
// variable says CI installed it (uplinktest.RequireTool).
func requireTool(t *testing.T, tool, requireVar string) string {
	t.Helper()
	return uplinktest.RequireTool(t, tool, requireVar)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// simConfig writes the sim example with free ports and a temp state dir.
func simConfig(t *testing.T) (path, mqttAddr, wsAddr, httpAddr string) {
	t.Helper()
	data, err := os.ReadFile("../../configs/examples/sim.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mqttAddr, wsAddr, httpAddr = freePort(t), freePort(t), freePort(t)
	dir := t.TempDir()
	s := string(data)
	for old, repl := range map[string]string{
		"127.0.0.1:1883":     mqttAddr,
		"127.0.0.1:8083":     wsAddr,
		"127.0.0.1:8080":     httpAddr,
		"state_dir: ./state": "state_dir: " + filepath.Join(dir, "state"),
		"error_rate: 0.01":   "error_rate: 0",
	} {
		if !strings.Contains(s, old) {
			t.Fatalf("sim.yaml no longer contains %q; update the test", old)
		}
		s = strings.ReplaceAll(s, old, repl)
	}
	path = filepath.Join(dir, "sim.yaml")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, mqttAddr, wsAddr, httpAddr
}

// daemonProc is a running `edged run`.
type daemonProc struct {
	cmd   *exec.Cmd
	logs  *syncBuffer
	ready chan struct{} // closed when edged has sent READY=1
	done  chan struct{} // closed when the process has exited
	err   error         // Wait's result, valid once done is closed

	mu       sync.Mutex
	notified []notice // every line edged sent to $NOTIFY_SOCKET
}

// notice is one line edged sent to systemd, and when it came.
type notice struct {
	at   time.Time
	line string
}

// notices returns the lines edged has sent to $NOTIFY_SOCKET so far.
func (d *daemonProc) notices() []notice {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]notice(nil), d.notified...)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// notifySockets numbers the tests' notify sockets.
var notifySockets atomic.Int64

// startDaemon starts `edged run -c config` with $NOTIFY_SOCKET set to a
// socket of the test's, so that d.ready closes when edged tells systemd
// READY=1: once every listener is open.
func startDaemon(t *testing.T, bin, config string) *daemonProc {
	t.Helper()
	return startDaemonEnv(t, bin, config, nil)
}

// startDaemonEnv is startDaemon with env added to edged's environment.
func startDaemonEnv(t *testing.T, bin, config string, env []string) *daemonProc {
	t.Helper()
	// An abstract socket: no path length limit, nothing to remove.
	name := fmt.Sprintf("@edged-test-%d-%d", os.Getpid(), notifySockets.Add(1))
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{cmd: exec.Command(bin, "run", "-c", config), logs: &syncBuffer{}, ready: make(chan struct{}), done: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	d.cmd.Env = append(append(os.Environ(), "NOTIFY_SOCKET="+name), env...)
	// A test binary killed by -timeout runs no cleanup: the daemon dies
	// with it instead of keeping its ports (and any lock fd it inherited).
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	listened := make(chan struct{})
	go func() {
		defer close(listened)
		buf := make([]byte, 4096)
		for ready := false; ; {
			n, err := sock.Read(buf)
			if err != nil {
				return // closed by the cleanup
			}
			now := time.Now()
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				d.mu.Lock()
				d.notified = append(d.notified, notice{now, line})
				d.mu.Unlock()
				if line == "READY=1" && !ready {
					ready = true
					close(d.ready)
				}
			}
		}
	}()
	if err := d.cmd.Start(); err != nil {
		sock.Close()
		<-listened
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Kill() // by PID: the process we started
			<-d.done
		}
		sock.Close()
		<-listened
		if t.Failed() {
			t.Logf("edged output:\n%s", d.logs.String())
		}
	})
	return d
}

// readyTimeout bounds the wait for READY=1: a hang guard, not a
// measurement (edged is ready in well under a second when idle).
const readyTimeout = 30 * time.Second

// waitReady waits until edged sent READY=1, or exited, or readyTimeout
// passed.
func (d *daemonProc) waitReady() error {
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case <-d.ready:
		return nil
	case <-d.done:
		return fmt.Errorf("edged exited before it was ready: %v", d.err)
	case <-t.C:
		return fmt.Errorf("edged not ready after %v", readyTimeout)
	}
}

// waitListening waits until edged is ready and checks that addr accepts
// connections. Ready means every listener is open: waiting for one
// address by dialling it left the others racing the test.
func waitListening(t *testing.T, d *daemonProc, addr string) {
	t.Helper()
	if err := d.waitReady(); err != nil {
		t.Fatalf("%v\n%s", err, d.logs.String())
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("edged is ready but %s refuses connections: %v", addr, err)
	}
	c.Close()
}

// startAttempts bounds how often startReady picks new ports.
const startAttempts = 5

// startReady starts `edged run` on the config that write returns, waits
// until it is ready, and checks that each address write returns accepts
// connections. The ports in a test config are picked free before edged
// binds them, so another process can take one in between: when edged
// exits with "address already in use", write is called again to pick new
// ones, at most startAttempts times in all.
func startReady(t *testing.T, bin string, write func() (cfg string, addrs []string)) *daemonProc {
	t.Helper()
	return startReadyEnv(t, bin, nil, write)
}

// startReadyEnv is startReady with env added to edged's environment.
func startReadyEnv(t *testing.T, bin string, env []string, write func() (cfg string, addrs []string)) *daemonProc {
	t.Helper()
	for i := 1; ; i++ {
		cfg, addrs := write()
		d := startDaemonEnv(t, bin, cfg, env)
		err := d.waitReady()
		if err == nil {
			for _, a := range addrs {
				waitListening(t, d, a)
			}
			return d
		}
		if i == startAttempts || !strings.Contains(d.logs.String(), "address already in use") {
			t.Fatalf("%v\n%s", err, d.logs.String())
		}
		t.Logf("start %d: a picked port was taken; picking new ones", i)
	}
}

// startSim starts `edged run` on the sim example (see simConfig), changed
// by edit unless it is nil, on ports startReady picks.
func startSim(t *testing.T, bin string, edit func(config string) string) (d *daemonProc, mqttAddr, wsAddr, httpAddr string) {
	t.Helper()
	d = startReady(t, bin, func() (string, []string) {
		var cfg string
		cfg, mqttAddr, wsAddr, httpAddr = simConfig(t)
		if edit != nil {
			data, err := os.ReadFile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cfg, []byte(edit(string(data))), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return cfg, []string{mqttAddr, wsAddr, httpAddr}
	})
	return d, mqttAddr, wsAddr, httpAddr
}

// The sim example's sensors and what each publishes.
var simTopics = []string{
	"edged/sim-01/sensor/light/illuminance",
	"edged/sim-01/sensor/air/temperature",
	"edged/sim-01/sensor/air/humidity",
}

func TestSimReadingsReachMosquittoSubIntegration(t *testing.T) {
	bin := edgedBinary(t)
	sub := requireTool(t, "mosquitto_sub", "EDGED_REQUIRE_MOSQUITTO")
	_, mqttAddr, _, _ := startSim(t, bin, nil)
	host, port, _ := net.SplitHostPort(mqttAddr)

	// Retained readings: a subscriber that comes late still gets one per
	// sensor quantity at once. Poll until all are there (the first samples
	// are taken at start), bounded to 10 s.
	seen := map[string]string{}
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < len(simTopics) && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-t", "edged/sim-01/sensor/+/+",
			"-v", "--retained-only", "-W", "2").Output()
		cancel()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) { // -W timing out exits non-zero: expected
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			topic, payload, _ := strings.Cut(sc.Text(), " ")
			seen[topic] = payload
		}
	}
	for _, topic := range simTopics {
		p, ok := seen[topic]
		if !ok {
			t.Errorf("no retained reading on %s; got %v", topic, seen)
			continue
		}
		if !strings.HasPrefix(p, `{"value":`) || !strings.Contains(p, `"unit":"`) || !strings.Contains(p, `"ts":"`) {
			t.Errorf("%s: payload %s is not a reading", topic, p)
		}
	}
	for _, s := range []string{"light", "air"} {
		if got := seen["edged/sim-01/sensor/"+s+"/availability"]; got != "online" {
			t.Errorf("sensor %s availability %q, want online", s, got)
		}
	}
}

// wsNetConn lets paho speak MQTT over a client websocket.
type wsNetConn struct {
	net.Conn
	ws *websocket.Conn
	r  io.Reader
	wm sync.Mutex // one websocket writer at a time
	// packet is held by paho over each whole packet (see Lock), which
	// it writes in several Writes.
	packet sync.Mutex
}

// wsNetConn must be a sync.Locker: paho writes a packet as several
// Writes, and holds the lock of a Conn that is one across them. Without
// it, paho's first PINGREQ (sent from its own goroutine right after
// CONNACK) could land inside the test's SUBSCRIBE, and the broker dropped
// the client for a malformed packet (issue 14:
// TestSimReadingsOverWebSocketIntegration, 1 run in 100 under load).
var _ sync.Locker = (*wsNetConn)(nil)

// Lock and Unlock make wsNetConn a sync.Locker for paho.
func (c *wsNetConn) Lock()   { c.packet.Lock() }
func (c *wsNetConn) Unlock() { c.packet.Unlock() }

func (c *wsNetConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			_, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsNetConn) Write(p []byte) (int, error) {
	c.wm.Lock()
	defer c.wm.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsNetConn) Close() error { return c.ws.Close() }

// mqttClient connects a paho MQTT 5 client over conn and subscribes.
func mqttClient(t *testing.T, conn net.Conn, filter string) chan *paho.Publish {
	t.Helper()
	msgs := make(chan *paho.Publish, 256)
	c := paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case msgs <- pr.Packet:
			default:
			}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: fmt.Sprintf("it-%d", time.Now().UnixNano()), CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return msgs
}

func TestSimReadingsOverWebSocketIntegration(t *testing.T) {
	bin := edgedBinary(t)
	_, _, wsAddr, _ := startSim(t, bin, nil)
	dialer := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	h := make(map[string][]string)
	h["Origin"] = []string{"http://" + wsAddr} // as a page served from the gateway would
	ws, _, err := dialer.Dial("ws://"+wsAddr+"/mqtt", h)
	if err != nil {
		t.Fatal(err)
	}
	msgs := mqttClient(t, &wsNetConn{Conn: ws.UnderlyingConn(), ws: ws}, "edged/sim-01/sensor/+/+")
	want := map[string]bool{}
	for _, tp := range simTopics {
		want[tp] = true
	}
	timeout := time.After(10 * time.Second)
	for len(want) > 0 {
		select {
		case m := <-msgs:
			delete(want, m.Topic)
		case <-timeout:
			t.Fatalf("over WebSocket, no reading on %v within 10s", want)
		}
	}
}

func TestSIGTERMStopsCleanlyAndSaysOfflineIntegration(t *testing.T) {
	bin := edgedBinary(t)
	d, mqttAddr, _, _ := startSim(t, bin, nil)
	conn, err := net.Dial("tcp", mqttAddr)
	if err != nil {
		t.Fatal(err)
	}
	msgs := mqttClient(t, conn, "edged/sim-01/status")
	expect := func(want string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case m := <-msgs:
				if string(m.Payload) == want {
					return
				}
			case <-timeout:
				t.Fatalf("status never became %q", want)
			}
		}
	}
	expect("online")
	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expect("offline")
	select {
	case <-d.done:
		if d.err != nil {
			t.Fatalf("exit after SIGTERM: %v", d.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("edged did not exit within 10 s of SIGTERM")
	}
	t.Logf("stopped in %v", time.Since(start))
	if !strings.Contains(d.logs.String(), "msg=stopped") {
		t.Errorf("no clean-stop log line:\n%s", d.logs.String())
	}
}

// A stop closes MQTT 3.1.1 connections without a DISCONNECT, which that
// version has only from the client (mochi patch 16): mosquitto_sub -V
// mqttv311 reported "A network protocol error occurred" and exited, where
// after Mosquitto's stop it keeps reconnecting. An MQTT 5 client is told
// why: DISCONNECT 0x8B, server shutting down.
func TestStopSendsDisconnectToMQTT5OnlyIntegration(t *testing.T) {
	bin := edgedBinary(t)
	subBin := requireTool(t, "mosquitto_sub", "EDGED_REQUIRE_MOSQUITTO")
	d, mqttAddr, _, _ := startSim(t, bin, nil)
	host, port, _ := net.SplitHostPort(mqttAddr)
	type sub struct {
		version string
		out     *syncBuffer
		cmd     *exec.Cmd
		done    chan struct{}
	}
	var subs []*sub
	for _, v := range []string{"mqttv311", "mqttv5"} {
		s := &sub{version: v, out: &syncBuffer{}, done: make(chan struct{})}
		// stdbuf: its -d lines go out as printed, not when it exits.
		s.cmd = exec.Command("stdbuf", "-oL", subBin, "-V", v, "-d", "-h", host, "-p", port, "-t", "nothing/here")
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = s.cmd.Wait(); close(s.done) }()
		t.Cleanup(func() { _ = s.cmd.Process.Kill(); <-s.done })
		subs = append(subs, s)
	}
	for _, s := range subs {
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(s.out.String(), "Subscribed") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(s.out.String(), "Subscribed") {
			t.Fatalf("mosquitto_sub -V %s did not subscribe within 10 s:\n%s", s.version, s.out.String())
		}
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatal("edged did not exit within 10 s of SIGTERM")
	}
	// The 3.1.1 client either exits at once (the bug) or goes on
	// reconnecting; give it a moment to say which.
	time.Sleep(time.Second)
	v311, v5 := subs[0].out.String(), subs[1].out.String()
	if strings.Contains(v311, "protocol error") {
		t.Errorf("mosquitto_sub -V mqttv311 saw a protocol error at the stop:\n%s", v311)
	}
	select {
	case <-subs[0].done:
		t.Errorf("mosquitto_sub -V mqttv311 exited at the stop, not reconnecting:\n%s", v311)
	default:
	}
	if !strings.Contains(v5, "Received DISCONNECT (139)") {
		t.Errorf("mosquitto_sub -V mqttv5 got no DISCONNECT 0x8B (server shutting down):\n%s", v5)
	}
}

func TestBadConfigNeverStartsIntegration(t *testing.T) {
	bin := edgedBinary(t)
	dir := t.TempDir()
	port := freePort(t)
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(fmt.Sprintf(`device: {id: x}
broker: {mqtt: %q, websocket: ""}
http: {listen: ""}
sensors:
  - {id: a, driver: sim_light, interval: 5}
  - {id: a, driver: sim_light}
`, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"validate", "run"} {
		out, err := exec.Command(bin, sub, "-c", bad).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("edged %s on a bad config: %v, want exit 1\n%s", sub, err, out)
		}
		for _, want := range []string{bad + ":5:42: interval: duration 5 has no unit", bad + ":6:10: id: duplicate sensor id \"a\""} {
			if !strings.Contains(string(out), want) {
				t.Errorf("edged %s: missing %q\n%s", sub, want, out)
			}
		}
	}
}

// Regression: with the MQTT port taken (a Pi already running Mosquitto),
// edged panicked closing the broker twice and never halted the outputs.
func TestBusyPortFailsCleanlyIntegration(t *testing.T) {
	bin := edgedBinary(t)
	cfg, mqttAddr, wsAddr, _ := simConfig(t)
	taken, err := net.Listen("tcp", mqttAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	out, err := exec.Command(bin, "run", "-c", cfg).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("edged run with a busy port: %v, want exit 1\n%s", err, out)
	}
	for _, want := range []string{"not started", mqttAddr, "address already in use"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "panic") {
		t.Errorf("edged panicked:\n%s", out)
	}
	// Nothing it opened is left listening.
	if c, err := net.DialTimeout("tcp", wsAddr, 200*time.Millisecond); err == nil {
		c.Close()
		t.Error("the WebSocket listener is still up after a failed start")
	}
}

// TestARMv7ValidateIntegration cross-compiles the Pi 2 build and runs its
// `edged validate` on every example under qemu-arm-static.
func TestARMv7ValidateIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped under -short")
	}
	qemu := requireTool(t, "qemu-arm-static", "EDGED_REQUIRE_QEMU")
	bin := armv7Binary(t)
	examples, _ := filepath.Glob("../../configs/examples/*.yaml")
	if len(examples) < 2 {
		t.Fatalf("found %d examples", len(examples))
	}
	for _, ex := range examples {
		cmd := exec.Command(qemu, bin, "validate", "-c", ex)
		cmd.Env = append(os.Environ(), "EDGED_CLOUD_PASSWORD=test-secret")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("ARMv7 edged validate %s: %v\n%s", ex, err, out)
		}
	}
	out, err := exec.Command(qemu, bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "linux/arm") {
		t.Errorf("ARMv7 edged version: %v %s", err, out)
	}
	if fi, err := os.Stat(bin); err == nil {
		t.Logf("ARMv7 binary: %d bytes (%s)", fi.Size(), runtime.Version())
	}
}

func TestControlCommandOverMQTTIntegration(t *testing.T) {
	bin := edgedBinary(t)
	_, mqttAddr, _, _ := startSim(t, bin, func(s string) string {
		return strings.Replace(s, "anonymous_role: viewer", "anonymous_role: operator", 1)
	})
	conn, err := net.Dial("tcp", mqttAddr)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan *paho.Publish, 64)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { msgs <- pr.Packet; return true, nil }}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "operator-app", CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "app/reply", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	request := func(payload string) string {
		t.Helper()
		if _, err := c.Publish(ctx, &paho.Publish{Topic: "edged/sim-01/control/heat/set", QoS: 1, Payload: []byte(payload),
			Properties: &paho.PublishProperties{ResponseTopic: "app/reply", CorrelationData: []byte(payload)}}); err != nil {
			t.Fatal(err)
		}
		for {
			select {
			case m := <-msgs:
				if m.Properties != nil && string(m.Properties.CorrelationData) == payload {
					return string(m.Payload)
				}
			case <-ctx.Done():
				t.Fatalf("no reply to %s", payload)
			}
		}
	}
	if r := request(`{"setpoint":19.5}`); !strings.Contains(r, `"setpoint":19.5`) {
		t.Errorf("setpoint command reply: %s", r)
	}
	// Out of bounds (setpoint_max 30): refused with a reason, state kept.
	if r := request(`{"setpoint":99}`); !strings.Contains(r, `"error"`) {
		t.Errorf("out-of-range command reply: %s", r)
	}
	if r := request(`{"mode":"off"}`); !strings.Contains(r, `"mode":"off"`) || !strings.Contains(r, `"setpoint":19.5`) {
		t.Errorf("mode command reply: %s (the refused command must not have changed the setpoint)", r)
	}
}
