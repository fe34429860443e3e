package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/edged/edged/cmd/internal/benchrig"
	"github.com/edged/edged/uplink/uplinktest"
)

type config struct {
	n                int
	edged, mosquitto string
	interval, window time.Duration
}

type fleet struct {
	config
	rig   *benchrig.Rig
	out   io.Writer
	cloud string // the broker's address
}

// gateway is one edged and what was measured of it.
type gateway struct {
	id  string
	e   *benchrig.Edged
	rss int64         // KiB at the end of the window
	cpu time.Duration // over the window

	arrived, dups, gaps int
	epochs              int
	first, last         uint64
}

type result struct {
	gws         []*gateway
	ingress     float64       // msg/s at the broker over the window
	brokerCPU   time.Duration // the broker's CPU over the window
	bad         int           // gateways whose stream is not gapless, or that failed
	startupTime time.Duration
}

func (f *fleet) gatewayConfig(id, stateDir string) func(lan string) string {
	return func(lan string) string {
		return fmt.Sprintf(`device: {id: %s}
state_dir: %s
log: {level: warn}
broker: {mqtt: %q, websocket: ""}
http: {listen: ""}
homeassistant: {enabled: false}
sensors:
  - {id: light, driver: sim_light, interval: %s}
  - {id: air, driver: sim_climate, interval: %s}
uplink:
  url: mqtt://%s
  client_id: fleet-%s
  forward: [{local: "edged/%s/sensor/#"}]
`, id, stateDir, lan, f.interval, f.interval, f.cloud, id, id)
	}
}

func (f *fleet) run() (*result, error) {
	dir := filepath.Join(f.rig.Dir, "broker")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cloud, err := uplinktest.StartMosquitto(f.mosquitto, dir, "")
	if err != nil {
		return nil, err
	}
	f.rig.Defer(cloud.Stop)
	f.cloud = cloud.Addr
	col, err := uplinktest.CollectSession(cloud.Addr, "edged/+/sensor/#", "fleet-subscriber", 86400)
	if err != nil {
		return nil, fmt.Errorf("fleet: subscriber: %w", err)
	}
	f.rig.Defer(col.Close)
	fmt.Fprintf(f.out, "fleet: %d gateways, 2 simulated sensors each sampled every %v (3 readings), uplinking QoS 1 into one mosquitto at %s\n", f.n, f.interval, cloud.Addr)

	res := &result{}
	t0 := time.Now()
	for i := range f.n {
		id := fmt.Sprintf("gw-%03d", i+1)
		gdir := filepath.Join(f.rig.Dir, id)
		if err := os.MkdirAll(gdir, 0o755); err != nil {
			return nil, err
		}
		g := &gateway{id: id, e: benchrig.NewEdged(f.edged, gdir, f.gatewayConfig(id, filepath.Join(gdir, "state")))}
		f.rig.Defer(g.e.Kill)
		if err := g.e.Start(); err != nil {
			return nil, fmt.Errorf("fleet: %s: %w", id, err)
		}
		res.gws = append(res.gws, g)
	}
	res.startupTime = time.Since(t0)
	fmt.Fprintf(f.out, "  started %d gateways in %.1f s\n", f.n, res.startupTime.Seconds())

	// The window: CPU and arrivals between its ends, RSS at its end.
	time.Sleep(2 * time.Second) // every gateway connected and steady
	cpu0 := make([]time.Duration, len(res.gws))
	for i, g := range res.gws {
		if cpu0[i], err = benchrig.CPU(g.e.Pid()); err != nil {
			return nil, fmt.Errorf("fleet: %s: %w", g.id, err)
		}
	}
	b0, err := benchrig.CPU(cloud.Pid())
	if err != nil {
		return nil, err
	}
	n0, w0 := col.Len(), time.Now()
	time.Sleep(f.window)
	n1, w1 := col.Len(), time.Now()
	b1, err := benchrig.CPU(cloud.Pid())
	if err != nil {
		return nil, err
	}
	res.brokerCPU = b1 - b0
	for i, g := range res.gws {
		if err := g.e.Exited(); err != nil {
			return nil, fmt.Errorf("fleet: %s: %w", g.id, err)
		}
		c, err := benchrig.CPU(g.e.Pid())
		if err != nil {
			return nil, err
		}
		g.cpu = c - cpu0[i]
		if g.rss, err = benchrig.RSSKiB(g.e.Pid()); err != nil {
			return nil, err
		}
	}
	res.ingress = float64(n1-n0) / w1.Sub(w0).Seconds()

	// Stop every gateway cleanly (in parallel: each may wait for its
	// last PUBACKs), then let the broker deliver what it has.
	var wg sync.WaitGroup
	for _, g := range res.gws {
		wg.Add(1)
		go func() { defer wg.Done(); g.e.Stop() }()
	}
	wg.Wait()
	col.WaitDistinct(1<<30, time.Second) // a quiet second
	f.check(res, col.Messages())
	f.report(res)
	return res, nil
}

