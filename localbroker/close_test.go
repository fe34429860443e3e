package localbroker

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// TestCloseWhileClientsLeave: Close ends every client's session while
// clients are leaving on their own. mochi's own listener shutdown takes
// the clients' read lock twice (Clients.GetByListener calls Len), so a
// client whose Delete waits for the write lock between the two
// deadlocked Close for good (make test hung 8 minutes in Close; the
// goroutine dump showed both sides). That window is a few instructions
// wide and this test does not hit it on demand (600 rounds against the
// old code passed): it checks that the replacement, Broker.
// disconnectListener, still ends each remaining session with DISCONNECT
// 0x8B and that Close returns while clients drop their sockets.
func TestCloseWhileClientsLeave(t *testing.T) {
	const rounds, clients = 40, 8
	for r := range rounds {
		b := startBroker(t, nil)
		conns := make([]net.Conn, clients)
		for i := range conns {
			c, err := net.Dial("tcp", b.MQTTAddr())
			if err != nil {
				t.Fatal(err)
			}
			conns[i] = c
			cp := packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: fmt.Sprintf("c%d-%d", r, i), CleanStart: true, KeepAlive: 30, Properties: &packets.Properties{}}
			if _, err := cp.WriteTo(c); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := packets.ReadPacket(c); err != nil {
				t.Fatalf("round %d client %d: no CONNACK: %v", r, i, err)
			}
		}
		var wg sync.WaitGroup
		for _, c := range conns[:clients/2] {
			wg.Go(func() { _ = c.Close() })
		}
		done := make(chan struct{})
		go func() { b.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Close did not return in 10 s while clients left", r)
		}
		wg.Wait()
		// The clients still there were told why: DISCONNECT 0x8B.
		for i, c := range conns[clients/2:] {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			p, err := packets.ReadPacket(c)
			if d, ok := p.Content.(*packets.Disconnect); err != nil || !ok || d.ReasonCode != packets.DisconnectServerShuttingDown {
				t.Fatalf("round %d client %d: got %v (%v), want DISCONNECT 0x8B", r, clients/2+i, p, err)
			}
		}
		for _, c := range conns {
			_ = c.Close()
		}
	}
}
