package dashboard

// Real-browser tests of the page against fakeAPI: headless Chromium,
// driven with chromedp. They skip when chromium is not installed, unless
// EDGED_REQUIRE_CHROMIUM is set (CI sets it).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// browserTimeout bounds one test's whole use of the browser: a hang
// guard, not a measurement.
const browserTimeout = 90 * time.Second

type browser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string // console errors, exceptions, CSP violations
}

// newBrowser starts headless Chromium with a phone-sized viewport (360
// CSS px wide) and stops it when the test ends.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("EDGED_REQUIRE_CHROMIUM") != "" {
			t.Fatal("chromium not found but EDGED_REQUIRE_CHROMIUM is set: apt-get install chromium")
		}
		t.Skip("chromium not installed (apt-get install chromium; set EDGED_REQUIRE_CHROMIUM=1 to make this a failure)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root, where the sandbox cannot start
		chromedp.Headless,
		chromedp.Flag("disable-gpu", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()  // closes the tab and the browser
		acancel() // and waits for the process to exit
	})
	b := &browser{t: t, ctx: ctx}
	// Start the browser with no deadline (the first run binds its life to
	// its context), then bound every step by the test's deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	msgs := chromedp.Console(ctx)
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for m, err := range msgs {
			if err != nil {
				return // the browser went away
			}
			if m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleError && m.Source != "network" {
				b.mu.Lock()
				b.problems = append(b.problems, fmt.Sprintf("%s %s:%d: %s", m.Type, m.URL, m.Line+1, m.Text))
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel() // ends the console iterator too
		<-consoleDone
	})
	tctx, tcancel := context.WithTimeout(ctx, browserTimeout)
	t.Cleanup(tcancel)
	b.ctx = tctx
	b.do(chromedp.EmulateViewport(360, 740, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	return b
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatal(err)
	}
}

// eval runs a JavaScript expression and decodes its JSON result into T.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// text returns the textContent of the first element sel matches, or ""
// when there is none.
func (b *browser) text(sel string) string {
	b.t.Helper()
	q, _ := json.Marshal(sel)
	return eval[string](b, fmt.Sprintf(`(document.querySelector(%s) || {textContent: ""}).textContent`, q))
}

func (b *browser) count(sel string) int {
	b.t.Helper()
	q, _ := json.Marshal(sel)
	return eval[int](b, fmt.Sprintf(`document.querySelectorAll(%s).length`, q))
}

// visible reports whether sel matches an element that is rendered.
func (b *browser) visible(sel string) bool {
	b.t.Helper()
	q, _ := json.Marshal(sel)
	return eval[bool](b, fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.getClientRects().length > 0 })()`, q))
}

// waitFor polls cond every 100 ms until it holds, failing the test with
// what after timeout.
func (b *browser) waitFor(timeout time.Duration, what string, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitText waits until sel's text satisfies ok and returns it.
func (b *browser) waitText(timeout time.Duration, sel string, ok func(string) bool) string {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		last := b.text(sel)
		if ok(last) {
			return last
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("after %v: %s still has not the text wanted: %q", timeout, sel, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// type replaces the value of the input sel by typing s and pressing
// Enter, as a keyboard user would.
func (b *browser) typeEnter(sel, s string) {
	b.t.Helper()
	q, _ := json.Marshal(sel)
	b.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%s).value = ""`, q)),
		chromedp.SendKeys(chromedp.CSS(sel), s+"\r"))
}

// darkMode switches prefers-color-scheme.
func (b *browser) darkMode(dark bool) {
	b.t.Helper()
	v := "light"
	if dark {
		v = "dark"
	}
	_, err := chromedp.Call(b.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: v}},
	})
	if err != nil {
		b.t.Fatal(err)
	}
}

// screenshot saves a full-page PNG under artifactDir and logs its path.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	path := filepath.Join(artifactDir(b.t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
	return path
}

// noProblems fails the test on any console error, uncaught exception or
// CSP violation the page caused (failed requests are the tests' business).
func (b *browser) noProblems() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("page console: %s", p)
	}
}

