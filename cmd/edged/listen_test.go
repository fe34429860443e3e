package main

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/localbroker"
)

// TestAPIListenerConnectionCap pins the bug where the HTTP listener took
// any number of connections from one host (each holding a login in the
// bcrypt queue): past httpMaxConnsPerAddr, one is closed at accept, and
// counted for edged_http_connections_refused_total.
func TestAPIListenerConnectionCap(t *testing.T) {
	lns, _, refused, err := listenHTTP(configs.HTTP{Listen: "127.0.0.1:0"}, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln := lns[0]
	accepted := make(chan net.Conn, httpMaxConnsPerAddr+1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	defer func() { ln.Close(); <-done }()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for range httpMaxConnsPerAddr {
		dial()
		c := <-accepted
		t.Cleanup(func() { c.Close() })
	}
	c := dial()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("connection %d from one address: read %v, want EOF (closed at accept)", httpMaxConnsPerAddr+1, err)
	}
	if got, want := refused(), (localbroker.AcceptRefusals{PerAddress: 1}); got != want {
		t.Errorf("refusals %+v, want %+v", got, want)
	}
}
