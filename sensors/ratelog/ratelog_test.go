package ratelog_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/sensors/ratelog"
	"github.com/edged/edged/sensors/sensorstest"
)

func TestPerKey(t *testing.T) {
	clk := sensorstest.NewClock(time.Unix(1000, 0))
	l := ratelog.New(time.Minute, 10, clk)
	if ok, held := l.Allow("a"); !ok || held != 0 {
		t.Fatalf("first a: %v %d, want allowed with nothing held", ok, held)
	}
	for i := 0; i < 5; i++ {
		if ok, _ := l.Allow("a"); ok {
			t.Fatalf("repeat %d of a within the minute was allowed", i)
		}
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another key was held back by a's limit")
	}
	clk.Advance(time.Minute)
	if ok, held := l.Allow("a"); !ok || held != 5 {
		t.Fatalf("a after a minute: %v held %d, want allowed with 5 held", ok, held)
	}
}

// TestFreshKeysDoNotGetAround pins the overall budget: a flood where
// every line has a new key (a new client address each time) still
// writes at most burst lines an interval.
func TestFreshKeysDoNotGetAround(t *testing.T) {
	clk := sensorstest.NewClock(time.Unix(1000, 0))
	l := ratelog.New(time.Minute, 3, clk)
	allowed := 0
	for i := 0; i < 5000; i++ {
		if ok, _ := l.Allow(fmt.Sprint("addr-", i)); ok {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("%d of 5000 fresh keys allowed in one interval, want 3", allowed)
	}
	clk.Advance(time.Minute)
	ok, held := l.Allow("addr-new")
	if !ok || held != 4997 {
		t.Fatalf("after the interval: %v held %d, want allowed with 4997 held", ok, held)
	}
}

func TestLogSaysSuppressed(t *testing.T) {
	clk := sensorstest.NewClock(time.Unix(1000, 0))
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := ratelog.New(time.Minute, 10, clk)
	for i := 0; i < 4; i++ {
		l.Log(log, slog.LevelWarn, "k", "slow client", "client", i)
	}
	clk.Advance(time.Minute)
	l.Log(log, slog.LevelWarn, "k", "slow client", "client", 9)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "client=0") || !strings.Contains(lines[1], "suppressed=3") {
		t.Fatalf("log:\n%s\nwant two lines, the second with suppressed=3", buf.String())
	}
}
