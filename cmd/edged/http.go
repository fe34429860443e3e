package main

import (
	"net/http"
	"time"
)

// httpLimits bound what one HTTP client can hold on the daemon: a Pi has
// little memory and few file descriptors to spare for idle or slow ones.
type httpLimits struct {
	ReadHeader time.Duration // request line and headers
	Read       time.Duration // the whole request, body included
	// Write bounds writing a response. A streaming handler (SSE, once
	// there is one) must extend it per event with
	// http.ResponseController.SetWriteDeadline.
	Write time.Duration
	// Idle closes a keep-alive connection that waits this long for its
	// next request.
	Idle           time.Duration
	MaxHeaderBytes int
}

// defaultHTTPLimits are the daemon's limits; tests shorten them.
var defaultHTTPLimits = httpLimits{
	ReadHeader:     10 * time.Second,
	Read:           30 * time.Second,
	Write:          30 * time.Second,
	Idle:           60 * time.Second,
	MaxHeaderBytes: 16 << 10,
}

// newHTTPServer builds the daemon's HTTP server: h with every connection
// bounded by lim.
func newHTTPServer(h http.Handler, lim httpLimits) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.ReadHeader,
		ReadTimeout:       lim.Read,
		WriteTimeout:      lim.Write,
		IdleTimeout:       lim.Idle,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
	}
}
