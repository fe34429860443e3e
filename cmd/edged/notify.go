package main

import (
	"net"
	"os"
)

// sdNotify sends a state line ("READY=1", "STOPPING=1") to systemd when it
// started us with Type=notify; it does nothing elsewhere. The protocol is
// one datagram on $NOTIFY_SOCKET, too small to be worth a dependency.
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' { // abstract socket
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte(state))
}
