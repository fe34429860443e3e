// Command benchuplink compares edged's uplink with Mosquitto + bridge for
// `make bench-uplink`, in one run, through the same scenarios into the
// same "cloud": a Mosquitto with persistence, where a QoS 1
// persistent-session subscriber counts the messages by the seq in their
// 64-byte JSON payload and times them by the send time beside it.
//
// The two local systems, each on its own loopback port, fed by a paho
// QoS 1 publisher standing for the LAN:
//   - Mosquitto + bridge, configured as users do: persistence on (the
//     Debian default, autosave every 30 min), `connection`, `address`,
//     `topic bench/# out 1`, `cleansession false`, `max_queued_messages 0`
//     (no limit), every other bridge and inflight setting at its default
//     (bridge_protocol_version mqttv311 unless -bridge-protocol);
//   - `edged run` built from the tree, with a default uplink forwarding
//     `bench/#` (sync: interval, 1 s; max_inflight 32).
//
// Scenarios: steady 1,000 msg/s (e2e p50/p99, CPU per message of the
// local process from /proc/PID/stat), max rate (20,000 messages as fast
// as the PUBACKs allow), a 50,000-message outage (cloud stopped) then its
// drain (drain msg/s, RSS holding the backlog, bytes written per message
// from /proc/PID/io), and kill -9 of the local process during such an
// outage (lost, duplicates). It prints a markdown table, edged / Mosquitto.
//
// The steady and max-rate rounds also run the Go relay floor
// (benchrig.ServeRelayFloor, this command with -serve-floor): a
// goroutine per connection, a log write per message and no uplink
// logic, so the floor against Mosquitto + bridge is what Go's runtime
// costs here, and edged against the floor is what edged adds.
//
// -drain-baseline and -hold add the older in-process figures (inprocess.go).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/edged/edged/cmd/internal/benchrig"
	"github.com/edged/edged/uplink/uplinktest"
)

type config struct {
	edged, mosquitto, bridgeProtocol string
	bridgeRestart                    string
	rate                             float64
	seconds, rounds                  int
	maxN, outageN, killN, window     int
	outageRounds                     int
}

func main() {
	var c config
	flag.StringVar(&c.edged, "edged", "bin/edged", "edged binary (`make build`)")
	flag.StringVar(&c.mosquitto, "mosquitto", "mosquitto", "mosquitto binary")
	flag.StringVar(&c.bridgeProtocol, "bridge-protocol", "mqttv311", "bridge_protocol_version of the Mosquitto bridge (mqttv311, the default, or mqttv50)")
	flag.StringVar(&c.bridgeRestart, "bridge-restart", "", "restart_timeout of the Mosquitto bridge (default: Mosquitto's, 5 to 30 s with jitter)")
	flag.Float64Var(&c.rate, "rate", 1000, "steady rate, messages a second")
	flag.IntVar(&c.seconds, "seconds", 10, "length of one steady round")
	flag.IntVar(&c.rounds, "rounds", 5, "rounds of the steady and max-rate scenarios (medians are reported)")
	flag.IntVar(&c.maxN, "max-n", 20000, "messages of the max-rate scenario (0 skips it)")
	flag.IntVar(&c.outageN, "outage-n", 50000, "messages published during the outage (0 skips it)")
	flag.IntVar(&c.outageRounds, "outage-rounds", 3, "rounds of the outage scenario (medians are reported)")
	flag.IntVar(&c.killN, "kill-n", 50000, "messages published before the kill -9 (0 skips it)")
	flag.IntVar(&c.window, "window", 64, "QoS 1 publishes the LAN publisher keeps awaiting PUBACK (capped by the broker's Receive Maximum)")
	compare := flag.Bool("compare", true, "run the comparison with Mosquitto + bridge (false: only the figures below)")
	baseline := flag.Bool("drain-baseline", false, "also: in-process drain of -n messages vs a bare paho QoS 1 publisher")
	n := flag.Int("n", 50000, "with -drain-baseline: backlog messages")
	hold := flag.Int("hold", 0, "also: RSS holding a backlog of this many messages, in-process and in `edged run` (e.g. 1000000)")
	serveFloor := flag.Bool(benchrig.FloorFlag, false, "serve the Go relay floor (the bench starts it so itself)")
	floorCloud := flag.String("floor-cloud", "", "with -serve-floor: the cloud broker's address")
	floorDir := flag.String("floor-dir", "", "with -serve-floor: the directory of its log")
	floorWindow := flag.Int("floor-window", 32, "with -serve-floor: messages in flight to the cloud (edged's max_inflight)")
	flag.Parse()
	if *serveFloor {
		benchrig.ServeFloorMain(func(ln net.Listener) error {
			return benchrig.ServeRelayFloor(ln, *floorCloud, *floorDir, *floorWindow)
		})
	}

	rig, err := benchrig.New("benchuplink")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer rig.Close()
	if c.mosquitto, err = exec.LookPath(c.mosquitto); err != nil {
		rig.Fatal(errors.New("benchuplink: mosquitto not found: apt-get install mosquitto"))
	}
	if _, err := os.Stat(c.edged); err != nil {
		rig.Fatal(fmt.Errorf("benchuplink: %w (make build)", err))
	}
	if *compare {
		b := &bench{config: c, rig: rig, out: os.Stdout}
		if err := b.run(); err != nil {
			rig.Fatal(err)
		}
	}
	if *baseline || *hold > 0 {
		if err := inProcess(rig.Dir, c.mosquitto, c.edged, *baseline, *n, *hold); err != nil {
			rig.Fatal(err)
		}
	}
}

