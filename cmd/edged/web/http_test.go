package web

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// serveHTTP starts newHTTPServer, as the daemon builds it, on a loopback
// port with the given hosts (nil: the listener's own) and limits. Both
// the server and its Serve goroutine end with the test.
func serveHTTP(t *testing.T, hosts map[string]struct{}, lim Limits) (addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if hosts == nil {
		// What localbroker.OwnHosts gives for a loopback listener.
		hosts = map[string]struct{}{"127.0.0.1": {}, "localhost": {}}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	srv := newHTTPServer(mux, hosts, lim)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// TestHTTPIdleKeepAliveClosed pins issue 7: an idle keep-alive connection
// was held open forever (only ReadHeaderTimeout was set, which does not
// cover the wait between requests), so idle clients could pile up.
func TestHTTPIdleKeepAliveClosed(t *testing.T) {
	lim := DefaultLimits
	lim.Idle = 100 * time.Millisecond
	addr := serveHTTP(t, nil, lim)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("status %d, close %v: want a kept-alive 200", resp.StatusCode, resp.Close)
	}
	// The deadline only bounds a failing test; the server should close
	// the connection after lim.Idle.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := br.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read %d bytes, err %v; want EOF (closed by the server after %v idle)", n, err, lim.Idle)
	}
}

// TestHTTPHeaderBytesBounded pins issue 7: request headers were bounded
// only by net/http's 1 MiB default.
func TestHTTPHeaderBytesBounded(t *testing.T) {
	addr := serveHTTP(t, nil, DefaultLimits)
	for _, tc := range []struct {
		size int
		want int
	}{
		{1 << 10, http.StatusOK},
		{64 << 10, http.StatusRequestHeaderFieldsTooLarge},
	} {
		req, err := http.NewRequest("GET", "http://"+addr+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Pad", strings.Repeat("a", tc.size))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%d-byte header: status %d, want %d", tc.size, resp.StatusCode, tc.want)
		}
	}
}

// TestHTTPServerLimits checks that every limit reaches the server, so no
// timeout is left at net/http's "none".
func TestHTTPServerLimits(t *testing.T) {
	srv := newHTTPServer(http.NewServeMux(), nil, DefaultLimits)
	for name, v := range map[string]time.Duration{
		"ReadHeaderTimeout": srv.ReadHeaderTimeout,
		"ReadTimeout":       srv.ReadTimeout,
		"WriteTimeout":      srv.WriteTimeout,
		"IdleTimeout":       srv.IdleTimeout,
	} {
		if v <= 0 || v > 2*time.Minute {
			t.Errorf("%s = %v, want a bound between 0 and 2m", name, v)
		}
	}
	if srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 64<<10 {
		t.Errorf("MaxHeaderBytes = %d, want a bound up to 64KiB", srv.MaxHeaderBytes)
	}
}

// TestHTTPHostChecked pins issue 7: the HTTP server answered any Host, so
// a DNS-rebinding page (evil.example re-pointed at the gateway) could
// read /healthz from the user's browser.
func TestHTTPHostChecked(t *testing.T) {
	addr := serveHTTP(t, nil, DefaultLimits)
	_, port, _ := net.SplitHostPort(addr)
	name, _ := os.Hostname()
	for _, tc := range []struct {
		host string
		want int
	}{
		{addr, http.StatusOK},
		{"127.0.0.1", http.StatusOK},
		{"localhost:" + port, http.StatusOK},
		{"LocalHost.", http.StatusOK},
		{"evil.example", http.StatusMisdirectedRequest},
		{"evil.example:" + port, http.StatusMisdirectedRequest},
		{"127.0.0.1.evil.example", http.StatusMisdirectedRequest},
		{"10.1.2.3:" + port, http.StatusMisdirectedRequest},
		// Bound to loopback only: the machine's name reaches another
		// interface, not this listener.
		{name + ".local", http.StatusMisdirectedRequest},
	} {
		req, err := http.NewRequest("GET", "http://"+addr+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tc.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Host %q: status %d, want %d (%s)", tc.host, resp.StatusCode, tc.want, body)
			continue
		}
		if tc.want == http.StatusOK {
			continue
		}
		var e struct{ Error string }
		if err := json.Unmarshal(body, &e); err != nil || e.Error == "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("Host %q: body %q (%s), want JSON {\"error\": ...}", tc.host, body, resp.Header.Get("Content-Type"))
		}
	}
}

// TestHTTPHostOfTheConnection checks that the address a client connected
// to is always a valid Host, even if it was not in the set computed at
// start (an interface that got its address from DHCP later).
func TestHTTPHostOfTheConnection(t *testing.T) {
	addr := serveHTTP(t, map[string]struct{}{}, DefaultLimits)
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("Host %s (the connection's own address): status %d, want 200", addr, resp.StatusCode)
	}
}

// TestHTTPEmptyHostRefused checks a request with an empty Host header
// (which http.Client cannot send: it fills in the URL's host).
func TestHTTPEmptyHostRefused(t *testing.T) {
	addr := serveHTTP(t, nil, DefaultLimits)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("empty Host: status %d, want 421", resp.StatusCode)
	}
}
