package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edged/edged/cmd/internal/benchrig"
	"github.com/edged/edged/uplink"
	"github.com/edged/edged/uplink/uplinktest"
)

// inProcess adds the older figures: with baseline, the drain of an
// n-message backlog by the uplink package in this process into a local
// Mosquitto against a plain paho QoS 1 publisher with the same window in
// the same run; with hold > 0, the RSS of this process capturing a
// hold-message backlog and of `edged run` opening it.
func inProcess(tmp, bin, edged string, baseline bool, n, hold int) error {
	const size, window, rounds = 64, 32, 3
	tmp = filepath.Join(tmp, "inprocess")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	mq, err := uplinktest.StartMosquitto(bin, tmp, "")
	if err != nil {
		return err
	}
	defer mq.Stop()
	if baseline {
		fmt.Printf("\nin-process drain: %d messages of %d B, window %d, mosquitto at %s, %d rounds\n", n, size, window, mq.Addr, rounds)
		var ups, base []float64
		for r := range rounds {
			u, err := drain(mq.Addr, filepath.Join(tmp, fmt.Sprintf("drain-%d", r)), n, size, window)
			if err != nil {
				return err
			}
			b, err := baselineRate(mq.Addr, n, size, window)
			if err != nil {
				return err
			}
			fmt.Printf("  round %d: uplink %8.0f msg/s   paho baseline %8.0f msg/s   ratio %.2f\n", r+1, u, b, u/b)
			ups, base = append(ups, u), append(base, b)
		}
		mu, mb := benchrig.Median(ups), benchrig.Median(base)
		fmt.Printf("drain median: uplink %.0f msg/s, paho %.0f msg/s, ratio %.2f (target >= 0.9)\n", mu, mb, mu/mb)
	}
	if hold > 0 {
		dir := filepath.Join(tmp, "hold")
		if err := holdRSS(dir, hold, size, window); err != nil {
			return err
		}
		if err := edgedRSS(edged, tmp, dir, hold); err != nil {
			return err
		}
	}
	return nil
}

func opts(addr string, window int) uplink.Opts {
	o := uplink.DefaultOpts()
	o.URL = "mqtt://" + addr
	o.ClientID = fmt.Sprintf("bench-%d", time.Now().UnixNano())
	o.MaxInflight = window
	o.Forward = []uplink.Rule{{Local: "bench/#", QoS: 1}}
	o.Buffer.MaxBytes = 1 << 30
	return o
}

// fill captures n messages with 8 producers.
func fill(u *uplink.Uplink, n, size int) error {
	payload := []byte(strings.Repeat("x", size))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for k := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := "bench/" + strconv.Itoa(k)
			for i := k; i < n; i += 8 {
				if _, err := u.Capture(topic, payload, 1, false); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// drain builds the backlog with the forwarder stopped, then times
// Start until every message is PUBACKed.
func drain(addr, dir string, n, size, window int) (float64, error) {
	u, err := uplink.New(opts(addr, window), dir, "bench", nil, nil)
	if err != nil {
		return 0, err
	}
	defer u.Close(context.Background())
	if err := fill(u, n, size); err != nil {
		return 0, err
	}
	for u.Stats().Backlog < uint64(n) { // interval sync: visible once synced
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	u.Start()
	for u.Stats().Acked < uint64(n) {
		time.Sleep(time.Millisecond)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func baselineRate(addr string, n, size, window int) (float64, error) {
	p, err := uplinktest.Connect(addr, fmt.Sprintf("paho-%d", time.Now().UnixNano()))
	if err != nil {
		return 0, err
	}
	defer p.Close()
	start := time.Now()
	if err := p.Window("bench/paho", n, size, window); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// holdRSS captures a large backlog with the cloud unreachable (the
// forwarder retrying) and samples this process's RSS along the way.
func holdRSS(dir string, n, size, window int) error {
	u, err := uplink.New(opts("127.0.0.1:1", window), dir, "bench", nil, nil)
	if err != nil {
		return err
	}
	u.Start()
	fmt.Printf("rss: capturing %d messages of %d B with the cloud unreachable (in-process, VmRSS)\n", n, size)
	step := n / 5
	start := time.Now()
	for done := 0; done < n; done += step {
		if err := fill(u, min(step, n-done), size); err != nil {
			return err
		}
		runtime.GC()
		st := u.Stats()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Printf("  backlog %8d  disk %6.1f MiB  RSS %6.1f MiB  heap in use %5.1f MiB\n", st.Backlog, float64(st.DiskBytes)/(1<<20), float64(rss(os.Getpid()))/1024, float64(ms.HeapInuse)/(1<<20))
	}
	fmt.Printf("  captured at %.0f msg/s (8 producers, sync interval)\n", float64(n)/time.Since(start).Seconds())
	return u.Close(context.Background())
}

// edgedRSS starts the real daemon on the backlog and reports its RSS once
// it has opened the buffer.
func edgedRSS(bin, tmp, bufDir string, n int) error {
	state := filepath.Join(tmp, "edged-state")
	if err := os.MkdirAll(state, 0o750); err != nil {
		return err
	}
	if err := os.Rename(bufDir, uplink.BufferDir(state)); err != nil {
		return err
	}
	cfg := filepath.Join(tmp, "edged.yaml")
	port, err := uplinktest.FreeAddr()
	if err != nil {
		return err
	}
	conf := fmt.Sprintf(`device: {id: bench}
state_dir: %s
broker: {mqtt: %q, websocket: ""}
http: {listen: ""}
uplink:
  url: mqtt://127.0.0.1:1
  forward: [{local: "bench/#"}]
  buffer: {max_bytes: 1GiB}
`, state, port)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return err
	}
	cmd := exec.Command(bin, "run", "-c", cfg)
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Kill() // by PID: the process started here
		_ = cmd.Wait()
	}()
	time.Sleep(5 * time.Second)
	var peak int64
	for range 10 {
		peak = max(peak, rss(cmd.Process.Pid))
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Printf("edged run holding a %d message backlog: RSS %.1f MiB (peak of 10 samples over 5 s, after 5 s; target <= 30 MiB)\n", n, float64(peak)/1024)
	return nil
}

// rss is VmRSS of pid in KiB, -1 when it cannot be read.
func rss(pid int) int64 {
	v, err := benchrig.RSSKiB(pid)
	if err != nil {
		return -1
	}
	return v
}