// bench is one run: the cloud, its subscriber, the figures.
type bench struct {
	config
	rig   *benchrig.Rig
	out   io.Writer
	res   map[string]*figures
	cloud *uplinktest.Mosquitto
	sub   *benchrig.Subscriber
	seq   int // numbers directories, client ids and topics
}

// figures are one system's results.
type figures struct {
	p50, p99, cpuPerMsg, switches []float64 // ms, ms, µs, per message
	maxRate, maxP50               []float64 // msg/s, ms
	// CPU per message at max rate of the gateway, the cloud Mosquitto
	// and the bench itself (the LAN publisher and the cloud subscriber):
	// the two cores are shared, so the max rate is bounded by their sum.
	maxCPU, maxCloudCPU, maxBenchCPU []float64 // µs
	drain, reconnect, rssHold, wpm   []float64 // msg/s, s, MiB, B/msg
	rssIdle                          []float64
	// CPU per drained message of the gateway and of the cloud Mosquitto
	// (from the cloud's return to the last message): on this machine the
	// cloud shares the cores, so what a gateway costs the cloud bounds
	// its drain.
	drainCPU, cloudCPU []float64 // µs
	// bare is the floor of a drain (the "floor" system's only): a bare
	// paho QoS 1 publisher in the bench, with edged's tags and window,
	// sending the outage's messages into the same cloud.
	bare                          []float64 // msg/s
	outageLost, outageDups        float64   // sums over the rounds
	killLost, killDups, killRetag float64
}

var systems = []string{"mosquitto", "edged"}

// liveSystems take part in the steady and max-rate rounds: the Go relay
// floor between the two (benchrig.ServeRelayFloor) has no outage or
// restart to offer.
var liveSystems = []string{"mosquitto", "floor", "edged"}

func (b *bench) next() int { b.seq++; return b.seq }

func (b *bench) run() error {
	dir := filepath.Join(b.rig.Dir, "cloud")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// user root: run as root, mosquitto would switch to its own user,
	// which cannot write into our temporary directory.
	cloud, err := uplinktest.StartMosquitto(b.mosquitto, dir, "user root\npersistence true\npersistence_location "+dir+"/")
	if err != nil {
		return err
	}
	b.cloud = cloud
	b.rig.Defer(cloud.Stop)
	sub, err := benchrig.Subscribe(cloud.Addr, "cloud-subscriber", nil, "bench/#", 1, true)
	if err != nil {
		return err
	}
	b.sub = sub
	b.rig.Defer(func() {
		if cloud.Pid() != 0 {
			sub.Close()
		}
	})
	fmt.Fprintf(b.out, "bench-uplink: cloud mosquitto (persistence on) at %s; LAN payloads %d B, QoS 1; bridge %s\n", cloud.Addr, benchrig.PayloadSize, b.bridgeProtocol)
	fmt.Fprintln(b.out, "(the machine may be shared: compare the two columns, measured in the same run, not figures of different runs)")

	res := map[string]*figures{"mosquitto": {}, "floor": {}, "edged": {}}
	b.res = res
	if err := b.live(res); err != nil {
		return err
	}
	for r := 1; b.outageN > 0 && r <= b.outageRounds; r++ {
		for _, s := range systems {
			if err := b.outage(s, res[s], false, b.outageN); err != nil {
				return fmt.Errorf("%s outage: %w", s, err)
			}
		}
		if err := b.bare(res["floor"], b.outageN); err != nil {
			return fmt.Errorf("bare publisher: %w", err)
		}
	}
	for _, s := range systems {
		if b.killN > 0 {
			if err := b.outage(s, res[s], true, b.killN); err != nil {
				return fmt.Errorf("%s kill -9: %w", s, err)
			}
		}
	}
	b.table(res)
	return nil
}

