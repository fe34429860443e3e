package dashboard

// Real-browser tests of the page against fakeAPI: headless Chromium,
// driven with chromedp through dashboardtest. They skip when chromium is
// not installed, unless EDGED_REQUIRE_CHROMIUM is set (CI sets it).

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edged/edged/cmd/edged/dashboard/dashboardtest"
)

// browserTimeout bounds one test's whole use of the browser: a hang
// guard, not a measurement.
const browserTimeout = 90 * time.Second

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
	b := dashboardtest.New(t, browserTimeout)
	f := newFakeAPI(t, "operator", 200*time.Millisecond)
	b.Do(chromedp.Navigate(f.srv.URL + "/"))

	first := b.WaitText(20*time.Second, airTemp, func(s string) bool { return s != "" && s != "–" })
	b.WaitText(10*time.Second, "#conn", has("Live"))
	b.WaitText(10*time.Second, airTemp, func(s string) bool { return s != first })

	if got := b.Text(`[data-sensor="air"] [data-quantity="temperature"] .unit`); !strings.Contains(got, "°C") {
		t.Errorf("temperature unit %q, want °C", got)
	}
	if n := b.Count(`[data-sensor="air"] [data-quantity="temperature"] svg polyline`); n != 1 {
		t.Errorf("temperature chart: %d lines, want 1", n)
	}
	if pts := dashboardtest.Eval[int](b, `document.querySelector('[data-sensor="air"] [data-quantity="temperature"] polyline').points.length`); pts < 60 {
		t.Errorf("temperature chart has %d points, want the hour of history (60) and more", pts)
	}
	if n := b.Count(`[data-sensor="soil"].status-offline`); n != 1 {
		t.Error("the offline sensor is not marked offline")
	}
	if got := b.Text(`[data-sensor="soil"] .badge`); !strings.Contains(got, "Offline") {
		t.Errorf("offline badge %q", got)
	}
	if got := b.Text(`[data-sensor="soil"]`); !strings.Contains(got, "no ACK") {
		t.Errorf("the offline sensor's card does not say why: %q", got)
	}
	if got := b.Text(`#uplink`); !strings.Contains(got, "Connected") || !strings.Contains(got, "Oldest unsent") {
		t.Errorf("uplink panel: %q", got)
	}
	if got := b.Text(`#who-text`); !strings.Contains(got, "operator") {
		t.Errorf("who: %q", got)
	}

	// The page fits a 360 px phone: nothing wider than the viewport.
	if w := dashboardtest.Eval[int](b, `document.documentElement.scrollWidth`); w > 360 {
		t.Errorf("page is %d px wide on a 360 px screen: it scrolls sideways", w)
	}
	b.Screenshot("dashboard-360-light.png")

	// Setpoint with the keyboard: type, Enter.
	b.TypeEnter("#sp-heat", "19.5")
	b.WaitText(10*time.Second, heatSP, func(s string) bool { return s == "19.5" })
	if st := f.state(); st.Setpoint != 19.5 {
		t.Errorf("API setpoint %v after the page set 19.5", st.Setpoint)
	}
	// A refused command shows the API's message.
	b.TypeEnter("#sp-heat", "99")
	b.WaitText(10*time.Second, "#msg-heat", has("out of range"))
	if st := f.state(); st.Setpoint != 19.5 {
		t.Errorf("API setpoint %v after a refused command", st.Setpoint)
	}
	// Mode: pick off and apply.
	b.Choose("#mode-heat", "off", `[data-controller="heat"] form.mode button`)
	b.WaitText(10*time.Second, `[data-controller="heat"] .mode`, func(s string) bool { return s == "off" })
	// Manual with an output.
	b.Choose("#mode-heat", "manual", "")
	if !b.Visible("#out-heat") {
		t.Fatal("manual mode shows no output field")
	}
	b.TypeEnter("#out-heat", "30")
	b.WaitText(10*time.Second, `[data-controller="heat"] .out`, func(s string) bool { return s == "30 %" })
	if st := f.state(); st.Mode != "manual" || st.Output != 0.3 {
		t.Errorf("API state %+v after manual 30 %%", st)
	}

	// A controller event from elsewhere (another user, MQTT) shows up.
	f.setpointFromElsewhere(23)
	b.WaitText(10*time.Second, heatSP, func(s string) bool { return s == "23" })

	// The stream drops; the page reconnects and values move again.
	_, before := f.streams()
	f.dropStreams()
	b.WaitFor(15*time.Second, "the page did not reconnect its event stream", func() bool {
		open, connects := f.streams()
		return open == 1 && connects > before
	})
	now := b.Text(airTemp)
	b.WaitText(10*time.Second, airTemp, func(s string) bool { return s != now })
	b.WaitText(10*time.Second, "#conn", has("Live"))

	b.DarkMode(true)
	b.Screenshot("dashboard-360-dark.png")
	b.NoProblems()
}

