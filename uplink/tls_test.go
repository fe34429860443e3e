package uplink

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/uplink/uplinktest"
)

// writeCert makes a key pair signed by parent (self-signed when parent is
// nil) and writes name.pem and name.key into dir.
func writeCert(t *testing.T, dir, name string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(name+".pem", "CERTIFICATE", der)
	write(name+".key", "EC PRIVATE KEY", kb)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMutualTLSIntegration runs the uplink against a Mosquitto TLS
// listener that requires a client certificate (as AWS IoT Core does), and
// checks that server verification is on by default: without the private
// CA the connection is refused.
func TestMutualTLSIntegration(t *testing.T) {
	bin := mosquittoBin(t)
	dir := t.TempDir()
	// Mosquitto started as root drops to its own user before it reads
	// the certificates: let it in. Test keys only.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	ca, caKey := writeCert(t, dir, "ca", &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edged test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	writeCert(t, dir, "server", &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, ca, caKey)
	writeCert(t, dir, "client", &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "gh-01"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, ca, caKey)
	// The uplink refuses a private key that others may read; Mosquitto's
	// server.key above must stay readable for its dropped-privilege user.
	if err := os.Chmod(filepath.Join(dir, "client.key"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	// The TLS listener first, then a plain one for the collector; the
	// start waits for both (issue 14: the collector dialled the second
	// before mosquitto had opened it).
	mq, err := uplinktest.StartMosquitto(bin, t.TempDir(), fmt.Sprintf(
		"cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true",
		p("ca.pem"), p("server.pem"), p("server.key")), "")
	if err != nil {
		t.Fatal(err)
	}
	plain := mq.Addrs[1]
	t.Cleanup(func() {
		mq.Stop()
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", mq.Output())
		}
	})
	col, err := uplinktest.Collect(plain, "cloud/#")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(col.Close)

	t.Run("verification on by default", func(t *testing.T) {
		o := testOpts(mq.Addr)
		o.URL = "mqtts://" + mq.Addr
		o.TLS = TLS{CertFile: p("client.pem"), KeyFile: p("client.key")} // no ca_file: system roots
		var logs syncLog
		u, err := New(o, t.TempDir(), "gh-01", slog.New(slog.NewTextHandler(&logs, nil)), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close(context.Background())
		capture(t, u, "t/a", 1)
		u.Start()
		waitFor(t, func() bool { return strings.Contains(logs.String(), "cannot connect") }, "a refused connection")
		if !strings.Contains(logs.String(), "certificate") || u.Stats().Connects != 0 {
			t.Fatalf("connected to a server the system roots do not vouch for:\n%s", logs.String())
		}
	})
	t.Run("mutual TLS with the private CA", func(t *testing.T) {
		o := testOpts(mq.Addr)
		o.URL = "mqtts://" + mq.Addr
		o.TLS = TLS{CAFile: p("ca.pem"), CertFile: p("client.pem"), KeyFile: p("client.key")}
		u := openUplink(t, o, t.TempDir())
		capture(t, u, "t/a", 100)
		u.Start()
		if !col.WaitDistinct(100, 20*time.Second) {
			t.Fatalf("only %d of 100 arrived over mutual TLS", col.Distinct())
		}
		checkDelivery(t, col.Messages(), seqs(1, 100))
	})
}