// artifactDir is $EDGED_ARTIFACTS (created if needed), or a temp dir.
func artifactDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("EDGED_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

func has(sub string) func(string) bool {
	return func(s string) bool { return strings.Contains(s, sub) }
}

const (
	airTemp = `[data-sensor="air"] [data-quantity="temperature"] .value`
	heatSP  = `[data-controller="heat"] .sp`
)

// TestPageOperator: an operator (here the anonymous role) sees live
// values, charts, an offline sensor marked, the uplink, and moves the
// setpoint and the mode; a refused command shows the API's error; the
// page comes back after the event stream drops.
func TestPageOperator(t *testing.T) {
	b := newBrowser(t)
	f := newFakeAPI(t, "operator", 200*time.Millisecond)
	b.do(chromedp.Navigate(f.srv.URL + "/"))

	first := b.waitText(20*time.Second, airTemp, func(s string) bool { return s != "" && s != "–" })
	b.waitText(10*time.Second, "#conn", has("Live"))
	b.waitText(10*time.Second, airTemp, func(s string) bool { return s != first })

	if got := b.text(`[data-sensor="air"] [data-quantity="temperature"] .unit`); !strings.Contains(got, "°C") {
		t.Errorf("temperature unit %q, want °C", got)
	}
	if n := b.count(`[data-sensor="air"] [data-quantity="temperature"] svg polyline`); n != 1 {
		t.Errorf("temperature chart: %d lines, want 1", n)
	}
	if pts := eval[int](b, `document.querySelector('[data-sensor="air"] [data-quantity="temperature"] polyline').points.length`); pts < 60 {
		t.Errorf("temperature chart has %d points, want the hour of history (60) and more", pts)
	}
	if n := b.count(`[data-sensor="soil"].status-offline`); n != 1 {
		t.Error("the offline sensor is not marked offline")
	}
	if got := b.text(`[data-sensor="soil"] .badge`); !strings.Contains(got, "Offline") {
		t.Errorf("offline badge %q", got)
	}
	if got := b.text(`[data-sensor="soil"]`); !strings.Contains(got, "no ACK") {
		t.Errorf("the offline sensor's card does not say why: %q", got)
	}
	if got := b.text(`#uplink`); !strings.Contains(got, "Connected") || !strings.Contains(got, "Oldest unsent") {
		t.Errorf("uplink panel: %q", got)
	}
	if got := b.text(`#who-text`); !strings.Contains(got, "operator") {
		t.Errorf("who: %q", got)
	}

	// The page fits a 360 px phone: nothing wider than the viewport.
	if w := eval[int](b, `document.documentElement.scrollWidth`); w > 360 {
		t.Errorf("page is %d px wide on a 360 px screen: it scrolls sideways", w)
	}
	b.screenshot("dashboard-360-light.png")

	// Setpoint with the keyboard: type, Enter.
	b.typeEnter("#sp-heat", "19.5")
	b.waitText(10*time.Second, heatSP, func(s string) bool { return s == "19.5" })
	if st := f.state(); st.Setpoint != 19.5 {
		t.Errorf("API setpoint %v after the page set 19.5", st.Setpoint)
	}
	// A refused command shows the API's message.
	b.typeEnter("#sp-heat", "99")
	b.waitText(10*time.Second, "#msg-heat", has("out of range"))
	if st := f.state(); st.Setpoint != 19.5 {
		t.Errorf("API setpoint %v after a refused command", st.Setpoint)
	}
	// Mode: pick off and apply.
	b.do(chromedp.SetValue(chromedp.CSS("#mode-heat"), "off"),
		chromedp.Click(chromedp.CSS(`[data-controller="heat"] form.mode button`)))
	b.waitText(10*time.Second, `[data-controller="heat"] .mode`, func(s string) bool { return s == "off" })
	// Manual with an output.
	b.do(chromedp.SetValue(chromedp.CSS("#mode-heat"), "manual"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('mode-heat').dispatchEvent(new Event('change'))`))
	if !b.visible("#out-heat") {
		t.Fatal("manual mode shows no output field")
	}
	b.typeEnter("#out-heat", "30")
	b.waitText(10*time.Second, `[data-controller="heat"] .out`, func(s string) bool { return s == "30 %" })
	if st := f.state(); st.Mode != "manual" || st.Output != 0.3 {
		t.Errorf("API state %+v after manual 30 %%", st)
	}

	// A controller event from elsewhere (another user, MQTT) shows up.
	f.mu.Lock()
	f.ctl.State.Setpoint = 23
	ev, _ := json.Marshal(map[string]any{"id": "heat", "state": f.ctl.State})
	f.broadcastLocked("controller", ev)
	f.mu.Unlock()
	b.waitText(10*time.Second, heatSP, func(s string) bool { return s == "23" })

	// The stream drops; the page reconnects and values move again.
	_, before := f.streams()
	f.dropStreams()
	b.waitFor(15*time.Second, "the page did not reconnect its event stream", func() bool {
		open, connects := f.streams()
		return open == 1 && connects > before
	})
	now := b.text(airTemp)
	b.waitText(10*time.Second, airTemp, func(s string) bool { return s != now })
	b.waitText(10*time.Second, "#conn", has("Live"))

	b.darkMode(true)
	b.screenshot("dashboard-360-dark.png")
	b.noProblems()
}

// TestPageViewer: a viewer sees the values and the controller's state but
// no controls.
func TestPageViewer(t *testing.T) {
	b := newBrowser(t)
	f := newFakeAPI(t, "viewer", 200*time.Millisecond)
	b.do(chromedp.Navigate(f.srv.URL + "/"))
	b.waitText(20*time.Second, heatSP, func(s string) bool { return s == "22.5" })
	b.waitText(10*time.Second, airTemp, func(s string) bool { return s != "" })
	if n := b.count(`[data-controller] form, [data-controller] input, [data-controller] select, [data-controller] button`); n != 0 {
		t.Errorf("a viewer sees %d controls", n)
	}
	if !b.visible("#login-open") {
		t.Error("an anonymous viewer has no Sign in button")
	}
	b.noProblems()
}

// TestPageLogin: in a protected setup the page asks for a login, says so
// when it fails, and shows the operator's controls after it; a viewer
// who signs in as an operator gets them too; signing out takes them away.
func TestPageLogin(t *testing.T) {
	t.Run("protected", func(t *testing.T) {
		b := newBrowser(t)
		f := newFakeAPI(t, "", 200*time.Millisecond)
		b.do(chromedp.Navigate(f.srv.URL + "/"))
		b.waitFor(20*time.Second, "no login form", func() bool { return b.visible("#login-user") })
		if b.count(`[data-sensor]`) != 0 {
			t.Error("sensors shown before login")
		}
		b.do(chromedp.SendKeys(chromedp.CSS("#login-user"), "olivia"),
			chromedp.SendKeys(chromedp.CSS("#login-password"), "wrong\r"))
		b.waitText(10*time.Second, "#login-error", has("wrong user or password"))
		b.typeEnter("#login-password", "greenhouse-op")
		b.waitText(10*time.Second, "#who-text", has("olivia (operator)"))
		b.waitFor(10*time.Second, "no setpoint control after an operator's login", func() bool { return b.visible("#sp-heat") })
		if b.visible("#login") {
			t.Error("login form still shown after login")
		}
		b.waitText(10*time.Second, "#conn", has("Live"))
		b.do(chromedp.Click(chromedp.CSS("#logout")))
		b.waitFor(10*time.Second, "no login form after sign out", func() bool { return b.visible("#login-user") })
		b.noProblems()
	})
	t.Run("viewer to operator", func(t *testing.T) {
		b := newBrowser(t)
		f := newFakeAPI(t, "viewer", 200*time.Millisecond)
		b.do(chromedp.Navigate(f.srv.URL + "/"))
		b.waitText(20*time.Second, heatSP, func(s string) bool { return s == "22.5" })
		b.do(chromedp.Click(chromedp.CSS("#login-open")))
		b.do(chromedp.SendKeys(chromedp.CSS("#login-user"), "olivia"),
			chromedp.SendKeys(chromedp.CSS("#login-password"), "greenhouse-op\r"))
		b.waitFor(10*time.Second, "no setpoint control after an operator's login", func() bool { return b.visible("#sp-heat") })
		b.do(chromedp.Click(chromedp.CSS("#logout")))
		b.waitFor(10*time.Second, "controls still shown after sign out", func() bool { return b.count("#sp-heat") == 0 })
		b.noProblems()
	})
}
