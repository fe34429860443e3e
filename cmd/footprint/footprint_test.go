package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOverBudget(t *testing.T) {
	for _, tc := range []struct {
		m    result
		want []string
	}{
		{result{maxRSS: 16_500_000, cpuPct: 0.15}, nil},
		{result{maxRSS: maxIdleRSS, cpuPct: 0.499}, nil},
		{result{maxRSS: maxIdleRSS + 1, cpuPct: 0.1}, []string{"RSS 20.0 MB over the budget of 20 MB"}},
		{result{maxRSS: 1, cpuPct: maxIdleCPU}, []string{"CPU 0.500 % of a core, the budget is under 0.5 %"}},
	} {
		got := overBudget(tc.m)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("overBudget(%+v) = %q, want %q", tc.m, got, tc.want)
		}
	}
}

func TestARMOverBudget(t *testing.T) {
	dir := t.TempDir()
	for size, wantOver := range map[int64]bool{maxARMBytes: false, maxARMBytes + 1: true} {
		path := filepath.Join(dir, "edged")
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
		got, over, err := armOverBudget(path)
		if err != nil || got != size || (over != "") != wantOver {
			t.Errorf("armOverBudget(%d bytes) = %d, %q, %v; want over: %v", size, got, over, err, wantOver)
		}
	}
}
