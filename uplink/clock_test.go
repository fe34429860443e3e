package uplink

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/edged/edged/sensors/sensorstest"
	"github.com/edged/edged/sensors/wallclock"
)

// TestClockStampsCorrectedOnTheWayIntegration is issue 13's clock test at
// the uplink: a gateway boots in 1970 and captures with the cloud down,
// reboots (a new boot id) and captures again, then NTP steps its clock to
// 2026 and it captures once more. When the cloud comes back, everything
// arrives in seq order; the second boot's captures carry the wall time
// they were taken at (mapped from their time since boot) and a restamped
// payload; the first boot's cannot be mapped and arrive marked
// clock=unsynced with their 1970 ts; the last are plain.
func TestClockStampsCorrectedOnTheWayIntegration(t *testing.T) {
	c := newCloud(t, "", false)
	dir := t.TempDir()
	o := testOpts(c.proxy.Addr)
	o.Buffer.MaxAge = time.Hour // and no step may expire anything

	epoch := time.Unix(0, 0).UTC()
	clk := sensorstest.NewClock(epoch)
	synced := false
	kern := wallclock.KernelFunc(func() (bool, error) { return synced, nil })
	judge := func(boot wallclock.BootID) *wallclock.Clock {
		wc, err := wallclock.New(clk, kern, wallclock.Opts{Boot: boot, BootOffset: 5 * time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		wc.Check()
		return wc
	}
	restamped := 0
	restamp := func(dst, payload []byte) ([]byte, bool) {
		restamped++
		return append(append(dst, payload...), "+restamped"...), true
	}
	var captured []time.Time // the true time of each capture, where known
	captureAt := func(u *Uplink, i int) {
		t.Helper()
		clk.Advance(time.Second)
		if _, err := u.Capture("t/a", []byte(strconv.Itoa(i)), 1, false); err != nil {
			t.Fatalf("capture %d: %v", i, err)
		}
		captured = append(captured, clk.Now())
	}

	// Boot A, 1970, no NTP.
	u := openUplink(t, o, dir)
	u.SetTrust(judge(wallclock.BootID{0xa}), restamp)
	u.Start()
	for i := range 3 {
		captureAt(u, i)
	}
	if err := u.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Boot B: still 1970 until NTP.
	wcB := judge(wallclock.BootID{0xb})
	u = openUplink(t, o, dir)
	u.SetTrust(wcB, restamp)
	u.Start()
	for i := 3; i < 5; i++ {
		captureAt(u, i)
	}
	clk.Advance(10 * time.Second)
	truth := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	step := truth.Sub(clk.Now())
	clk.Step(step)
	synced = true
	wcB.Check() // the step: a jump
	clk.Advance(5 * time.Second)
	wcB.Check()
	if !wcB.Synced() {
		t.Fatalf("not trusted after NTP: %s", wcB.Reason())
	}
	for i := 5; i < 7; i++ {
		captureAt(u, i)
	}

	c.proxy.SetUp(true)
	if !c.col.WaitDistinct(7, 30*time.Second) {
		t.Fatalf("%d of 7 messages arrived", c.col.Distinct())
	}
	got := c.col.Messages()
	var last uint64
	for i, m := range got[:7] {
		if m.Seq <= last {
			t.Fatalf("message %d: seq %d after %d", i, m.Seq, last)
		}
		last = m.Seq
		want := captured[i]
		switch {
		case i < 3: // boot A: not mappable
			if m.Clock != "unsynced" || m.Payload != strconv.Itoa(i) {
				t.Errorf("boot A message %d: clock %q payload %q; want unsynced, unchanged", i, m.Clock, m.Payload)
			}
		case i < 5: // boot B before NTP: corrected
			want = want.Add(step)
			if m.Clock != "" || m.Payload != strconv.Itoa(i)+"+restamped" {
				t.Errorf("boot B message %d: clock %q payload %q; want corrected and restamped", i, m.Clock, m.Payload)
			}
		default:
			if m.Clock != "" || m.Payload != strconv.Itoa(i) {
				t.Errorf("message %d after NTP: clock %q payload %q", i, m.Clock, m.Payload)
			}
		}
		ts, err := time.Parse(time.RFC3339Nano, m.TS)
		if err != nil || !ts.Equal(want) {
			t.Errorf("message %d: ts %s, want %s", i, m.TS, want.Format(time.RFC3339Nano))
		}
	}
	if restamped != 2 {
		t.Errorf("restamper called %d times, want 2 (boot B's unsynced captures)", restamped)
	}
	if st := u.Stats(); st.Dropped["age"] != 0 {
		t.Errorf("max_age dropped %d across the step", st.Dropped["age"])
	}
}
