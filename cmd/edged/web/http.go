package web

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Limits bound what one HTTP client can hold on the daemon: a Pi has
// little memory and few file descriptors to spare for idle or slow ones.
type Limits struct {
	ReadHeader time.Duration // request line and headers
	Read       time.Duration // the whole request, body included
	// Write bounds writing a response. The SSE handler extends it per
	// event with http.ResponseController.SetWriteDeadline.
	Write time.Duration
	// Idle closes a keep-alive connection that waits this long for its
	// next request.
	Idle           time.Duration
	MaxHeaderBytes int
}

// DefaultLimits are the daemon's limits; tests shorten them.
var DefaultLimits = Limits{
	ReadHeader:     10 * time.Second,
	Read:           30 * time.Second,
	Write:          30 * time.Second,
	Idle:           60 * time.Second,
	MaxHeaderBytes: 16 << 10,
}

// newHTTPServer builds the daemon's HTTP server: h behind a Host check
// (see requireHost) with every connection bounded by lim.
func newHTTPServer(h http.Handler, hosts map[string]struct{}, lim Limits) *http.Server {
	return &http.Server{
		Handler:           requireHost(hosts, h),
		ReadHeaderTimeout: lim.ReadHeader,
		ReadTimeout:       lim.Read,
		WriteTimeout:      lim.Write,
		IdleTimeout:       lim.Idle,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
	}
}

// requireHost answers 421 Misdirected Request, with a JSON error, to a
// request whose Host is not one of hosts (lower case, no port; see
// localbroker.OwnHosts) nor the IP address the client connected to. A page from
// another site that re-points its own name at the gateway (DNS
// rebinding) sends that name as Host, so it cannot read the answers.
// There is no configuration key for extra names yet, so a name other
// than these (say a DNS alias on the LAN) is refused; one would be added
// to Opts.Hosts where edged builds the server (e.g. from an http.hosts
// list).
func requireHost(hosts map[string]struct{}, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := canonicalHost(r.Host)
		if _, ok := hosts[host]; ok || isConnAddr(r, host) {
			next.ServeHTTP(w, r)
			return
		}
		writeError(w, http.StatusMisdirectedRequest, fmt.Sprintf("host %q is not a name or address of this gateway; use its IP address, localhost or its host name", r.Host))
	})
}

// canonicalHost is the host of a Host header in the form
// localbroker.OwnHosts uses: lower case, without port, brackets or a
// final dot, IPs in their canonical text.
func canonicalHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if ip := net.ParseIP(h); ip != nil {
		return ip.String()
	}
	return h
}

// isConnAddr reports whether host is the IP address the request came in
// on. It is always this machine's, also when an interface got it after
// start (DHCP), and an IP literal is never a name a rebinding page could
// control.
func isConnAddr(r *http.Request, host string) bool {
	la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
	ip := net.ParseIP(host)
	return ok && ip != nil && ip.Equal(la.IP)
}
