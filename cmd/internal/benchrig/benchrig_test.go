package benchrig

import (
	"bytes"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPayloadIs64BytesAndRoundTrips(t *testing.T) {
	now := time.Now()
	for _, seq := range []uint64{0, 7, 123456, 99999999} {
		p := Payload(seq, now)
		if len(p) != PayloadSize {
			t.Errorf("seq %d: %d bytes, want %d: %s", seq, len(p), PayloadSize, p)
		}
		got, sent, err := ParsePayload(p)
		if err != nil || got != seq || !sent.Equal(time.Unix(0, now.UnixNano())) {
			t.Errorf("seq %d: parsed %d, %v, %v from %s", seq, got, sent, err, p)
		}
	}
	// Not in Payload's order: encoding/json reads it.
	if got, sent, err := ParsePayload([]byte(`{"t":5, "seq":3}`)); err != nil || got != 3 || sent.UnixNano() != 5 {
		t.Errorf("reordered payload: %d, %v, %v", got, sent, err)
	}
	if _, _, err := ParsePayload([]byte(`{"t":1}`)); err == nil {
		t.Error("a payload without seq parsed")
	}
}

func TestReportCountsLostDuplicatesAndRetagged(t *testing.T) {
	r := newRecorder()
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	for _, a := range []Arrival{
		{Seq: 10, Sent: t0, At: at(1), Tag: "e/1"},
		{Seq: 11, Sent: t0, At: at(3), Tag: "e/2"},
		{Seq: 10, Sent: t0, At: at(4), Tag: "e/1"}, // resent, same tag: the cloud drops it
		{Seq: 11, Sent: t0, At: at(5), Tag: "f/1"}, // resent under a new tag
		{Seq: 13, Sent: t0, At: at(2), Tag: "e/3"},
		{Seq: 99, Sent: t0, At: at(9)}, // another run's
	} {
		r.add(a)
	}
	rep := r.Report(10, 4) // 10..13: 12 is missing
	if rep.Lost != 1 || rep.Dups != 2 || rep.DupsRetagged != 1 {
		t.Errorf("lost %d, dups %d, retagged %d; want 1, 2, 1", rep.Lost, rep.Dups, rep.DupsRetagged)
	}
	want := []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond}
	if len(rep.Latency) != 3 || rep.Latency[0] != want[0] || rep.Latency[2] != want[2] {
		t.Errorf("latencies %v, want %v (first copies, sorted)", rep.Latency, want)
	}
	if !rep.First.Equal(at(1)) || !rep.Last.Equal(at(2)) {
		t.Errorf("first %v last %v: want the first and last first copies in arrival order", rep.First, rep.Last)
	}
	if r.Distinct() != 4 || !r.WaitDistinct(4, 0) || r.WaitDistinct(5, time.Millisecond) {
		t.Errorf("Distinct %d, want 4 (seq 99 counts: the recorder knows no range)", r.Distinct())
	}
}

func TestPercentileMedianRatioGroup(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if Percentile(d, 50) != 5 || Percentile(d, 99) != 9 || Percentile(d, 100) != 10 || Percentile(nil, 50) != 0 {
		t.Errorf("percentiles %v %v %v", Percentile(d, 50), Percentile(d, 99), Percentile(d, 100))
	}
	if Median([]float64{3, 1, 2}) != 2 || Median(nil) != 0 {
		t.Errorf("median %v", Median([]float64{3, 1, 2}))
	}
	for _, c := range []struct {
		a, b float64
		want string
	}{{195, 83, "2.35x"}, {534, 0.23, "2,322x"}, {78, 1, "78.0x"}, {1, 0, "-"}} {
		if got := Ratio(c.a, c.b); got != c.want {
			t.Errorf("Ratio(%v, %v) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
	for in, want := range map[string]string{"14400 msg/s": "14,400 msg/s", "1003.03 ms": "1,003.03 ms", "999": "999", "1000000": "1,000,000", "x": "x"} {
		if got := Group(in); got != want {
			t.Errorf("Group(%q) = %q, want %q", in, got, want)
		}
	}
	var b bytes.Buffer
	Table(&b, "Mosquitto", []Row{{Figure: "f", Ref: 2, Edged: 3, Format: "%.0f B"}, {Figure: "g", RefText: "0 / 0", EdgedText: "1 / 2", Note: "-"}})
	if want := "| figure | Mosquitto | edged | ratio |\n|---|---|---|---|\n| f | 2 B | 3 B | 1.50x |\n| g | 0 / 0 | 1 / 2 | - |\n"; b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestProcFiguresOfThisProcess(t *testing.T) {
	pid := os.Getpid()
	rss, err := RSSKiB(pid)
	if err != nil || rss <= 0 {
		t.Fatalf("RSSKiB: %d, %v", rss, err)
	}
	u0, err := Sample(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the tick counter moves (bounded), and write a file.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, _ := CPU(pid); c > u0.CPU {
			break
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/f", bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	u1, err := Sample(pid)
	if err != nil {
		t.Fatal(err)
	}
	d := u1.Sub(u0)
	if d.CPU <= 0 {
		t.Errorf("CPU did not move in 5 s of busy loop: %v", d.CPU)
	}
	// write_bytes counts pages dirtied on a disk; tmpfs counts nothing.
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	const tmpfsMagic = 0x01021994
	if fs.Type != tmpfsMagic && d.WriteBytes < 1<<20 {
		t.Errorf("wrote 1 MiB, write_bytes moved by %d", d.WriteBytes)
	}
	if _, err := CPUTicks(-1); err == nil || !strings.Contains(err.Error(), "/proc/-1/stat") {
		t.Errorf("CPUTicks of no process: %v", err)
	}
}
