package localbroker

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
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

// TestIPv6LinkLocalHostLocksOutLAN pins the bug where IPv6 sources were
// counted by their /64: every host of the link shares fe80::/64 (and an
// on-link global prefix), so one host's wrong logins refused everyone's.
// Each address now counts on its own.
func TestIPv6LinkLocalHostLocksOutLAN(t *testing.T) {
	a, err := newAccounts(Opts{MaxLoginFailures: 2, Users: []User{
		{Name: "op", PasswordHash: testHash(t, "pw-op"), Role: RoleOperator},
	}}, func(string, string, string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	a.compare = func(h, p []byte) error {
		if string(p) == "pw-op" {
			return nil
		}
		return bcrypt.ErrMismatchedHashAndPassword
	}
	for _, tc := range []struct{ attacker, victim string }{
		{"fe80::1%eth0", "fe80::2%eth0"},
		{"2001:db8::1", "2001:db8::2"},
	} {
		attacker, victim := net.ParseIP(strings.Split(tc.attacker, "%")[0]), net.ParseIP(strings.Split(tc.victim, "%")[0])
		for range 3 {
			_, _ = a.password(context.Background(), "op", []byte("wrong"), &net.TCPAddr{IP: attacker, Port: 1, Zone: "eth0"}, "test")
		}
		if _, err := a.password(context.Background(), "op", []byte("pw-op"), &net.TCPAddr{IP: attacker, Port: 1}, "test"); !errors.Is(err, ErrTooManyFailures) {
			t.Errorf("%s after its failures: %v, want ErrTooManyFailures", tc.attacker, err)
		}
		if _, err := a.password(context.Background(), "op", []byte("pw-op"), &net.TCPAddr{IP: victim, Port: 1}, "test"); err != nil {
			t.Errorf("%s, another host of the same link, after %s failed: %v", tc.victim, tc.attacker, err)
		}
	}
}
