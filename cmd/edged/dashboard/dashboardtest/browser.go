// Package dashboardtest drives the dashboard in headless Chromium, with
// chromedp, for the tests of cmd/edged/dashboard (against a test double
// of the API) and of cmd/edged (against the real daemon). It owns
// starting and stopping the browser, the phone-sized viewport, polling
// the page, screenshots and collecting the page's console problems. It
// must be imported by tests only: the edged binary must not link
// chromedp.
package dashboardtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// Browser is headless Chromium for one test, at a phone's 360 CSS px.
// Its methods fail the test on any error.
type Browser struct {
	t   testing.TB
	ctx context.Context

	mu       sync.Mutex
	problems []string // console errors, exceptions, CSP violations
}

// RequireChromium returns the path of chromium. Without it the test is
// skipped, or fails when EDGED_REQUIRE_CHROMIUM is set (CI sets it).
// New calls it; a test calls it first itself when it has costlier things
// to start before the browser.
func RequireChromium(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("EDGED_REQUIRE_CHROMIUM") != "" {
			t.Fatal("chromium not found but EDGED_REQUIRE_CHROMIUM is set: apt-get install chromium")
		}
		t.Skip("chromium not installed (apt-get install chromium; set EDGED_REQUIRE_CHROMIUM=1 to make this a failure)")
	}
	return path
}

// New starts headless Chromium with a phone-sized viewport (360 CSS px
// wide) and stops it when the test ends. timeout bounds the test's whole
// use of the browser: a hang guard, not a measurement.
func New(t testing.TB, timeout time.Duration) *Browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(RequireChromium(t)),
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
	// Start the browser with no deadline (the first run binds its life to
	// its context), then bound every step by timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	b := &Browser{t: t}
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
	tctx, tcancel := context.WithTimeout(ctx, timeout)
	t.Cleanup(tcancel)
	b.ctx = tctx
	b.Do(chromedp.EmulateViewport(360, 740, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	return b
}

// Do runs chromedp steps.
func (b *Browser) Do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatal(err)
	}
}

// Eval runs a JavaScript expression and decodes its JSON result into T.
// It is a function because Go methods cannot have type parameters.
func Eval[T any](b *Browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// JS is Eval[string], for the common case of an expression whose value
// is a string.
func (b *Browser) JS(expr string) string {
	b.t.Helper()
	return Eval[string](b, expr)
}

// Text returns the textContent of the first element sel matches, or ""
// when there is none.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	return b.JS(fmt.Sprintf(`(document.querySelector(%s) || {textContent: ""}).textContent`, quote(sel)))
}

// Count returns how many elements sel matches.
func (b *Browser) Count(sel string) int {
	b.t.Helper()
	return Eval[int](b, fmt.Sprintf(`document.querySelectorAll(%s).length`, quote(sel)))
}

// Visible reports whether sel matches an element that is rendered.
func (b *Browser) Visible(sel string) bool {
	b.t.Helper()
	return Eval[bool](b, fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.getClientRects().length > 0 })()`, quote(sel)))
}

// WaitFor polls cond every 100 ms until it holds, failing the test with
// what after timeout.
func (b *Browser) WaitFor(timeout time.Duration, what string, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitText polls sel's text every 100 ms until ok accepts it, and
// returns it.
func (b *Browser) WaitText(timeout time.Duration, sel string, ok func(string) bool) string {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		last := b.Text(sel)
		if ok(last) {
			return last
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("after %v: %s still has not the text wanted: %q", timeout, sel, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TypeEnter replaces the value of the input sel by typing s and pressing
// Enter, as a keyboard user would.
func (b *Browser) TypeEnter(sel, s string) {
	b.t.Helper()
	// Focus before clearing: the page redraws a card on every event
	// unless the user is typing in it, and a redraw between clearing and
	// typing would swap the field for a fresh one holding the old value
	// (or leave SendKeys a node that is gone).
	b.Do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(e => { e.focus(); e.value = "" })(document.querySelector(%s))`, quote(sel))),
		chromedp.SendKeys(chromedp.CSS(sel), s+"\r"))
}

// Choose picks value in the select sel as a user does (focus, choose,
// the change event) and then clicks the button button, if not "", all in
// one step of the page's script: the page redraws a card on every event
// unless the user is in it, and a redraw between steps would swap in a
// fresh select holding the old value (or leave a node id that is gone).
func (b *Browser) Choose(sel, value, button string) {
	b.t.Helper()
	b.Do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		const s = document.querySelector(%s);
		s.focus();
		s.value = %s;
		s.dispatchEvent(new Event('change', { bubbles: true }));
		const b = %s && document.querySelector(%s);
		if (b) b.click();
	})()`, quote(sel), quote(value), quote(button), quote(button))))
}

// DarkMode switches prefers-color-scheme.
func (b *Browser) DarkMode(dark bool) {
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

// Screenshot saves a full-page PNG named name in $EDGED_ARTIFACTS
// (created if needed) or else in a temp dir, logs its path and returns
// it.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	dir := os.Getenv("EDGED_ARTIFACTS")
	if dir == "" {
		dir = b.t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
	return path
}

// NoProblems fails the test on any console error, uncaught exception or
// CSP violation the page caused so far (failed requests are the tests'
// business).
func (b *Browser) NoProblems() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("page console: %s", p)
	}
}

// quote makes a CSS selector a JavaScript string literal.
func quote(sel string) string {
	q, _ := json.Marshal(sel)
	return string(q)
}