// check finds each gateway's stream in msgs: one epoch, seqs 1..last
// without a gap.
func (f *fleet) check(res *result, msgs []uplinktest.Received) {
	type stream struct {
		seqs map[uint64]bool
		n    int
	}
	by := map[string]map[string]*stream{} // gw -> epoch -> stream
	for _, m := range msgs {
		if by[m.GW] == nil {
			by[m.GW] = map[string]*stream{}
		}
		s := by[m.GW][m.Epoch]
		if s == nil {
			s = &stream{seqs: map[uint64]bool{}}
			by[m.GW][m.Epoch] = s
		}
		s.n++
		s.seqs[m.Seq] = true
	}
	for _, g := range res.gws {
		g.epochs = len(by[g.id])
		for _, s := range by[g.id] {
			g.arrived += len(s.seqs)
			g.dups += s.n - len(s.seqs)
			lo, hi := uint64(1<<63), uint64(0)
			for q := range s.seqs {
				lo, hi = min(lo, q), max(hi, q)
			}
			g.first, g.last = lo, hi
			g.gaps += int(hi-lo+1) - len(s.seqs)
			if lo != 1 {
				g.gaps += int(lo - 1) // the stream must start at the first message
			}
		}
		if g.epochs != 1 || g.gaps != 0 || g.arrived == 0 || g.e.ExitState() == nil || !g.e.ExitState().Success() {
			res.bad++
			fmt.Fprintf(f.out, "  BAD %s: %d epochs, %d arrived (seq %d..%d), %d missing, exit %v\n", g.id, g.epochs, g.arrived, g.first, g.last, g.gaps, g.e.ExitState())
		}
	}
}

func (f *fleet) report(res *result) {
	var rss, cpu []float64
	arrived, dups := 0, 0
	for _, g := range res.gws {
		rss = append(rss, float64(g.rss)/1024)
		cpu = append(cpu, 100*g.cpu.Seconds()/f.window.Seconds())
		arrived += g.arrived
		dups += g.dups
	}
	slices.Sort(rss)
	slices.Sort(cpu)
	fmt.Fprintf(f.out, "  broker ingress over %v: %.0f msg/s (%.1f per gateway); mosquitto used %.1f %% of a core\n",
		f.window, res.ingress, res.ingress/float64(len(res.gws)), 100*res.brokerCPU.Seconds()/f.window.Seconds())
	fmt.Fprintf(f.out, "  RSS per gateway: median %.1f MiB, max %.1f MiB\n", benchrig.Median(rss), rss[len(rss)-1])
	fmt.Fprintf(f.out, "  CPU per gateway: median %.2f %%, max %.2f %% of a core (utime+stime from /proc, 10 ms ticks)\n", benchrig.Median(cpu), cpu[len(cpu)-1])
	fmt.Fprintf(f.out, "  streams: %d of %d gapless per (gw, epoch, seq) from seq 1; %d messages, %d duplicates\n", len(res.gws)-res.bad, len(res.gws), arrived, dups)
}
