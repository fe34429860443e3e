package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
)

// replies records the answers an Inbox sends, by request.
type replies struct {
	mu   sync.Mutex
	got  map[string][]string
	each chan struct{} // one per reply, never blocks the inbox
}

func newReplies() *replies {
	return &replies{got: map[string][]string{}, each: make(chan struct{}, 100000)}
}

// request is a command to controller heat whose reply is recorded under
// name.
func (r *replies) request(name, payload string) Request {
	return Request{Controller: "heat", Payload: []byte(payload), Client: "test", Reply: func(p []byte) error {
		r.mu.Lock()
		r.got[name] = append(r.got[name], string(p))
		r.mu.Unlock()
		r.each <- struct{}{}
		return nil
	}}
}

// wait waits for n replies in all.
func (r *replies) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-r.each:
		case <-time.After(capWait):
			t.Fatalf("fewer than %d replies", n)
		}
	}
}

func (r *replies) of(name string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[name]
}

// lineLog hands each log line to a channel, so a test can wait for one.
type lineLog struct {
	logBuf
	lines chan string
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.logBuf.Write(p)
	select {
	case l.lines <- string(p):
	default:
	}
	return len(p), nil
}

// runInbox runs in until the test ends.
func runInbox(t *testing.T, in *Inbox) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(capWait):
			t.Error("Inbox.Run did not return")
		}
	})
}

// Regression for issue 7: a burst of commands faster than they are
// applied dropped the newest ones without a reply. Now the newest always
// gets in, and each command dropped for a newer one is answered.
func TestInboxBurstKeepsNewestIssue7(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, testOpts(), t.TempDir())
		in := NewInbox(map[string]*Loop{"heat": h.l}, sensorstest.NewClock(t0), nil)
		r := newReplies()
		const n = inboxDepth + 10
		sp := func(i int) float64 { return 5 + float64(i)/10 }
		// Run has not started: the queue overflows as it would when commands
		// come faster than they are applied.
		for i := range n {
			in.Submit(r.request(fmt.Sprint(i), fmt.Sprintf(`{"setpoint":%v}`, sp(i))))
		}
		runInbox(t, in)
		r.wait(t, n)
		for i := range n {
			got := r.of(fmt.Sprint(i))
			if len(got) != 1 {
				t.Fatalf("command %d: replies %q, want one", i, got)
			}
			if i < n-inboxDepth {
				if want := `{"error":"control: superseded by a newer command"}`; got[0] != want {
					t.Errorf("command %d: reply %s, want %s", i, got[0], want)
				}
				continue
			}
			var s State
			if err := json.Unmarshal([]byte(got[0]), &s); err != nil || s.Setpoint != sp(i) {
				t.Errorf("command %d: reply %s, want the state with setpoint %v", i, got[0], sp(i))
			}
		}
		if s := h.l.State(); s.Setpoint != sp(n-1) {
			t.Errorf("setpoint %v, want the last command's %v", s.Setpoint, sp(n-1))
		}
	})
}

// A mode change in a burst of setpoint changes is not dropped: no later
// command sets the mode again. Likewise an output that a mode change
// before it makes acceptable.
func TestInboxBurstKeepsPartialCommands(t *testing.T) {
	cases := []struct {
		name  string
		first []string
		mode  Mode
		out   float64
	}{
		{"mode off", []string{`{"mode":"off"}`}, ModeOff, 0},
		{"manual then output", []string{`{"mode":"manual"}`, `{"output":0.3}`}, ModeManual, 0.3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := startHarness(t, testOpts(), t.TempDir())
				h.read(18)
				in := NewInbox(map[string]*Loop{"heat": h.l}, sensorstest.NewClock(t0), nil)
				r := newReplies()
				for i, p := range tc.first {
					in.Submit(r.request(fmt.Sprint("first", i), p))
				}
				const n = 3 * inboxDepth
				for i := range n {
					in.Submit(r.request(fmt.Sprint(i), fmt.Sprintf(`{"setpoint":%v}`, 10+float64(i)/100)))
				}
				runInbox(t, in)
				r.wait(t, n+len(tc.first))
				for i := range tc.first {
					if got := r.of(fmt.Sprint("first", i)); len(got) != 1 || strings.Contains(got[0], "error") {
						t.Errorf("%s: reply %q, want the state", tc.first[i], got)
					}
				}
				h.settle()
				s := h.l.State()
				if s.Mode != tc.mode || !near(s.Output, tc.out) || s.Setpoint != 10+float64(n-1)/100 {
					t.Errorf("state %+v, want mode %s, output %v, the last setpoint", s, tc.mode, tc.out)
				}
			})
		})
	}
}