// live runs the steady and max-rate rounds, the two systems taking turns
// so that both see the same machine.
func (b *bench) live(res map[string]*figures) error {
	locals := map[string]local{}
	pubs := map[string]*benchrig.Publisher{}
	for _, s := range liveSystems {
		l, err := b.start(s)
		if err != nil {
			return err
		}
		locals[s] = l
		p, err := b.ready(l)
		if err != nil {
			return err
		}
		pubs[s] = p
	}
	defer func() {
		for _, s := range liveSystems {
			pubs[s].Close()
			locals[s].stop()
		}
	}()
	n := int(b.rate * float64(b.seconds))
	for r := 1; r <= b.rounds; r++ {
		for _, s := range liveSystems {
			l, f := locals[s], res[s]
			topic := fmt.Sprintf("bench/%s/steady-%d", s, b.next())
			rec := b.sub.Track(topic)
			u0, err := benchrig.Sample(l.pid())
			if err != nil {
				return err
			}
			if _, err := pubs[s].Send(topic, 0, n, b.rate, 1, b.window); err != nil {
				return err
			}
			if !rec.WaitDistinct(n, 60*time.Second) {
				return fmt.Errorf("%s steady: %d of %d arrived within 60 s", s, rec.Distinct(), n)
			}
			u1, err := benchrig.Sample(l.pid())
			if err != nil {
				return err
			}
			rep := rec.Report(0, n)
			f.p50 = append(f.p50, ms(benchrig.Percentile(rep.Latency, 50)))
			f.p99 = append(f.p99, ms(benchrig.Percentile(rep.Latency, 99)))
			f.cpuPerMsg = append(f.cpuPerMsg, float64(u1.Sub(u0).CPU.Microseconds())/float64(n))
			f.switches = append(f.switches, float64(u1.Sub(u0).Switches)/float64(n))
			fmt.Fprintf(b.out, "  round %d %-9s steady %4.0f msg/s x %d s: p50 %8.2f ms  p99 %8.2f ms  CPU %6.1f µs/msg  %4.1f context switches/msg\n",
				r, s, b.rate, b.seconds, f.p50[len(f.p50)-1], f.p99[len(f.p99)-1], f.cpuPerMsg[len(f.cpuPerMsg)-1], f.switches[len(f.switches)-1])

			if b.maxN == 0 {
				continue
			}
			topic = fmt.Sprintf("bench/%s/max-%d", s, b.next())
			rec = b.sub.Track(topic)
			pids := []int{l.pid(), b.cloud.Pid(), os.Getpid()}
			before, err := sampleAll(pids)
			if err != nil {
				return err
			}
			sent, err := pubs[s].Send(topic, 0, b.maxN, 0, 1, b.window)
			if err != nil {
				return err
			}
			if !rec.WaitDistinct(b.maxN, 120*time.Second) {
				return fmt.Errorf("%s max rate: %d of %d arrived within 120 s", s, rec.Distinct(), b.maxN)
			}
			after, err := sampleAll(pids)
			if err != nil {
				return err
			}
			perMsg := func(i int) float64 { return float64((after[i] - before[i]).Microseconds()) / float64(b.maxN) }
			f.maxCPU = append(f.maxCPU, perMsg(0))
			f.maxCloudCPU = append(f.maxCloudCPU, perMsg(1))
			f.maxBenchCPU = append(f.maxBenchCPU, perMsg(2))
			rep = rec.Report(0, b.maxN)
			f.maxRate = append(f.maxRate, float64(b.maxN)/rep.Last.Sub(sent.Start).Seconds())
			f.maxP50 = append(f.maxP50, ms(benchrig.Percentile(rep.Latency, 50)))
			fmt.Fprintf(b.out, "  round %d %-9s max rate %d msgs: %8.0f msg/s e2e (LAN side %8.0f msg/s)  p50 %8.2f ms  CPU µs/msg: local %5.1f cloud %5.1f bench %5.1f\n",
				r, s, b.maxN, f.maxRate[len(f.maxRate)-1], float64(b.maxN)/sent.End.Sub(sent.Start).Seconds(), f.maxP50[len(f.maxP50)-1],
				perMsg(0), perMsg(1), perMsg(2))
		}
	}
	return nil
}

