package sensors_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/edged/edged/sensors"
)

func TestLogOrDiscard(t *testing.T) {
	var b strings.Builder
	log := slog.New(slog.NewTextHandler(&b, nil))
	if got := sensors.LogOrDiscard(log); got != log {
		t.Error("LogOrDiscard replaced a logger it was given")
	}
	d := sensors.LogOrDiscard(nil)
	if d == nil || d.Enabled(context.Background(), slog.LevelError) {
		t.Errorf("LogOrDiscard(nil) = %v, want a logger that drops everything", d)
	}
	d.Error("dropped")
}
