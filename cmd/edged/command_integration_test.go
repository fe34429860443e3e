package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// burstCommands is how many commands the burst test sends back to back.
const burstCommands = 1000

// Regression for issue 7: a burst of commands lost the newest one (the
// user's final slider position) without a reply, wrote the state file
// once per command (write, fsync, rename, directory fsync each) and
// logged a line per command. Now every sender gets a reply, the newest
// command is applied, the state file is written at most about once a
// second, and the log stays short.
//
// With EDGED_BURST_STRACE=FILE set, strace attaches to the daemon and
// the test also reports the renames of the state file it saw: a count
// taken outside edged, used to record the before and after figures.
func TestCommandBurstIntegration(t *testing.T) {
	bin := edgedBinary(t)
	cfg, mqttAddr, _, _ := simConfig(t)
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(data), "anonymous_role: viewer", "anonymous_role: operator", 1)
	if err := os.WriteFile(cfg, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	stateFile := filepath.Join(filepath.Dir(cfg), "state", "control", "heat.json")
	d := startDaemon(t, bin, cfg)
	waitListening(t, d, mqttAddr)
	strace := attachStrace(t, d)

	// Replies by correlation data; the handler runs in paho's goroutine
	// and must not block.
	var (
		mu      sync.Mutex
		replies = map[string][]string{}
		got     = make(chan struct{}, 1)
	)
	conn, err := net.Dial("tcp", mqttAddr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			if pr.Packet.Properties == nil {
				return true, nil
			}
			mu.Lock()
			id := string(pr.Packet.Properties.CorrelationData)
			replies[id] = append(replies[id], string(pr.Packet.Payload))
			mu.Unlock()
			select {
			case got <- struct{}{}:
			default:
			}
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "slider-app", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "app/reply", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	// Command i sets a setpoint within 5..30, except every 50th, which is
	// out of range and must be refused (or superseded, never applied).
	// The last one is the user's final slider position.
	const last = 23.45
	payload := func(i int) string {
		switch {
		case i == burstCommands-1:
			return fmt.Sprintf(`{"setpoint":%v}`, last)
		case i%50 == 49:
			return `{"setpoint":99}`
		}
		return fmt.Sprintf(`{"setpoint":%v}`, 5+float64(i%250)/10)
	}
	logsBefore := d.logs.String()
	start := time.Now()
	for i := range burstCommands {
		// AsyncSend queues the publish in order and returns; paho blocks
		// only while the broker's receive maximum of PUBACKs is owed.
		_, err := c.PublishWithOptions(ctx, &paho.Publish{Topic: "edged/sim-01/control/heat/set", QoS: 1, Payload: []byte(payload(i)),
			Properties: &paho.PublishProperties{ResponseTopic: "app/reply", CorrelationData: []byte(strconv.Itoa(i))}},
			paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	sent := time.Since(start)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(replies)
	}
	// Every sender gets a reply; waiting ends on the last one or after a
	// bounded 30 s without a new reply.
	for count() < burstCommands {
		select {
		case <-got:
		case <-time.After(30 * time.Second):
			t.Errorf("no reply for 30 s")
		}
		if t.Failed() {
			break
		}
	}
	burst := time.Since(start)

	var applied, refused, superseded, other int
	mu.Lock()
	for i := range burstCommands {
		rs := replies[strconv.Itoa(i)]
		if len(rs) != 1 {
			t.Errorf("command %d (%s): %d replies %q, want 1", i, payload(i), len(rs), rs)
			continue
		}
		r := rs[0]
		switch {
		case strings.Contains(r, "superseded"):
			superseded++
		case strings.Contains(r, `"error"`):
			refused++
			if !strings.Contains(payload(i), "99") {
				t.Errorf("command %d (%s) refused: %s", i, payload(i), r)
			}
		case strings.Contains(r, `"setpoint":`):
			applied++
			if strings.Contains(payload(i), "99") {
				t.Errorf("command %d (%s) applied: %s", i, payload(i), r)
			}
		default:
			other++
			t.Errorf("command %d: reply %s", i, r)
		}
	}
	lastReply := strings.Join(replies[strconv.Itoa(burstCommands-1)], " ")
	mu.Unlock()
	if !strings.Contains(lastReply, fmt.Sprintf(`"setpoint":%v,`, last)) {
		t.Errorf("the last command's reply is %q, want the state with setpoint %v", lastReply, last)
	}

	// The retained state ends at the last command (published at most once
	// a second, so wait for it, bounded).
	state := mqttClient(t, dialT(t, mqttAddr), "edged/sim-01/control/heat/state")
	deadline := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case m := <-state:
			var st struct{ Setpoint float64 }
			done = json.Unmarshal(m.Payload, &st) == nil && st.Setpoint == last
		case <-deadline:
			t.Errorf("retained state never showed setpoint %v", last)
			done = true
		}
	}

	// The log from the first command until the stop: the burst and its
	// summary line, due a second after the first command.
	summary := regexp.MustCompile(`msg="control commands not logged one by one" .*controller=heat applied=(\d+) refused=(\d+) superseded=(\d+)`)
	for end := time.Now().Add(10 * time.Second); !summary.MatchString(d.logs.String()[len(logsBefore):]) && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	burstLogs := d.logs.String()[len(logsBefore):]
	logged := time.Since(start)
	// The log accounts for every command: one by one or in a summary.
	sum := [3]int{strings.Count(burstLogs, `msg="control command applied"`), strings.Count(burstLogs, `msg="control command refused"`), 0}
	for _, m := range summary.FindAllStringSubmatch(burstLogs, -1) {
		for k := range sum {
			n, _ := strconv.Atoi(m[k+1])
			sum[k] += n
		}
	}
	if want := [3]int{applied, refused, superseded}; sum != want {
		t.Errorf("the log accounts for %v commands applied, refused and superseded; the replies say %v", sum, want)
	}

	// A clean stop writes what is still unsaved and reports the count.
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatal("edged did not exit within 15 s of SIGTERM")
	}
	b, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`{"setpoint":%v}`, last) + "\n"; string(b) != want {
		t.Errorf("state file %q, want %q", b, want)
	}
	saves := -1
	if m := regexp.MustCompile(`msg="control loop stopped".* controller=heat .*state_saves=(\d+)`).FindStringSubmatch(d.logs.String()); m != nil {
		saves, _ = strconv.Atoi(m[1])
	}
	renames := strace()
	lines := strings.Count(burstLogs, "\n")
	t.Logf("%d commands sent in %v, all replies after %v: %d applied, %d refused, %d superseded, %d other; "+
		"state saves %d (strace renames of heat.json: %d); %d log lines in the %v from the first command to the stop:\n%s",
		burstCommands, sent.Round(time.Millisecond), burst.Round(time.Millisecond), applied, refused, superseded, other, saves, renames,
		lines, logged.Round(time.Millisecond), burstLogs)

	// At most one save a second while the burst lasts, plus the first
	// at once and the one on stop.
	if maxSaves := int(burst/time.Second) + 3; saves < 1 || saves > maxSaves {
		t.Errorf("state saved %d times in a %v burst, want 1..%d", saves, burst.Round(time.Millisecond), maxSaves)
	}
	if renames > 0 && renames != saves {
		t.Errorf("strace saw %d renames of the state file, edged reports %d saves", renames, saves)
	}
	// The first command at length, at most a summary a second, and a few
	// rate-limited warnings and change lines.
	if maxLines := 12 + 3*int(logged/time.Second); lines > maxLines {
		t.Errorf("%d log lines in %v, want at most %d", lines, logged.Round(time.Millisecond), maxLines)
	}
}

