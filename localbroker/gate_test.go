package localbroker

import (
	"net"
	"testing"
	"time"
)

func TestGate(t *testing.T) {
	now := time.Unix(1000, 0)
	g := newGate(5, 2, 60, func() time.Time { return now }) // 5 in all, 2 per address, 1 a second
	a := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 40000}
	b := &net.TCPAddr{IP: net.ParseIP("192.0.2.2"), Port: 40000}
	admit := func(addr net.Addr, want string) func() {
		t.Helper()
		release, refused := g.admit(addr)
		if refused != want {
			t.Fatalf("admit %v: refused %q, want %q", addr, refused, want)
		}
		return release
	}
	ra1 := admit(a, "")
	admit(a, "")
	admit(a, refusedPerAddr) // two open from a
	ra1()
	ra1()                 // twice is once
	admit(a, refusedRate) // a slot is free, but a's burst of 2 is spent
	now = now.Add(time.Second)
	admit(a, "") // a second later one token is back
	rb := admit(b, "")
	admit(b, "")
	admit(&net.TCPAddr{IP: net.ParseIP("192.0.2.3")}, "")
	admit(&net.TCPAddr{IP: net.ParseIP("192.0.2.4")}, refusedTotal) // 2 + 2 + 1 open
	rb()
	admit(&net.TCPAddr{IP: net.ParseIP("192.0.2.4")}, "")
}

// TestGateForgetsIdleAddresses keeps a flood of source addresses from
// growing the table without bound.
func TestGateForgetsIdleAddresses(t *testing.T) {
	now := time.Unix(1000, 0)
	g := newGate(10, 2, 60, func() time.Time { return now })
	for i := range maxAddrs + 100 {
		release, refused := g.admit(&net.TCPAddr{IP: net.IPv4(10, byte(i>>16), byte(i>>8), byte(i))})
		if refused != "" {
			t.Fatalf("address %d refused: %s", i, refused)
		}
		release()
		now = now.Add(2 * time.Second) // its token is back before the next one comes
	}
	if n := len(g.addrs); n > maxAddrs {
		t.Fatalf("%d addresses remembered, want at most %d", n, maxAddrs)
	}
}
