package benchrig

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edged/edged/uplink/uplinktest"
)

// The Go floor is a measuring stick only if it does the bench's work:
// every QoS 1 message reaches every matching subscriber, acknowledged,
// and nothing reaches a subscriber whose filter does not match.
func TestFloorDelivers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ServeFloor(ln) }()
	defer func() {
		ln.Close()
		<-served
	}()
	addr := ln.Addr().String()
	var recs []*Recorder
	for i, filter := range []string{"f/#", "f/+/x", "f/a/x"} {
		s, err := Subscribe(addr, "sub"+string(rune('0'+i)), nil, filter, 1, false)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		recs = append(recs, s.Track("f/a/x"))
	}
	other, err := Subscribe(addr, "other", nil, "g/#", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	stray := other.Track("f/a/x")
	p, err := NewPublisher(addr, "pub", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 500
	if _, err := p.Send("f/a/x", 0, n, 0, 1, 16); err != nil {
		t.Fatal(err) // a PUBACK missing fails within 30 s
	}
	for i, rec := range recs {
		if !rec.WaitDistinct(n, 10*time.Second) {
			t.Errorf("subscriber %d got %d of %d", i, rec.Distinct(), n)
		}
		if r := rec.Report(0, n); r.Lost != 0 || r.Dups != 0 {
			t.Errorf("subscriber %d: %d lost, %d duplicates", i, r.Lost, r.Dups)
		}
	}
	if got := stray.Distinct(); got != 0 {
		t.Errorf("a subscriber of g/# got %d messages of f/a/x", got)
	}
}

// The relay floor is a measuring stick only if it does the live path's
// work: every QoS 1 message is logged, reaches the cloud with edged's
// tags through a window smaller than the burst, and the last PUBACK is
// stamped.
func TestRelayFloorRelaysIntegration(t *testing.T) {
	bin := uplinktest.MosquittoBin(t)
	dir := t.TempDir()
	cloud, err := uplinktest.StartMosquitto(bin, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Stop()
	sub, err := Subscribe(cloud.Addr, "cloud-sub", nil, "r/#", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	rec := sub.Track("r/a")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ServeRelayFloor(ln, cloud.Addr, dir, 4) }()
	defer func() {
		ln.Close()
		<-served
	}()
	p, err := NewPublisher(ln.Addr().String(), "lan", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 1000
	if _, err := p.Send("r/a", 0, n, 0, 1, 64); err != nil {
		t.Fatal(err)
	}
	if !rec.WaitDistinct(n, 20*time.Second) {
		t.Fatalf("the cloud got %d of %d", rec.Distinct(), n)
	}
	if r := rec.Report(0, n); r.Lost != 0 || r.Dups != 0 {
		t.Errorf("%d lost, %d duplicates", r.Lost, r.Dups)
	}
	for i, a := range rec.Arrivals() {
		if a.Tag == "" {
			t.Fatalf("message %d (seq %d) reached the cloud without edged's tags", i, a.Seq)
		}
	}
	log, err := os.ReadFile(filepath.Join(dir, "floor.log"))
	if err != nil {
		t.Fatal(err)
	}
	if want := n * (4 + 8 + 2 + len("r/a") + PayloadSize); len(log) != want {
		t.Errorf("log holds %d bytes, want %d (%d records)", len(log), want, n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		stamp, err := os.ReadFile(filepath.Join(dir, "floor.ack"))
		if err == nil && len(stamp) == 8 && binary.BigEndian.Uint64(stamp) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ack stamp % x, want %d acknowledged", stamp, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
