package main

// The dashboard end to end: `edged run` on the sim example, the page in
// headless Chromium, the real REST API and event stream behind it. The
// page's own behaviour in detail is tested in cmd/edged/dashboard against
// a test double of the API; this test checks that the page and the real
// daemon agree.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edged/edged/cmd/edged/dashboard/dashboardtest"
	"github.com/edged/edged/localbroker"
)

// e2eBrowserTimeout bounds one test's use of the browser: a hang guard.
const e2eBrowserTimeout = 2 * time.Minute

// apiMe is GET /api/v1/me.
type apiMe struct {
	User       string `json:"user"`
	Role       string `json:"role"`
	Anonymous  bool   `json:"anonymous"`
	CanCommand bool   `json:"can_command"`
}

// requireAPI returns GET /api/v1/me for an anonymous visitor.
func requireAPI(t *testing.T, httpAddr string) apiMe {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/api/v1/me")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var me apiMe
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/me: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&me); err != nil {
		t.Fatalf("GET /api/v1/me: %v", err)
	}
	return me
}

// apiSetpoint reads the heat loop's setpoint from GET /api/v1/controllers.
func apiSetpoint(t *testing.T, httpAddr string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/api/v1/controllers")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Controllers []struct {
			ID    string `json:"id"`
			State struct {
				Setpoint float64 `json:"setpoint"`
			} `json:"state"`
		} `json:"controllers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("GET /api/v1/controllers: %v", err)
	}
	for _, c := range out.Controllers {
		if c.ID == "heat" {
			return c.State.Setpoint
		}
	}
	t.Fatalf("GET /api/v1/controllers: no heat loop in %+v", out)
	return 0
}

// operatorConfig adds an operator account to the sim example (whose
// anonymous visitors stay viewers) and says whom to log in as: the test
// signs in through the page's form.
func operatorConfig(t *testing.T, cfg string) (edited, user, password string) {
	t.Helper()
	user, password = "op", "pw-op-dashboard"
	h, err := localbroker.HashPassword([]byte(password))
	if err != nil {
		t.Fatal(err)
	}
	return cfg + fmt.Sprintf("\nusers:\n  - name: %s\n    password_hash: %q\n    role: operator\n", user, h), user, password
}

// fastAir samples the greenhouse air every 2 s (its timeout), so that the page sees
// new values within seconds (the loop's stale_after still holds).
func fastAir(cfg string) string {
	return strings.Replace(cfg, "interval: 5s", "interval: 2s", 1)
}

const (
	e2eAirTemp = `[data-sensor="air"] [data-quantity="temperature"]`
	e2eHeatSP  = `[data-controller="heat"] .sp`
)

func TestDashboardIntegration(t *testing.T) {
	bin := edgedBinary(t)
	dashboardtest.RequireChromium(t) // before the daemons start

	t.Run("operator", func(t *testing.T) {
		var user, password string
		_, _, _, httpAddr := startSim(t, bin, func(cfg string) string {
			for _, s := range []string{"anonymous_role: viewer", "interval: 5s"} {
				if !strings.Contains(cfg, s) {
					t.Fatalf("sim.yaml no longer contains %q; update the test", s)
				}
			}
			cfg, user, password = operatorConfig(t, fastAir(cfg))
			return cfg
		})
		base := "http://" + httpAddr
		resp, err := http.Get(base + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("GET /: %s %q, want the dashboard", resp.Status, resp.Header.Get("Content-Type"))
		}
		if me := requireAPI(t, httpAddr); me.CanCommand {
			t.Fatalf("anonymous visitors are viewers, yet GET /api/v1/me says %+v", me)
		}

		b := dashboardtest.New(t, e2eBrowserTimeout)
		b.Do(chromedp.Navigate(base + "/"))
		// Sign in through the page's form, as an operator would.
		b.WaitText(20*time.Second, "body", func(string) bool {
			return b.JS(`String(!document.getElementById('login').hidden || !document.getElementById('login-open').hidden)`) == "true"
		})
		if b.JS(`String(document.getElementById('login').hidden)`) == "true" {
			b.Do(chromedp.Click(chromedp.CSS("#login-open")))
		}
		b.Do(chromedp.SendKeys(chromedp.CSS("#login-user"), user),
			chromedp.SendKeys(chromedp.CSS("#login-password"), password+"\r"))
		b.WaitText(20*time.Second, "#who-text", func(s string) bool { return strings.Contains(s, user) })

		// Live values: a reading arrives over the event stream (its time
		// changes) and, within a minute, a value on the page changes.
		b.WaitText(30*time.Second, e2eAirTemp+" .value", func(s string) bool { return s != "" && s != "–" })
		b.WaitText(20*time.Second, "#conn", func(s string) bool { return s == "Live" })
		q, _ := json.Marshal(e2eAirTemp)
		t0 := b.JS(fmt.Sprintf(`document.querySelector(%s).dataset.time`, q))
		b.WaitText(20*time.Second, e2eAirTemp+" .when", func(string) bool {
			return b.JS(fmt.Sprintf(`document.querySelector(%s).dataset.time`, q)) != t0
		})
		values := `[...document.querySelectorAll('[data-sensor] .value')].map(e => e.textContent).join(' | ')`
		v0 := b.JS(values)
		deadline := time.Now().Add(60 * time.Second)
		for b.JS(values) == v0 {
			if time.Now().After(deadline) {
				t.Fatalf("no value on the page changed in 60 s: %s", v0)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("values: %s -> %s", v0, b.JS(values))

		// The setpoint: type a new one, press Enter, and the card and the
		// API both follow.
		b.WaitText(10*time.Second, e2eHeatSP, func(s string) bool { return s != "" })
		want := 20.0
		if apiSetpoint(t, httpAddr) == want {
			want = 21
		}
		b.TypeEnter("#sp-heat", strconv.FormatFloat(want, 'f', -1, 64))
		if msg := b.WaitText(15*time.Second, "#msg-heat", func(s string) bool { return s != "" && s != "Sending…" }); msg != "Done." {
			t.Fatalf("setting the setpoint to %v: the page says %q", want, msg)
		}
		b.WaitText(15*time.Second, e2eHeatSP, func(s string) bool { return s == strconv.FormatFloat(want, 'f', -1, 64) })
		if got := apiSetpoint(t, httpAddr); got != want {
			t.Errorf("the page set %v but the API says %v", want, got)
		}
		// Off and back to auto: the mode follows each time.
		for _, mode := range []string{"off", "auto"} {
			b.Choose("#mode-heat", mode, `[data-controller="heat"] form.mode button`)
			b.WaitText(15*time.Second, `[data-controller="heat"] .mode`, func(s string) bool { return s == mode })
		}
		b.Screenshot("dashboard-e2e-operator-360.png")
		b.NoProblems()
	})

	t.Run("viewer", func(t *testing.T) {
		_, _, _, httpAddr := startSim(t, bin, nil) // the example's anonymous_role: viewer
		me := requireAPI(t, httpAddr)
		if me.CanCommand {
			t.Fatalf("anonymous viewer, yet GET /api/v1/me says %+v", me)
		}
		b := dashboardtest.New(t, e2eBrowserTimeout)
		b.Do(chromedp.Navigate("http://" + httpAddr + "/"))
		b.WaitText(30*time.Second, e2eHeatSP, func(s string) bool { return s != "" })
		b.WaitText(30*time.Second, e2eAirTemp+" .value", func(s string) bool { return s != "" && s != "–" })
		controls := `String(document.querySelectorAll('[data-controller] form, [data-controller] input, [data-controller] select, [data-controller] button').length)`
		if n := b.JS(controls); n != "0" {
			t.Errorf("a viewer sees %s controls", n)
		}
		b.Screenshot("dashboard-e2e-viewer-360.png")
		b.NoProblems()
	})
}
