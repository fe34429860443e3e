package main

import (
	"io"
	"net/http"
	"testing"
)

// TestHealthzHostCheckedIntegration checks the daemon's own wiring: the
// HTTP server of `edged run` answers /healthz by its address and refuses
// a foreign Host.
func TestHealthzHostCheckedIntegration(t *testing.T) {
	bin := edgedBinary(t)
	cfg, _, _, httpAddr := simConfig(t)
	d := startDaemon(t, bin, cfg)
	waitListening(t, d, httpAddr)
	for host, want := range map[string]int{
		httpAddr:       http.StatusOK,
		"evil.example": http.StatusMisdirectedRequest,
	} {
		req, err := http.NewRequest("GET", "http://"+httpAddr+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %q: status %d, want %d (%s)", host, resp.StatusCode, want, body)
		}
	}
}
