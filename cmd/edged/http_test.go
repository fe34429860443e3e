package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serveHTTP starts newHTTPServer, as the daemon builds it, on a loopback
// port with the given limits. Both the server and its Serve goroutine end
// with the test.
func serveHTTP(t *testing.T, lim httpLimits) (addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	srv := newHTTPServer(mux, lim)
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
	lim := defaultHTTPLimits
	lim.Idle = 100 * time.Millisecond
	addr := serveHTTP(t, lim)
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
	addr := serveHTTP(t, defaultHTTPLimits)
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
	srv := newHTTPServer(http.NewServeMux(), defaultHTTPLimits)
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