// TestInboxRefusals answers bad commands and unknown controllers with
// their error, before and after the queue.
func TestInboxRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, testOpts(), "")
		in := NewInbox(map[string]*Loop{"heat": h.l}, sensorstest.NewClock(t0), nil)
		r := newReplies()
		in.Submit(r.request("range", `{"setpoint":99}`))
		in.Submit(r.request("auto-output", `{"output":0.5}`)) // refused when applied: the loop is in auto
		other := r.request("other", `{"setpoint":21}`)
		other.Controller = `cool"er`
		in.Submit(other)
		in.Submit(Request{Controller: "heat", Payload: []byte(`{"mode":"off"}`)}) // no reply wanted
		runInbox(t, in)
		r.wait(t, 3)
		for name, want := range map[string]string{
			"range":       `{"error":"control: bad command: setpoint 99 is out of range (5..30)"}`,
			"auto-output": `{"error":"control: bad command: output is set in manual mode only, e.g. {\"mode\": \"manual\", \"output\": 0.3}"}`,
			"other":       `{"error":"control: no controller \"cool\\\"er\""}`,
		} {
			if got := r.of(name); len(got) != 1 || got[0] != want {
				t.Errorf("%s: replies %q, want %s", name, got, want)
			}
		}
	})
}

// Regression for issue 7: 16,020 log lines for a 5 s flood. A burst now
// logs its first command, its first refusal, and one summary line per
// second.
func TestInboxLogsBurstOnceIssue7(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, testOpts(), t.TempDir())
		clk := sensorstest.NewClock(t0)
		logs := &lineLog{lines: make(chan string, 64)}
		in := NewInbox(map[string]*Loop{"heat": h.l}, clk, slog.New(slog.NewTextHandler(logs, nil)))
		r := newReplies()
		const n = 200
		for i := range n {
			p := fmt.Sprintf(`{"setpoint":%v}`, 5+float64(i)/10)
			if i%40 == 0 {
				p = `{"setpoint":-1}`
			}
			in.Submit(r.request(fmt.Sprint(i), p))
		}
		runInbox(t, in)
		r.wait(t, n)
		if err := clk.WaitTimerAt(t0.Add(summaryEvery), capWait); err != nil {
			t.Fatal(err)
		}
		clk.Advance(summaryEvery)
		for {
			select {
			case line := <-logs.lines:
				if !strings.Contains(line, "not logged one by one") {
					continue
				}
				// 5 refused before the queue, 195 queued of which 64 applied
				// (one logged in full) and 131 superseded.
				for _, want := range []string{"applied=63", "refused=4", "superseded=131", "setpoint=24.9", "mode=auto"} {
					if !strings.Contains(line, want) {
						t.Errorf("summary %q lacks %s", line, want)
					}
				}
				if got := strings.Count(logs.String(), "\n"); got != 3 {
					t.Errorf("%d log lines, want 3 (first applied, first refused, summary):\n%s", got, logs)
				}
				return
			case <-time.After(capWait):
				t.Fatalf("no summary line:\n%s", logs)
			}
		}
	})
}

