package uplink

// Hostile review: handshake (net.Dialer + sockio.Wrap + tls.Client) must
// behave as the tls.Dialer it replaced.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/edged/edged/sensors/sockio"
)

func reviewServer(t *testing.T, network, addr string, names []string, ips []net.IP) (net.Listener, *x509.CertPool, chan string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "review"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), DNSNames: names, IPAddresses: ips,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skip(err)
	}
	sni := make(chan string, 16)
	conf := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) { sni <- h.ServerName; return nil, nil }}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, conf)
				_ = tc.Handshake()
				_, _ = io.Copy(io.Discard, tc)
				tc.Close()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln, pool, sni
}

func dialOld(ctx context.Context, addr string, conf *tls.Config) (net.Conn, error) {
	d := tls.Dialer{Config: conf}
	return d.DialContext(ctx, "tcp", addr)
}

func dialNew(ctx context.Context, addr string, conf *tls.Config) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if conf.ServerName == "" { // as the uplink's TLS config names it (uplink.go): the URL's host
		host, _, _ := net.SplitHostPort(addr)
		conf = conf.Clone()
		conf.ServerName = host
	}
	return handshake(ctx, sockio.Wrap(nc), conf)
}

func TestReviewHandshakeMatchesTLSDialer(t *testing.T) {
	for _, tc := range []struct {
		name, network, listen, host string
		names                       []string
		ips                         []net.IP
		serverName                  string
	}{
		{"ipv4", "tcp4", "127.0.0.1:0", "127.0.0.1", nil, []net.IP{net.ParseIP("127.0.0.1")}, ""},
		{"ipv6", "tcp6", "[::1]:0", "::1", nil, []net.IP{net.ParseIP("::1")}, ""},
		{"hostname", "tcp4", "127.0.0.1:0", "localhost", []string{"localhost"}, nil, ""},
		{"wrong-name", "tcp4", "127.0.0.1:0", "localhost", []string{"other.example"}, nil, ""},
		{"explicit", "tcp4", "127.0.0.1:0", "127.0.0.1", []string{"cloud.example"}, nil, "cloud.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, pool, sni := reviewServer(t, tc.network, tc.listen, tc.names, tc.ips)
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			addr := net.JoinHostPort(tc.host, port)
			conf := &tls.Config{RootCAs: pool, ServerName: tc.serverName, MinVersion: tls.VersionTLS12}
			var res [2]string
			for i, dial := range []func(context.Context, string, *tls.Config) (net.Conn, error){dialOld, dialNew} {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c, err := dial(ctx, addr, conf)
				cancel()
				var s string
				if err != nil {
					s = "err: " + err.Error()
				} else {
					s = fmt.Sprintf("ok, client ServerName=%q, server saw SNI %q", c.(*tls.Conn).ConnectionState().ServerName, <-sni)
					c.Close()
				}
				if err != nil {
					select {
					case v := <-sni:
						s += fmt.Sprintf(" (server saw SNI %q)", v)
					case <-time.After(100 * time.Millisecond):
					}
				}
				res[i] = s
			}
			t.Logf("tls.Dialer: %s\nhandshake:  %s", res[0], res[1])
			if res[0] != res[1] {
				t.Errorf("differ")
			}
			if conf.ServerName != tc.serverName {
				t.Errorf("the caller's config was changed: ServerName %q", conf.ServerName)
			}
		})
	}
}

// A server that accepts TCP and never answers the ClientHello: both end
// at the context's deadline with the same error and close the socket.
func TestReviewHandshakeTimeoutMatchesTLSDialer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed := make(chan error, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err := io.Copy(io.Discard, c) // returns at the client's close
				closed <- err
				c.Close()
			}()
		}
	}()
	conf := &tls.Config{ServerName: "x", InsecureSkipVerify: true}
	var res [2]string
	for i, dial := range []func(context.Context, string, *tls.Config) (net.Conn, error){dialOld, dialNew} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		_, err := dial(ctx, ln.Addr().String(), conf)
		cancel()
		took := time.Since(start)
		cerr := <-closed
		res[i] = fmt.Sprintf("%v (deadline %v) peer-closed-err=%v", err, errors.Is(err, context.DeadlineExceeded), cerr)
		if took > 2*time.Second {
			t.Errorf("dial %d took %v", i, took)
		}
	}
	t.Logf("tls.Dialer: %s\nhandshake:  %s", res[0], res[1])
	if res[0] != res[1] {
		t.Errorf("differ")
	}
}
