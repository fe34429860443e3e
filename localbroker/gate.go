package localbroker

import (
	"net"
	"sync"
	"time"
)

// gate admits LAN connections at accept, before a byte of MQTT is read:
// at most maxTotal open at once over every listener (so connections that
// never send CONNECT count against max_clients too), at most perAddr from
// one source address, and at most rate new ones a minute from one
// address (a token bucket holding perAddr). A refused connection is
// closed at once.
type gate struct {
	maxTotal, perAddr int
	rate              float64 // tokens per second
	now               func() time.Time

	mu    sync.Mutex
	total int
	addrs map[string]*addrState
}

type addrState struct {
	open   int
	tokens float64
	at     time.Time // when tokens was last brought up to date
}

// Why a connection was refused; the words go into the log.
const (
	refusedTotal   = "max_clients reached"
	refusedPerAddr = "max_clients_per_address reached"
	refusedRate    = "max_connects_per_minute reached for this address"
)

// maxAddrs bounds the per-address table; idle entries with a full bucket
// are dropped past it.
const maxAddrs = 4096

func newGate(maxTotal, perAddr, perMinute int, now func() time.Time) *gate {
	return &gate{maxTotal: maxTotal, perAddr: perAddr, rate: float64(perMinute) / 60, now: now, addrs: map[string]*addrState{}}
}

// admit takes a slot for a connection from remote. It returns a release
// func (call it once, when the connection has ended), or "" and the
// reason it was refused.
func (g *gate) admit(remote net.Addr) (release func(), refused string) {
	host := sourceOf(remote)
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.bucket(host)
	switch {
	case g.total >= g.maxTotal:
		return nil, refusedTotal
	case a.open >= g.perAddr:
		return nil, refusedPerAddr
	case a.tokens < 1:
		return nil, refusedRate
	}
	a.tokens--
	a.open++
	g.total++
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			a.open--
			g.total--
			g.mu.Unlock()
		})
	}, ""
}

func (a *addrState) refill(now time.Time, rate, max float64) {
	if d := now.Sub(a.at).Seconds(); d > 0 {
		a.tokens = min(max, a.tokens+d*rate)
	}
	a.at = now
}

// prune forgets addresses with nothing open and a full bucket: they are
// as if never seen.
func (g *gate) prune(now time.Time) {
	for h, a := range g.addrs {
		a.refill(now, g.rate, float64(g.perAddr))
		if a.open == 0 && a.tokens >= float64(g.perAddr) {
			delete(g.addrs, h)
		}
	}
}

// sourceOf is what the per-address limits count by: the IP address,
// IPv6 included. Counting IPv6 by its /64 let one host lock out every
// other of its link (all share fe80::/64, and the on-link global
// prefix). The trade-off: a host that picks many addresses of its prefix
// gets a budget for each; max_clients (total) still bounds connections,
// and the bcrypt queue bounds what the logins can cost.
func sourceOf(a net.Addr) string {
	return hostOf(a)
}

// hostOf is the source address without its port.
func hostOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// take takes a token from remote's bucket and reports whether it had
// one. The failed-login limit takes before a check and refunds a success
// (see refund), so checks in flight count against the budget: charging
// only after a check would let any number of concurrent ones through.
func (g *gate) take(remote net.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if a := g.bucket(sourceOf(remote)); a.tokens >= 1 {
		a.tokens--
		return true
	}
	return false
}

// refund gives back a token take took, for a check that succeeded.
func (g *gate) refund(remote net.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.bucket(sourceOf(remote))
	a.tokens = min(float64(g.perAddr), a.tokens+1)
}

// bucket returns host's state with its tokens brought up to date; the
// caller holds g.mu.
func (g *gate) bucket(host string) *addrState {
	now := g.now()
	a := g.addrs[host]
	if a == nil {
		if len(g.addrs) >= maxAddrs {
			g.prune(now)
		}
		a = &addrState{tokens: float64(g.perAddr), at: now}
		g.addrs[host] = a
	}
	a.refill(now, g.rate, float64(g.perAddr))
	return a
}