// TestEvictable drops a command only where that changes nothing: the
// same final state, and every other command accepted or refused as it
// would have been. Random queues are replayed on two loops, with and
// without the dropped command.
func TestEvictable(t *testing.T) {
	cases := []struct {
		name string
		q    []string
		next string
		want int
	}{
		{"oldest setpoint", []string{`{"setpoint":10}`, `{"setpoint":11}`}, `{"setpoint":12}`, 0},
		{"mode kept", []string{`{"mode":"off"}`, `{"setpoint":11}`}, `{"setpoint":12}`, 1},
		{"mode needed by output", []string{`{"mode":"manual"}`, `{"output":0.2}`, `{"mode":"manual"}`, `{"setpoint":7}`}, `{"setpoint":8}`, 3},
		{"output covered by output", []string{`{"mode":"manual"}`, `{"output":0.2}`, `{"output":0.3}`}, `{"setpoint":8}`, 1},
		{"output across a mode change", []string{`{"output":0.2}`, `{"mode":"auto"}`, `{"output":0.3}`, `{"setpoint":7}`}, `{"setpoint":8}`, 3},
		{"combined covered", []string{`{"setpoint":10,"mode":"off"}`, `{"setpoint":11}`}, `{"mode":"auto","setpoint":12}`, 0},
	}
	parse := func(s string) command {
		c, err := parseCommand([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var q []queued
			for _, s := range tc.q {
				q = append(q, queued{cmd: parse(s)})
			}
			if got := evictable(q, parse(tc.next)); got != tc.want {
				t.Errorf("evictable = %d (%s), want %d", got, tc.q[got], tc.want)
			}
		})
	}

	rng := rand.New(rand.NewPCG(7, 7))
	kinds := []func() string{
		func() string { return fmt.Sprintf(`{"setpoint":%d}`, 5+rng.IntN(20)) },
		func() string { return fmt.Sprintf(`{"mode":%q}`, []string{"auto", "manual", "off"}[rng.IntN(3)]) },
		func() string { return fmt.Sprintf(`{"output":0.%d}`, rng.IntN(10)) },
		func() string { return fmt.Sprintf(`{"mode":"manual","output":0.%d}`, rng.IntN(10)) },
		func() string { return fmt.Sprintf(`{"setpoint":%d,"output":0.%d}`, 5+rng.IntN(20), rng.IntN(10)) },
		func() string {
			return fmt.Sprintf(`{"setpoint":%d,"mode":%q}`, 5+rng.IntN(20), []string{"auto", "manual", "off"}[rng.IntN(3)])
		},
		func() string { return fmt.Sprintf(`{"gains":{"kp":0.%d,"ki":0,"kd":0}}`, 1+rng.IntN(9)) },
		func() string { return `{"reset":"integral"}` },
		func() string {
			return fmt.Sprintf(`{"mode":"auto","reset":"integral","gains":{"kp":0.%d,"ki":0,"kd":0}}`, 1+rng.IntN(9))
		},
	}
	for trial := range 300 {
		// Few kinds per trial, so that covering commands are rare and
		// the rule is tested far from its first candidates.
		nk := 1 + rng.IntN(len(kinds))
		var seq []string
		for range inboxDepth + 1 {
			seq = append(seq, kinds[rng.IntN(nk)]())
		}
		var q []queued
		for _, s := range seq[:inboxDepth] {
			q = append(q, queued{cmd: parse(s)})
		}
		drop := evictable(q, parse(seq[inboxDepth]))
		all, without := replay(t, seq, -1), replay(t, seq, drop)
		if all.state != without.state {
			t.Fatalf("trial %d: dropping %d (%s) changes the state: %+v, want %+v\n%s", trial, drop, seq[drop], without.state, all.state, strings.Join(seq, "\n"))
		}
		for i := range seq {
			if i != drop && all.ok[i] != without.ok[i] {
				t.Fatalf("trial %d: dropping %d (%s) changes whether %d (%s) is accepted\n%s", trial, drop, seq[drop], i, seq[i], strings.Join(seq, "\n"))
			}
		}
	}
}

type replayed struct {
	state struct {
		setpoint, manual float64
		mode             Mode
		spSet, modeSet   bool
		gains            Gains
		integral         float64
		output           float64
	}
	ok []bool
}

// replay applies seq, but for the command at skip, to a loop that is not
// running (so only what commands set changes).
func replay(t *testing.T, seq []string, skip int) replayed {
	t.Helper()
	l, err := New(testOpts(), &fakeActuator{clk: sensorstest.NewClock(t0)}, sensorstest.NewClock(t0), nil, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var r replayed
	for i, s := range seq {
		if i == skip {
			r.ok = append(r.ok, false)
			continue
		}
		_, err := l.Command([]byte(s))
		r.ok = append(r.ok, err == nil)
	}
	r.state.setpoint, r.state.manual, r.state.mode, r.state.spSet, r.state.modeSet = l.setpoint, l.manual, l.mode, l.spSet, l.modeSet
	r.state.gains, r.state.integral, r.state.output = l.gainsLocked(), l.ctl().Integral(), l.ctl().Output()
	return r
}

// TestInboxGainsLogged: a gains change is logged with the client that
// sent it, shows in the state, and is written with the setpoint.
func TestInboxGainsLogged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		o := testOpts()
		o.GainLimits = &GainLimits{Ki: f64(0.01)}
		h := startHarness(t, o, dir)
		in := NewInbox(map[string]*Loop{"heat": h.l}, h.clk, nil)
		runInbox(t, in)
		r := newReplies()
		req := r.request("gains", `{"gains":{"kp":0.3,"ki":0.005,"kd":0},"setpoint":21}`)
		req.Client = "dash-7"
		in.Submit(req)
		bad := r.request("bad", `{"gains":{"kp":0.3,"ki":0.02,"kd":0}}`)
		in.Submit(bad)
		r.wait(t, 2)
		h.settle()
		if got := r.of("bad"); len(got) != 1 || !strings.Contains(got[0], `"error":"control: bad command: gains: ki 0.02 is beyond its limit 0.01`) {
			t.Errorf("reply to bad gains %q", got)
		}
		if s := h.l.State(); s.Gains != (StateGains{Kp: 0.3, Ki: 0.005}) || s.Setpoint != 21 {
			t.Errorf("state %+v", s)
		}
		if n := h.logs.count(`from="kp=0.1 ki=0 kd=0" to="kp=0.3 ki=0.005 kd=0" client=dash-7`); n != 1 {
			t.Errorf("gains change not logged once with its client:\n%s", h.logs)
		}
		if got, want := readState(t, dir), `{"setpoint":21,"gains":{"kp":0.3,"ki":0.005,"kd":0}}`+"\n"; got != want {
			t.Errorf("state file %q, want %q", got, want)
		}
	})
}

