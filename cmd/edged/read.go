package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/edged/edged/drivers"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/topics"
)

// cmdRead opens one sensor of a config and prints one raw reading (no
// filters): the quickest check that a device is wired and addressed right.
func cmdRead(args []string, stdout, stderr io.Writer) error {
	path, rest, err := configFlag("read", args, stderr)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return &exitError{code: 2, err: fmt.Errorf("edged read: want exactly one SENSOR_ID after -c FILE")}
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	id := rest[0]
	for _, sc := range cfg.Sensors {
		if sc.ID != id {
			continue
		}
		env := drivers.NewEnv(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		defer env.Close()
		s, err := drivers.Default.OpenSensor(env, sc.Driver, sc.ID, sc.Opts)
		if err != nil {
			return err
		}
		defer s.Halt()
		qs := s.Quantities()
		vals := make([]float64, len(qs))
		ctx, cancel := context.WithTimeout(context.Background(), sc.EffectiveTimeout())
		defer cancel()
		if err := s.Sense(ctx, vals); err != nil {
			return fmt.Errorf("sensor %q (%s): %w", id, s, err)
		}
		now := env.Clock.Now()
		tree := topics.New(cfg.Device.TopicPrefix)
		for i, q := range qs {
			r := sensors.Reading{Sensor: id, Quantity: q, Value: vals[i], Time: now}
			fmt.Fprintf(stdout, "%s %s\n", tree.Sensor(id, q), pipeline.AppendPayload(nil, r))
		}
		return nil
	}
	return &exitError{code: 1, err: fmt.Errorf("edged read: %s has no sensor %q", path, id)}
}
