package uplink

import (
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensorstest"
	"github.com/edged/edged/sensors/wallclock"
)

type capturePub struct{ u *Uplink }

func (p capturePub) Publish(topic string, payload []byte, retain bool) error {
	_, err := p.u.Capture(topic, payload, 1, retain)
	return err
}

// TestReadingSampledBeforeTrustCapturedAfter: a DS18B20 takes
// 750 ms to sense. Its sample starts (Reading.Mono) while the clock is
// untrusted; the 5 s check trusts the clock before the Sense returns;
// the pipeline marks the payload unsynced (by Reading.Mono) but the
// uplink captures it as synced (by its own Now), so the forwarder never
// restamps it: the cloud gets "ts":"1970-…","clock":"unsynced" forever
// although this boot's stamp was mappable.
func TestReadingSampledBeforeTrustCapturedAfter(t *testing.T) {
	c := newCloud(t, "", true)
	o := testOpts(c.proxy.Addr)
	clk := sensorstest.NewClock(time.Unix(0, 0).UTC())
	synced := false
	kern := wallclock.KernelFunc(func() (bool, error) { return synced, nil })
	wc, err := wallclock.New(clk, kern, wallclock.Opts{Boot: wallclock.BootID{0xb}, BootOffset: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wc.Check()
	u := openUplink(t, o, t.TempDir())
	u.SetTrust(wc, pipeline.Restamper(wc))
	u.Start()
	p := pipeline.New("t", capturePub{u}, nil)
	p.SetTrust(wc)

	clk.Advance(20 * time.Second)
	at, mono := clk.Now(), clk.Mono() // the sample starts
	clk.Step(56 * 365 * 24 * time.Hour)
	synced = true
	wc.Check() // jump
	clk.Advance(5 * time.Second)
	wc.Check() // trusted, while the sensor is still converting
	if !wc.Synced() {
		t.Fatal(wc.Reason())
	}
	p.Reading(sensors.Reading{Sensor: "t1", Quantity: sensors.Temperature, Value: 21, Time: at, Mono: mono})

	if !c.col.WaitDistinct(1, 20*time.Second) {
		t.Fatal("nothing arrived")
	}
	m := c.col.Messages()[0]
	if strings.Contains(m.Payload, `"clock":"unsynced"`) {
		t.Fatalf("payload left uncorrected although its stamp is of this boot and the clock is trusted: %s (ts property %s, clock property %q)", m.Payload, m.TS, m.Clock)
	}
}