// Do answers with the reply an MQTT sender would get and the error
// behind it, so the REST API can map a refusal to a status without
// parsing the reply.
func TestInboxDo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, testOpts(), t.TempDir())
		in := NewInbox(map[string]*Loop{"heat": h.l}, sensorstest.NewClock(t0), nil)
		runInbox(t, in)
		ctx, cancel := context.WithTimeout(context.Background(), capWait)
		defer cancel()
		reply, err := in.Do(ctx, Request{Controller: "heat", Payload: []byte(`{"setpoint":21}`), Client: "rest"})
		var s State
		if err != nil || json.Unmarshal(reply, &s) != nil || s.Setpoint != 21 {
			t.Errorf("good command: reply %s, err %v; want the state with setpoint 21", reply, err)
		}
		for _, bad := range []string{`{"setpoint":1e9}`, `{"setpoint":`, `{"nope":1}`} {
			reply, err := in.Do(ctx, Request{Controller: "heat", Payload: []byte(bad), Client: "rest"})
			if !errors.Is(err, ErrCommand) || !strings.Contains(string(reply), `"error"`) {
				t.Errorf("%s: reply %s, err %v; want an ErrCommand and an error reply", bad, reply, err)
			}
		}
		if _, err := in.Do(ctx, Request{Controller: "none", Payload: []byte(`{"setpoint":21}`)}); err == nil || errors.Is(err, ErrCommand) {
			t.Errorf("unknown controller: err %v, want a no-controller error", err)
		}
	})
}

// Do after Run returned says so at once instead of waiting for an
// answer that will never come.
func TestInboxDoStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, testOpts(), t.TempDir())
		in := NewInbox(map[string]*Loop{"heat": h.l}, sensorstest.NewClock(t0), nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		in.Run(ctx)
		if _, err := in.Do(context.Background(), Request{Controller: "heat", Payload: []byte(`{"setpoint":21}`)}); !errors.Is(err, ErrStopped) {
			t.Errorf("err %v, want ErrStopped", err)
		}
	})
}

// TestInboxSetLoops is the control room's part of a live reload (issue
// 13): commands waiting for a loop that a reload replaces or removes are
// answered with ErrReplaced and applied to neither loop; later commands
// go to the new loop; a removed controller is unknown. Submits racing
// SetLoops each get exactly one answer (-race).
func TestInboxSetLoops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		old := newHarness(t, testOpts(), "")
		old.start()
		repl := newHarness(t, testOpts(), "")
		repl.start()
		in := NewInbox(map[string]*Loop{"heat": old.l}, sensorstest.NewClock(t0), nil)
		r := newReplies()
		in.Submit(r.request("waiting", `{"setpoint":11}`))
		in.SetLoops(map[string]*Loop{"heat": repl.l})
		runInbox(t, in)
		r.wait(t, 1)
		if got := r.of("waiting"); len(got) != 1 || !strings.Contains(got[0], "restarted or removed by a config reload") {
			t.Errorf("command waiting across the reload: replies %q, want ErrReplaced", got)
		}
		if old.l.State().Setpoint == 11 || repl.l.State().Setpoint == 11 {
			t.Error("the command waiting across the reload was applied")
		}
		reply, err := in.Do(context.Background(), Request{Controller: "heat", Payload: []byte(`{"setpoint":12}`)})
		if err != nil || repl.l.State().Setpoint != 12 || old.l.State().Setpoint == 12 {
			t.Errorf("after the reload: %s %v, setpoints new %v old %v; want the new loop at 12", reply, err, repl.l.State().Setpoint, old.l.State().Setpoint)
		}

		// Submits racing reloads: one answer each.
		const n = 200
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if i%2 == 0 {
					in.SetLoops(map[string]*Loop{"heat": old.l})
				} else {
					in.SetLoops(map[string]*Loop{"heat": repl.l})
				}
			}
		}()
		for i := range n {
			in.Submit(r.request(fmt.Sprint("race", i), fmt.Sprintf(`{"setpoint":%d}`, 5+i%20)))
		}
		wg.Wait()
		r.wait(t, n)
		for i := range n {
			if got := r.of(fmt.Sprint("race", i)); len(got) != 1 {
				t.Fatalf("racing command %d: replies %q, want one", i, got)
			}
		}

		in.SetLoops(map[string]*Loop{})
		if _, err := in.Do(context.Background(), Request{Controller: "heat", Payload: []byte(`{"setpoint":13}`)}); err == nil || !strings.Contains(err.Error(), `no controller "heat"`) {
			t.Errorf("command for a removed controller: %v, want no controller", err)
		}
	})
}