func dialT(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// attachStrace attaches strace to d when EDGED_BURST_STRACE names an
// output file, and returns a function that, once d has exited, counts
// the renames onto the controller's state file; without the variable it
// returns 0.
func attachStrace(t *testing.T, d *daemonProc) (renames func() int) {
	t.Helper()
	out := os.Getenv("EDGED_BURST_STRACE")
	if out == "" {
		return func() int { return 0 }
	}
	st := exec.Command("strace", "-f", "-p", strconv.Itoa(d.cmd.Process.Pid), "-e", "trace=rename,renameat,renameat2", "-o", out)
	stderr, err := st.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(); err != nil {
		t.Fatal(err)
	}
	// strace says "Process N attached" once it traces the main thread;
	// the rest of its stderr is drained so it never blocks.
	attached := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			if strings.Contains(sc.Text(), "attached") {
				once.Do(func() { close(attached) })
			}
		}
	}()
	select {
	case <-attached:
	case <-time.After(10 * time.Second):
		t.Fatal("strace did not attach")
	}
	exited := make(chan struct{})
	go func() { _ = st.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = st.Process.Kill() // by PID: the strace we started
			<-exited
		}
	})
	return func() int {
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Error("strace did not exit with edged")
			return -1
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Error(err)
			return -1
		}
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			// With -f a call may be split into "<unfinished ...>" and
			// "<... resumed>" lines; the first one names the file.
			if strings.Contains(line, "rename") && strings.Contains(line, `/heat.json"`) && !strings.Contains(line, "= -1") {
				n++
			}
		}
		return n
	}
}
