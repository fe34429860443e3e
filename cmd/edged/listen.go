package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"net"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/localbroker"
)

// Connection limits of each HTTP listener, applied at accept (as the
// broker's max_clients, max_clients_per_address and
// max_connects_per_minute are): a browser opens about six connections
// and one event stream, so perAddr leaves room for a few tabs, and one
// host cannot take every connection (and with them every login).
const (
	httpMaxConns          = 128
	httpMaxConnsPerAddr   = 16
	httpConnectsPerMinute = 240
)

// listenHTTP binds the HTTP listeners of c: the plain one and the HTTPS
// one (its certificate and key read now, so a new certificate takes a
// restart), and returns them with the host names requests to them may
// carry, and the count of the connections their gates refused. With
// users configured, a plain listener reachable from the LAN is logged as
// a warning: passwords and tokens would cross it readable.
func listenHTTP(c configs.HTTP, users int, log *slog.Logger) (lns []net.Listener, hosts map[string]struct{}, refused func() localbroker.AcceptRefusals, err error) {
	var conf *tls.Config
	if c.ListenTLS != "" {
		if conf, err = c.TLS.ServerConfig(); err != nil {
			return nil, nil, nil, fmt.Errorf("http: %w", err)
		}
	}
	hosts = map[string]struct{}{}
	var counts []func() localbroker.AcceptRefusals
	for _, l := range []struct {
		addr string
		tls  *tls.Config
	}{{c.Listen, nil}, {c.ListenTLS, conf}} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			for _, o := range lns {
				o.Close()
			}
			return nil, nil, nil, fmt.Errorf("http listener %s: %w", l.addr, err)
		}
		maps.Copy(hosts, localbroker.OwnHosts(ln.Addr()))
		var count func() localbroker.AcceptRefusals
		ln, count = localbroker.GateListener(ln, httpMaxConns, httpMaxConnsPerAddr, httpConnectsPerMinute, log.With("listener", l.addr))
		counts = append(counts, count)
		if l.tls != nil {
			ln = tls.NewListener(ln, l.tls)
		} else if users > 0 && !localbroker.IsLoopback(l.addr) {
			log.Warn("passwords can be read on the LAN: the plain HTTP listener is open beyond this machine while users are configured; use http.listen_tls, or bind http.listen to 127.0.0.1",
				"addr", l.addr)
		}
		lns = append(lns, ln)
	}
	return lns, hosts, func() localbroker.AcceptRefusals {
		var sum localbroker.AcceptRefusals
		for _, count := range counts {
			sum = sum.Add(count())
		}
		return sum
	}, nil
}