// TestPageCommandAnswerAfterNewerState: the answer to the page's own
// command, when it comes in after the event stream brought a newer state
// of the controller (another operator's setpoint), does not put the older
// state back. It did: TestPageOperator failed under CPU load, 3 runs in
// 40, when the answer to its manual-mode command, parsed late, replaced
// the setpoint 23 of the event that followed with 19.5, 4 ms after the
// page had shown 23.
func TestPageCommandAnswerAfterNewerState(t *testing.T) {
	b := dashboardtest.New(t, browserTimeout)
	f := newFakeAPI(t, "operator", 200*time.Millisecond)
	held, release := make(chan struct{}), make(chan struct{})
	f.mu.Lock()
	f.beforeAnswer = func() {
		select {
		case held <- struct{}{}:
		case <-f.stop:
			return
		}
		select {
		case <-release:
		case <-f.stop:
		}
	}
	f.mu.Unlock()
	b.Do(chromedp.Navigate(f.srv.URL + "/"))
	b.WaitText(20*time.Second, heatSP, func(s string) bool { return s == "22.5" })
	b.WaitText(10*time.Second, "#conn", has("Live"))

	b.TypeEnter("#sp-heat", "19.5")
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the page sent no command in 10 s")
	}
	// The command's own event, then another operator's, both before the
	// answer.
	b.WaitText(10*time.Second, heatSP, func(s string) bool { return s == "19.5" })
	f.setpointFromElsewhere(23)
	b.WaitText(10*time.Second, heatSP, func(s string) bool { return s == "23" })
	close(release)
	b.WaitText(10*time.Second, "#msg-heat", has("Done."))
	if got := b.Text(heatSP); got != "23" {
		t.Errorf("setpoint %q after the late answer to the page's command, want 23, the newer state the stream brought", got)
	}
	b.NoProblems()
}

// TestPageViewer: a viewer sees the values and the controller's state but
// no controls.
func TestPageViewer(t *testing.T) {
	b := dashboardtest.New(t, browserTimeout)
	f := newFakeAPI(t, "viewer", 200*time.Millisecond)
	b.Do(chromedp.Navigate(f.srv.URL + "/"))
	b.WaitText(20*time.Second, heatSP, func(s string) bool { return s == "22.5" })
	b.WaitText(10*time.Second, airTemp, func(s string) bool { return s != "" })
	if n := b.Count(`[data-controller] form, [data-controller] input, [data-controller] select, [data-controller] button`); n != 0 {
		t.Errorf("a viewer sees %d controls", n)
	}
	if !b.Visible("#login-open") {
		t.Error("an anonymous viewer has no Sign in button")
	}
	b.NoProblems()
}

// TestPageLogin: in a protected setup the page asks for a login, says so
// when it fails, and shows the operator's controls after it; a viewer
// who signs in as an operator gets them too; signing out takes them away.
func TestPageLogin(t *testing.T) {
	t.Run("protected", func(t *testing.T) {
		b := dashboardtest.New(t, browserTimeout)
		f := newFakeAPI(t, "", 200*time.Millisecond)
		b.Do(chromedp.Navigate(f.srv.URL + "/"))
		b.WaitFor(20*time.Second, "no login form", func() bool { return b.Visible("#login-user") })
		if b.Count(`[data-sensor]`) != 0 {
			t.Error("sensors shown before login")
		}
		b.Do(chromedp.SendKeys(chromedp.CSS("#login-user"), "olivia"),
			chromedp.SendKeys(chromedp.CSS("#login-password"), "wrong\r"))
		b.WaitText(10*time.Second, "#login-error", has("wrong user or password"))
		b.TypeEnter("#login-password", "greenhouse-op")
		b.WaitText(10*time.Second, "#who-text", has("olivia (operator)"))
		b.WaitFor(10*time.Second, "no setpoint control after an operator's login", func() bool { return b.Visible("#sp-heat") })
		if b.Visible("#login") {
			t.Error("login form still shown after login")
		}
		b.WaitText(10*time.Second, "#conn", has("Live"))
		b.Do(chromedp.Click(chromedp.CSS("#logout")))
		b.WaitFor(10*time.Second, "no login form after sign out", func() bool { return b.Visible("#login-user") })
		b.NoProblems()
	})
	t.Run("viewer to operator", func(t *testing.T) {
		b := dashboardtest.New(t, browserTimeout)
		f := newFakeAPI(t, "viewer", 200*time.Millisecond)
		b.Do(chromedp.Navigate(f.srv.URL + "/"))
		b.WaitText(20*time.Second, heatSP, func(s string) bool { return s == "22.5" })
		b.Do(chromedp.Click(chromedp.CSS("#login-open")))
		b.Do(chromedp.SendKeys(chromedp.CSS("#login-user"), "olivia"),
			chromedp.SendKeys(chromedp.CSS("#login-password"), "greenhouse-op\r"))
		b.WaitFor(10*time.Second, "no setpoint control after an operator's login", func() bool { return b.Visible("#sp-heat") })
		b.Do(chromedp.Click(chromedp.CSS("#logout")))
		b.WaitFor(10*time.Second, "controls still shown after sign out", func() bool { return b.Count("#sp-heat") == 0 })
		b.NoProblems()
	})
}
