package uplink

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecretFilesReadableByOthersRefused pins issue 7: a password_file
// (or TLS key_file) that every user of the machine may read was accepted
// silently. Group-readable stays allowed: a service often reads its
// secrets through its group.
func TestSecretFilesReadableByOthersRefused(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	writeCert(t, dir, "client", &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gh-01"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
	}, nil, nil)
	pw := filepath.Join(dir, "cloud.pass")
	if err := os.WriteFile(pw, []byte("Zq9xW7kP\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "client.key")
	for _, tc := range []struct {
		file string
		mode os.FileMode
		ok   bool
	}{
		{pw, 0o600, true},
		{pw, 0o640, true},
		{pw, 0o400, true},
		{pw, 0o644, false},
		{pw, 0o604, false},
		{key, 0o600, true},
		{key, 0o640, true},
		{key, 0o644, false},
	} {
		t.Run(fmt.Sprintf("%s %04o", filepath.Base(tc.file), uint32(tc.mode)), func(t *testing.T) {
			if err := os.Chmod(tc.file, tc.mode); err != nil {
				t.Fatal(err)
			}
			o := testOpts("127.0.0.1:1")
			o.URL = "mqtts://127.0.0.1:1"
			o.PasswordFile = pw
			o.TLS = TLS{CertFile: filepath.Join(dir, "client.pem"), KeyFile: key}
			// The other file is private, so only tc.file can be refused.
			other := key
			if tc.file == key {
				other = pw
			}
			if err := os.Chmod(other, 0o600); err != nil {
				t.Fatal(err)
			}
			u, err := New(o, t.TempDir(), "gh-01", nil, nil)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if err := u.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				_ = u.Close(context.Background())
				t.Fatalf("a secret file with mode %04o was accepted", uint32(tc.mode))
			}
			t.Log(err)
			want := fmt.Sprintf("%s: mode %04o is readable by others; chmod 600", tc.file, uint32(tc.mode))
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		})
	}
}
