// Package secretfile reads the files that hold secrets: passwords,
// password hashes, private keys. It owns one rule, kept in one place for
// every package that reads such a file: a file every user of the machine
// may read is refused, since the secret would be as good as public.
//
// It only reads files; what the secret is for is the caller's business.
package secretfile

import (
	"crypto/tls"
	"fmt"
	"io"
	"os"
)

// Read reads a file holding a secret; key names the config key in
// errors (e.g. "password_file"). It refuses a file that others may read,
// or that the group or others may write.
// Group-readable is fine, so a root-owned file can be shared with the
// service through its group. The mode is taken from the open file, so it
// is the mode of what is read.
func Read(key, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if m := fi.Mode().Perm(); m&0o004 != 0 {
		return nil, fmt.Errorf("%s %s: mode %04o is readable by others; chmod 600 (or 640 with the group of the service)", key, path, uint32(m))
	} else if m&0o022 != 0 {
		// Whoever may write the file may put in their own hash or key.
		return nil, fmt.Errorf("%s %s: mode %04o is writable by group or others; chmod 600 (or 640 with the group of the service)", key, path, uint32(m))
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return b, nil
}

// KeyPair loads a PEM certificate (chain) and its private key, the key
// through Read; errors name the keys cert_file and key_file.
func KeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cert_file: %w", err)
	}
	keyPEM, err := Read("key_file", keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cert_file %s and key_file %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}
