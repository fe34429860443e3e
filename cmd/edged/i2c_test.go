package main

import (
	"strings"
	"testing"
)

func TestI2CScanCommand(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr []string
	}{
		{"missing bus names it and the fix", []string{"i2c", "scan", "--bus", "edged-no-such-bus"}, 1,
			[]string{`edged i2c scan: i2cbus: no such bus "edged-no-such-bus"`, "raspi-config nonint do_i2c 0", "dtparam=i2c_arm=on"}},
		{"single-dash flag", []string{"i2c", "scan", "-bus=edged-no-such-bus"}, 1, []string{`"edged-no-such-bus"`}},
		{"no subcommand", []string{"i2c"}, 2, []string{"edged i2c scan [--bus NAME]"}},
		{"unknown subcommand", []string{"i2c", "dump"}, 2, []string{"edged i2c scan [--bus NAME]"}},
		{"stray argument", []string{"i2c", "scan", "1"}, 2, []string{`unexpected argument "1"`}},
		{"unknown flag", []string{"i2c", "scan", "--speed", "400k"}, 2, []string{"flag provided but not defined: -speed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			if code := realMain(tt.args, &stdout, &stderr); code != tt.code {
				t.Fatalf("exit %d, want %d\nstderr: %s", code, tt.code, stderr.String())
			}
			for _, want := range tt.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %s", stdout.String())
			}
		})
	}
	var stdout, stderr strings.Builder
	if realMain([]string{"help"}, &stdout, &stderr); !strings.Contains(stdout.String(), "edged i2c scan [--bus NAME]") {
		t.Errorf("usage lacks the i2c scan line:\n%s", stdout.String())
	}
}
