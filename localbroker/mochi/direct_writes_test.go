// Test of edged's DirectWrites patch (see PATCHES.md).

package mqtt

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"
)

// With DirectWrites, publishToClient writes the delivery itself: no
// WriteLoop runs here, so only a direct write can deliver it, and
// nothing is left in the outbound queue.
func TestPublishToClientDirectWrites(t *testing.T) {
	s := newServer()
	s.Options.DirectWrites = true
	r, w := net.Pipe()
	defer r.Close()
	cl := s.NewClient(w, "tcp1", "direct", false) // no WriteLoop started
	s.Clients.Add(cl)

	want := packets.TPacketData[packets.Publish].Get(packets.TPublishBasic)
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, len(want.RawBytes))
		_, _ = io.ReadFull(r, buf)
		got <- buf
	}()
	_, err := s.publishToClient(cl, packets.Subscription{Filter: "a/b/c"}, *want.Packet)
	require.NoError(t, err)
	require.Empty(t, cl.State.outbound, "queued for a WriteLoop")
	select {
	case b := <-got:
		require.Equal(t, want.RawBytes, b)
	case <-time.After(5 * time.Second):
		t.Fatal("not delivered")
	}
}

// Without it, the delivery waits in the outbound queue for WriteLoop, as
// upstream does.
func TestPublishToClientQueuedWithoutDirectWrites(t *testing.T) {
	s := newServer()
	r, w := net.Pipe()
	defer r.Close()
	cl := s.NewClient(w, "tcp1", "queued", false)
	s.Clients.Add(cl)
	want := packets.TPacketData[packets.Publish].Get(packets.TPublishBasic)
	_, err := s.publishToClient(cl, packets.Subscription{Filter: "a/b/c"}, *want.Packet)
	require.NoError(t, err)
	require.Len(t, cl.State.outbound, 1)
}
