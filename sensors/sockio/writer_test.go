package sockio

import (
	"bytes"
	"crypto/tls"
	"io"
	"testing"
	"time"
)

// Try writes what the socket takes, in order, and allocates nothing.
func TestTryWritesWithoutAllocating(t *testing.T) {
	client, server := tcpPair(t, false, false)
	w := For(client)
	if w == nil {
		t.Fatal("no Writer for a TCP connection")
	}
	msg := []byte("0123456789abcdef")
	const runs = 100
	allocs := testing.AllocsPerRun(runs, func() {
		if n := w.Try(msg); n != len(msg) {
			t.Fatalf("Try wrote %d of %d", n, len(msg))
		}
	})
	if allocs != 0 {
		t.Errorf("Try allocates %.1f times a call", allocs)
	}
	got := make([]byte, (runs+1)*len(msg)) // AllocsPerRun runs once more to warm up
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if want := bytes.Repeat(msg, runs+1); !bytes.Equal(got, want) {
		t.Error("the bytes read are not the bytes written")
	}
}

// A socket whose peer does not read takes part of a write, then
// nothing, and Try returns at once each time.
func TestTryNeverWaits(t *testing.T) {
	client, _ := tcpPair(t, false, false)
	w := For(client)
	big := make([]byte, 1<<20)
	total, zero := 0, false
	for range 256 { // the kernel's buffers hold a few MiB at most
		n := w.Try(big)
		total += n
		if n == 0 {
			zero = true
			break
		}
	}
	if !zero || total == 0 {
		t.Fatalf("wrote %d bytes, a full buffer seen: %v", total, zero)
	}
	client.Close()
	if n := w.Try(big); n != 0 {
		t.Errorf("Try on a closed connection wrote %d", n)
	}
}

func TestForNonTCP(t *testing.T) {
	client, _ := tcpPair(t, false, false)
	if w := For(tls.Client(client, &tls.Config{})); w != nil {
		t.Error("a Writer for a TLS connection: it would bypass the encryption")
	}
}
