package main

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/edged/edged/configs"
)

// boundAt is a listener bound at an address, as far as dashboardURL
// looks: tests bind nothing beyond loopback.
type boundAt struct {
	net.Listener
	addr *net.TCPAddr
}

func (b boundAt) Addr() net.Addr { return b.addr }

// TestDashboardURL: the link Home Assistant shows is one a browser on
// the LAN can open, or none.
func TestDashboardURL(t *testing.T) {
	listen := func(addr string) net.Listener {
		ap, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return boundAt{addr: ap}
	}
	port := func(ln net.Listener) string { return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) }
	host, err := os.Hostname()
	if err != nil || host == "" || host == "localhost" {
		t.Skip("no host name")
	}
	host = strings.ToLower(host)

	loop := listen("127.0.0.1:8080")
	if got := dashboardURL(configs.HTTP{Listen: "127.0.0.1:0"}, []net.Listener{loop}); got != "" {
		t.Errorf("loopback listener: %q, want none (a browser elsewhere cannot reach it)", got)
	}
	all := listen("0.0.0.0:8080")
	if got, want := dashboardURL(configs.HTTP{Listen: "0.0.0.0:0"}, []net.Listener{all}), "http://"+host+".local:"+port(all)+"/"; got != want {
		t.Errorf("0.0.0.0: %q, want %q", got, want)
	}
	tls := listen("[::]:8443")
	if got, want := dashboardURL(configs.HTTP{Listen: "127.0.0.1:0", ListenTLS: "0.0.0.0:0"}, []net.Listener{loop, tls}), "https://"+host+".local:"+port(tls)+"/"; got != want {
		t.Errorf("with HTTPS: %q, want %q", got, want)
	}
	lan := listen("192.168.1.20:8080")
	if got, want := dashboardURL(configs.HTTP{Listen: "192.168.1.20:8080"}, []net.Listener{lan}), "http://192.168.1.20:8080/"; got != want {
		t.Errorf("LAN address: %q, want %q", got, want)
	}
	if got := dashboardURL(configs.HTTP{}, nil); got != "" {
		t.Errorf("no HTTP: %q", got)
	}
}
