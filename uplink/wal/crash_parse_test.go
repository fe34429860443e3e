package wal

import "testing"

func TestParseCrash(t *testing.T) {
	for _, tc := range []struct {
		in    string
		point string
		hit   int64
		bad   bool
	}{
		{"append@1", CrashAppend, 1, false},
		{"ack-live@129", CrashAckLive, 129, false},
		{"", "", 0, true},
		{"append", "", 0, true},
		{"append@0", "", 0, true},
		{"append@x", "", 0, true},
		{"fsnyc@2", "", 0, true},
	} {
		point, hit, err := ParseCrash(tc.in)
		if point != tc.point || hit != tc.hit || (err != nil) != tc.bad {
			t.Errorf("ParseCrash(%q) = %q, %d, %v", tc.in, point, hit, err)
		}
	}
}
