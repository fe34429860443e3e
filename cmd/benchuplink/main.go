// Command benchuplink measures the uplink for `make bench-uplink`:
//
//  1. drain: a backlog of -n (50,000) QoS 1 messages forwarded into a local
//     Mosquitto, against a plain paho QoS 1 publisher with the same
//     in-flight window into the same broker in the same run, as a ratio
//     (target >= 0.9);
//  2. rss: the process RSS while capturing a -hold (1,000,000) message
//     backlog, sampled along the way to show it is flat, and, with
//     -edged, the RSS of a real `edged run` that opens that backlog.
//
// It needs mosquitto on PATH. Figures go to stdout.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edged/edged/uplink"
	"github.com/edged/edged/uplink/uplinktest"
)

func main() {
	n := flag.Int("n", 50000, "backlog messages to drain")
	size := flag.Int("size", 64, "payload bytes")
	window := flag.Int("window", 32, "QoS 1 messages in flight (max_inflight and the baseline's window)")
	rounds := flag.Int("rounds", 3, "drain rounds (medians are reported)")
	hold := flag.Int("hold", 1000000, "backlog messages for the RSS figure (0 skips it)")
	edged := flag.String("edged", "", "edged binary: also measure `edged run` holding the backlog")
	flag.Parse()
	log.SetFlags(0)

	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		log.Fatal("benchuplink: mosquitto not found: apt-get install mosquitto")
	}
	tmp, err := os.MkdirTemp("", "benchuplink-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	mq, err := uplinktest.StartMosquitto(bin, tmp, "")
	if err != nil {
		log.Fatal(err)
	}
	defer mq.Stop()

	fmt.Printf("drain: %d messages of %d B, window %d, mosquitto at %s, %d rounds\n", *n, *size, *window, mq.Addr, *rounds)
	var ups, base []float64
	for r := range *rounds {
		u, err := drain(mq.Addr, filepath.Join(tmp, fmt.Sprintf("drain-%d", r)), *n, *size, *window)
		if err != nil {
			log.Fatal(err)
		}
		b, err := baseline(mq.Addr, *n, *size, *window)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("  round %d: uplink %8.0f msg/s   paho baseline %8.0f msg/s   ratio %.2f\n", r+1, u, b, u/b)
		ups, base = append(ups, u), append(base, b)
	}
	mu, mb := median(ups), median(base)
	fmt.Printf("drain median: uplink %.0f msg/s, paho %.0f msg/s, ratio %.2f (target >= 0.9)\n", mu, mb, mu/mb)

	if *hold > 0 {
		dir := filepath.Join(tmp, "hold")
		if err := holdRSS(dir, *hold, *size, *window); err != nil {
			log.Fatal(err)
		}
		if *edged != "" {
			if err := edgedRSS(*edged, tmp, dir, *hold); err != nil {
				log.Fatal(err)
			}
		}
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
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

func baseline(addr string, n, size, window int) (float64, error) {
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

func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return -1
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
		fmt.Printf("  backlog %8d  disk %6.1f MiB  RSS %6.1f MiB  heap in use %5.1f MiB\n", st.Backlog, float64(st.DiskBytes)/(1<<20), float64(rssKiB(os.Getpid()))/1024, float64(ms.HeapInuse)/(1<<20))
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
	var peak int
	for range 10 {
		peak = max(peak, rssKiB(cmd.Process.Pid))
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Printf("edged run holding a %d message backlog: RSS %.1f MiB (peak of 10 samples over 5 s, after 5 s; target <= 30 MiB)\n", n, float64(peak)/1024)
	return nil
}