// sampleAll reads the CPU time of each pid.
func sampleAll(pids []int) ([]time.Duration, error) {
	t := make([]time.Duration, len(pids))
	for i, pid := range pids {
		var err error
		if t[i], err = benchrig.CPU(pid); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// ready waits until a message from the LAN reaches the cloud subscriber
// (the bridge or uplink is connected) and returns the LAN publisher.
func (b *bench) ready(l local) (*benchrig.Publisher, error) {
	p, err := benchrig.NewPublisher(l.addr(), fmt.Sprintf("lan-%d", b.next()), nil)
	if err != nil {
		return nil, err
	}
	topic := fmt.Sprintf("bench/%s/warm-%d", l.name(), b.next())
	rec := b.sub.Track(topic)
	if _, err := p.Send(topic, 0, 1, 0, 1, 1); err != nil {
		p.Close()
		return nil, err
	}
	if !rec.WaitDistinct(1, 60*time.Second) {
		p.Close()
		return nil, fmt.Errorf("%s: a first message did not reach the cloud within 60 s", l.name())
	}
	return p, nil
}

// outage stops the cloud, publishes n messages into a fresh local
// system, holds them 2 s, optionally kills it with SIGKILL and starts it
// again, then brings the cloud back and counts what arrives.
func (b *bench) outage(s string, f *figures, kill bool, n int) error {
	l, err := b.start(s)
	if err != nil {
		return err
	}
	defer l.stop()
	p, err := b.ready(l)
	if err != nil {
		return err
	}
	defer func() { p.Close() }()
	what := "outage"
	if kill {
		what = "kill-9"
	}
	topic := fmt.Sprintf("bench/%s/%s-%d", s, what, b.next())
	rec := b.sub.Track(topic)
	marker := b.sub.Track(topic + "/marker")
	idle, err := benchrig.RSSKiB(l.pid())
	if err != nil {
		return err
	}

	b.cloud.Stop()
	u0, err := benchrig.Sample(l.pid())
	if err != nil {
		return err
	}
	if _, err := p.Send(topic, 0, n, 0, 1, b.window); err != nil {
		return err
	}
	// Hold the backlog 2 s (edged's default sync interval is 1 s),
	// sampling RSS.
	var rss int64
	for range 8 {
		time.Sleep(250 * time.Millisecond)
		v, err := benchrig.RSSKiB(l.pid())
		if err != nil {
			return err
		}
		rss = max(rss, v)
	}
	u1, err := benchrig.Sample(l.pid())
	if err != nil {
		return err
	}
	if kill {
		p.Close()
		l.kill()
		if err := l.restart(); err != nil {
			return err
		}
		if p, err = benchrig.NewPublisher(l.addr(), fmt.Sprintf("lan-%d", b.next()), nil); err != nil {
			return err
		}
		// The marker is published after the restart: it arrives after
		// whatever of the backlog survived.
		if _, err := p.Send(topic+"/marker", 0, 1, 0, 1, 1); err != nil {
			return err
		}
	}
	up := time.Now()
	gw0, err := benchrig.CPU(l.pid())
	if err != nil {
		return err
	}
	if err := b.cloud.Start(); err != nil {
		return err
	}
	cloud0, err := benchrig.CPU(b.cloud.Pid())
	if err != nil {
		return err
	}
	if err := b.sub.Reconnect(); err != nil {
		return err
	}
	const drainTimeout = 180 * time.Second
	if kill {
		if !marker.WaitDistinct(1, drainTimeout) {
			return fmt.Errorf("the marker published after the restart did not arrive within %v", drainTimeout)
		}
		rec.WaitQuiet(time.Second, 30*time.Second)
	} else {
		if !rec.WaitDistinct(n, drainTimeout) {
			return fmt.Errorf("%d of %d arrived within %v of the cloud's return", rec.Distinct(), n, drainTimeout)
		}
		gw1, err1 := benchrig.CPU(l.pid())
		cloud1, err2 := benchrig.CPU(b.cloud.Pid())
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		f.drainCPU = append(f.drainCPU, float64((gw1-gw0).Microseconds())/float64(n))
		f.cloudCPU = append(f.cloudCPU, float64((cloud1-cloud0).Microseconds())/float64(n))
		rec.WaitQuiet(time.Second, 10*time.Second) // any duplicates
	}
	rep := rec.Report(0, n)
	if kill {
		f.killLost, f.killDups, f.killRetag = float64(rep.Lost), float64(rep.Dups), float64(rep.DupsRetagged)
		fmt.Fprintf(b.out, "  %-9s kill -9 with %d messages held, restart, cloud back: %d lost, %d duplicates (%d with a new edged tag)\n",
			s, n, rep.Lost, rep.Dups, rep.DupsRetagged)
		return nil
	}
	last := func(v []float64) float64 { return v[len(v)-1] }
	f.rssIdle, f.rssHold = append(f.rssIdle, float64(idle)/1024), append(f.rssHold, float64(rss)/1024)
	f.wpm = append(f.wpm, float64(u1.Sub(u0).WriteBytes)/float64(n))
	f.drain = append(f.drain, float64(n-1)/rep.Last.Sub(rep.First).Seconds())
	f.reconnect = append(f.reconnect, rep.First.Sub(up).Seconds())
	f.outageLost += float64(rep.Lost)
	f.outageDups += float64(rep.Dups)
	fmt.Fprintf(b.out, "  %-9s outage of %d messages: RSS %.1f MiB holding (%.1f idle), %.0f B written/msg; cloud back: first after %.1f s, drain %.0f msg/s (CPU/msg: %.1f µs %s, %.1f µs cloud), %d lost, %d duplicates\n",
		s, n, last(f.rssHold), last(f.rssIdle), last(f.wpm), last(f.reconnect), last(f.drain), last(f.drainCPU), s, last(f.cloudCPU), rep.Lost, rep.Dups)
	return nil
}

// bare sends n messages into the cloud from a bare paho QoS 1 publisher
// with edged's tags and window (max_inflight 32), as fast as the PUBACKs
// allow, and records the rate at which they arrive, measured as a
// drain is: what a Go MQTT client can send into this cloud, on this
// machine, with nothing behind it.
func (b *bench) bare(f *figures, n int) error {
	p, err := benchrig.NewPublisher(b.cloud.Addr, fmt.Sprintf("bare-%d", b.next()), nil)
	if err != nil {
		return err
	}
	defer p.Close()
	p.Tags = "bare"
	topic := fmt.Sprintf("bench/bare/drain-%d", b.next())
	rec := b.sub.Track(topic)
	if _, err := p.Send(topic, 0, n, 0, 1, 32); err != nil {
		return err
	}
	if !rec.WaitDistinct(n, 180*time.Second) {
		return fmt.Errorf("%d of %d arrived within 180 s", rec.Distinct(), n)
	}
	rep := rec.Report(0, n)
	f.bare = append(f.bare, float64(n-1)/rep.Last.Sub(rep.First).Seconds())
	fmt.Fprintf(b.out, "  bare paho publisher, edged's tags, window 32, %d messages into the cloud: %.0f msg/s\n", n, f.bare[len(f.bare)-1])
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (b *bench) table(res map[string]*figures) {
	m, e := res["mosquitto"], res["edged"]
	med := benchrig.Median
	rows := []benchrig.Row{
		{Figure: fmt.Sprintf("LAN publish → cloud subscriber at %s msg/s, p50", benchrig.Group(fmt.Sprint(b.rate))), Ref: med(m.p50), Edged: med(e.p50), Format: "%.2f ms"},
		{Figure: "same, p99", Ref: med(m.p99), Edged: med(e.p99), Format: "%.2f ms"},
		{Figure: fmt.Sprintf("CPU of the local process per message at %s msg/s", benchrig.Group(fmt.Sprint(b.rate))), Ref: med(m.cpuPerMsg), Edged: med(e.cpuPerMsg), Format: "%.1f µs"},
		{Figure: "same, context switches of the local process per message", Ref: med(m.switches), Edged: med(e.switches), Format: "%.1f"},
		{Figure: fmt.Sprintf("%s messages as fast as PUBACKs allow: e2e", benchrig.Group(fmt.Sprint(b.maxN))), Ref: med(m.maxRate), Edged: med(e.maxRate), Format: "%.0f msg/s"},
		{Figure: "same, p50", Ref: med(m.maxP50), Edged: med(e.maxP50), Format: "%.1f ms"},
		{Figure: "same, CPU per message of the local process", Ref: med(m.maxCPU), Edged: med(e.maxCPU), Format: "%.1f µs"},
		{Figure: "same, of the cloud Mosquitto", Ref: med(m.maxCloudCPU), Edged: med(e.maxCloudCPU), Format: "%.1f µs"},
		{Figure: "same, of the LAN publisher and the cloud subscriber (the bench)", Ref: med(m.maxBenchCPU), Edged: med(e.maxBenchCPU), Format: "%.1f µs"},
	}
	if b.outageN > 0 {
		n := benchrig.Group(fmt.Sprint(b.outageN))
		rows = append(rows,
			benchrig.Row{Figure: fmt.Sprintf("drain of a %s-message backlog after the cloud returns", n), Ref: med(m.drain), Edged: med(e.drain), Format: "%.0f msg/s"},
			benchrig.Row{Figure: "same, CPU of the local process per drained message", Ref: med(m.drainCPU), Edged: med(e.drainCPU), Format: "%.1f µs"},
			benchrig.Row{Figure: "same, CPU of the cloud Mosquitto per drained message", Ref: med(m.cloudCPU), Edged: med(e.cloudCPU), Format: "%.1f µs"},
			benchrig.Row{Figure: "first message after the cloud returns", Ref: med(m.reconnect), Edged: med(e.reconnect), Format: "%.1f s", Note: "(reconnect backoff, random)"},
			benchrig.Row{Figure: fmt.Sprintf("RSS holding the %s backlog", n), Ref: med(m.rssHold), Edged: med(e.rssHold), Format: "%.1f MiB"},
			benchrig.Row{Figure: "bytes written to disk per message during the outage", Ref: med(m.wpm), Edged: med(e.wpm), Format: "%.0f B"},
			benchrig.Row{Figure: "outage, cloud returns: lost / duplicates (all rounds)", RefText: fmt.Sprintf("%.0f / %.0f", m.outageLost, m.outageDups), EdgedText: fmt.Sprintf("%.0f / %.0f", e.outageLost, e.outageDups), Note: "-"},
		)
	}
	if b.killN > 0 {
		rows = append(rows,
			benchrig.Row{Figure: fmt.Sprintf("kill -9 holding %s messages, restart, cloud returns: lost / duplicates", benchrig.Group(fmt.Sprint(b.killN))),
				RefText:   benchrig.Group(fmt.Sprintf("%.0f", m.killLost)) + " / " + benchrig.Group(fmt.Sprintf("%.0f", m.killDups)),
				EdgedText: benchrig.Group(fmt.Sprintf("%.0f", e.killLost)) + " / " + benchrig.Group(fmt.Sprintf("%.0f", e.killDups)), Note: "-"},
		)
	}
	fl := res["floor"]
	// The live rows, in the order of rows above; the max rate's p50
	// (row 5) is left out of the floor table: a queue's length at a
	// window, not a cost.
	live := [][]float64{fl.p50, fl.p99, fl.cpuPerMsg, fl.switches, fl.maxRate, fl.maxP50, fl.maxCPU, fl.maxCloudCPU, fl.maxBenchCPU}
	for i, v := range live {
		rows[i].Floor = med(v)
	}
	floorRows := append(append([]benchrig.Row{}, rows[:5]...), rows[6:len(live)]...)
	if b.outageN > 0 {
		rows[len(live)].Floor = med(fl.bare) // the drain row
		floorRows = append(floorRows, rows[len(live)])
	}
	fmt.Fprintf(b.out, "\nMedians of %d rounds (steady, max rate) and %d (outage); one kill -9; ratio = edged / Mosquitto.\n\n", b.rounds, b.outageRounds)
	benchrig.Table(b.out, "Mosquitto + bridge", rows)
	fmt.Fprintln(b.out, "\nThe Go floor in the same run: for the live rows the relay floor (a goroutine per connection, a log write per message, an ack stamp per PUBACK read, no uplink logic: benchrig.ServeRelayFloor); for the drain, in its column, a bare paho QoS 1 publisher with edged's tags and window (issue 10's ceiling for a drain). On msg/s rows higher is better:")
	fmt.Fprintln(b.out)
	benchrig.FloorTable(b.out, "Mosquitto + bridge", floorRows)
}
