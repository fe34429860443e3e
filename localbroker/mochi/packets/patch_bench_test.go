package packets

import (
	"bytes"
	"testing"
)

// BenchmarkPatchPublishEncode encodes the QoS 1 MQTT 5 PUBLISH a sensor
// sends, without properties: patch 10 (PATCHES.md) checks a property is
// set before it looks its validity up in validPacketProperties, two map
// lookups for each of 27 properties on every encode before it.
//
//	go test -run '^$' -bench PatchPublishEncode ./localbroker/mochi/packets
func BenchmarkPatchPublishEncode(b *testing.B) {
	pk := Packet{
		FixedHeader:     FixedHeader{Type: Publish, Qos: 1},
		ProtocolVersion: 5,
		TopicName:       "bench/sim-01/sensor/air/temperature",
		PacketID:        7,
		Payload:         []byte(`{"value":21.37,"unit":"°C","ts":"2026-11-22T10:00:00.123Z"}`),
	}
	var buf bytes.Buffer
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf.Reset()
		if err := pk.PublishEncode(&buf); err != nil {
			b.Fatal(err)
		}
	}
}
