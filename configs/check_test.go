package configs

import (
	"strings"
	"testing"
)

func TestValidID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"air", true}, {"gh-01", true}, {"soil_2", true}, {"0", true}, {"9lives", true},
		{"", false}, {"Air", false}, {"-air", false}, {"_air", false}, {"air/1", false},
		{"air 1", false}, {"air+", false}, {"air#", false}, {"é", false}, {strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
	}
	for _, tt := range tests {
		if got := validID(tt.id); got != tt.ok {
			t.Errorf("validID(%q) = %v, want %v", tt.id, got, tt.ok)
		}
	}
}

func TestCheckPrefix(t *testing.T) {
	tests := []struct{ prefix, want string }{
		{"edged/gh-01", ""},
		{"farm/north/gh-01", ""},
		{"gh", ""},
		{"edged/+", "wildcard"},
		{"edged/#", "wildcard"},
		{"/edged", "starts with '/'"},
		{"$SYS/edged", "starts with '$'"},
		{"edged//gh", "empty level"},
		{"edged/", "empty level"},
		{"edged/\x00", "NUL"},
	}
	for _, tt := range tests {
		err := checkPrefix(tt.prefix)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("checkPrefix(%q): %v", tt.prefix, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("checkPrefix(%q) = %v, want an error containing %q", tt.prefix, err, tt.want)
		}
	}
}
