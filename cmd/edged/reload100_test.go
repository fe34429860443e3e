package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReload100: 100 in-process reloads that change a sensor, the
// controller and its actuator, while HTTP clients and commands run:
// no race, no goroutine or file descriptor growth, the heater ends safe.
func TestReload100(t *testing.T) {
	path, _, _, httpAddr := simConfig(t)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a := string(orig)
	b := a
	for o, n := range map[string]string{
		"peak_lux: 30000":         "peak_lux: 20000",
		"    setpoint: 22.5\n":    "    setpoint: 20\n",
		"    driver: sim_relay\n": "    driver: sim_relay\n    name: Heater two\n",
	} {
		if !strings.Contains(b, o) {
			t.Fatalf("no %q", o)
		}
		b = strings.Replace(b, o, n, 1)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			ctx, cancel := context.WithTimeout(context.Background(), stopBudget)
			defer cancel()
			_ = d.stop(ctx)
		}
	}()
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// hammer: the API and commands while reloads run.
	var quit atomic.Bool
	var wg sync.WaitGroup
	for _, u := range []string{"/api/v1/controllers", "/api/v1/actuators", "/api/v1/sensors", "/metrics", "/readyz", "/api/v1/controllers/heat"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			for !quit.Load() {
				if r, err := c.Get("http://" + httpAddr + u); err == nil {
					_, _ = io.Copy(io.Discard, r.Body)
					r.Body.Close()
				}
			}
			c.CloseIdleConnections()
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !quit.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, _ = controllers{d}.Command(ctx, "heat", []byte(`{"mode":"manual","output":1}`), "review")
			cancel()
		}
	}()
	reload := func(i int) {
		if i%2 == 0 {
			write(b)
		} else {
			write(a)
		}
		d.reload(path)
		if o := d.reloads.lastOutcome(); o.Result != reloadApplied {
			t.Fatalf("reload %d: %+v", i, o)
		}
	}
	for i := range 4 {
		reload(i)
	}
	time.Sleep(500 * time.Millisecond)
	g0, f0 := runtime.NumGoroutine(), fds(t)
	for i := range 100 {
		reload(i)
	}
	quit.Store(true)
	wg.Wait()
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(time.Second)
	g1, f1 := runtime.NumGoroutine(), fds(t)
	t.Logf("goroutines %d -> %d, fds %d -> %d", g0, g1, f0, f1)
	if g1 > g0+10 {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines grew %d -> %d over 100 reloads\n%s", g0, g1, buf[:runtime.Stack(buf, true)])
	}
	if f1 > f0+5 {
		t.Errorf("file descriptors grew %d -> %d over 100 reloads", f0, f1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopBudget)
	defer cancel()
	stopped = true
	if err := d.stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
	for id, act := range d.actuators {
		if act.Level() != 0 {
			t.Errorf("actuator %s at %v after stop", id, act.Level())
		}
	}
}

func fds(t *testing.T) int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}
