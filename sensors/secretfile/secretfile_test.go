package secretfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadRefusesFilesOthersMayRead: a secret every user of the machine
// may read is as good as public; group-readable stays allowed, as a
// service often reads its secrets through its group.
func TestReadRefusesFilesOthersMayRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte("Zq9xW7kP\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o600, true}, {0o640, true}, {0o400, true}, {0o644, false}, {0o604, false}} {
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		b, err := Read("password_file", p)
		if tc.ok {
			if err != nil || string(b) != "Zq9xW7kP\n" {
				t.Errorf("mode %04o: %q, %v", uint32(tc.mode), b, err)
			}
			continue
		}
		want := fmt.Sprintf("password_file %s: mode %04o is readable by others; chmod 600", p, uint32(tc.mode))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("mode %04o: err %v, want %q", uint32(tc.mode), err, want)
		}
	}
	if _, err := Read("key_file", filepath.Join(t.TempDir(), "nope")); err == nil || !strings.HasPrefix(err.Error(), "key_file: ") {
		t.Errorf("missing file: %v", err)
	}
}

// TestReadAcceptsGroupOrOtherWritable pins the bug where a secret file
// that the group or everyone may write (0622, 0602) was accepted: anyone
// who may write it can swap in their own password hash or key.
func TestReadAcceptsGroupOrOtherWritable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o622, 0o602, 0o620} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("password_file %s: mode %04o is writable by group or others; chmod 600", p, uint32(mode))
		if _, err := Read("password_file", p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("mode %04o: err %v, want %q", uint32(mode), err, want)
		}
	}
}
