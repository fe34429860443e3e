// Command benchbroker compares edged's embedded broker with Mosquitto for
// `make bench-broker`, in one run, on the same machine, taking turns:
//
//   - CPU per message: one paho publisher at -rates (1,000 and 2,000
//     msg/s), QoS 0 and 1, 64-byte JSON payloads, to -subs (4) QoS 1
//     subscribers of the topic; the broker's utime+stime from
//     /proc/PID/stat over the phase, divided by the messages published
//     (each delivered to every subscriber). Delivery is checked (QoS 1
//     must arrive complete) and timed (p50/p99, send time in the payload);
//   - RSS idle and with -clients (64) clients connected, each subscribed
//     to a topic of its own, from 8 loopback addresses (edged admits at
//     most 16 per address by default).
//
// Mosquitto runs with its default limits (max_inflight_messages 20,
// max_queued_messages 1000, persistence off); edged as `edged run` with
// defaults and the broker only (no sensors, no uplink, no HTTP).
// Between them runs the Go floor (benchrig.ServeFloor, this command with
// -serve-floor): a goroutine per connection and no broker logic, so the
// floor against Mosquitto is what Go's runtime costs here, and edged
// against the floor is what edged and mochi add.
// `edged run` exposes no pprof endpoint, so no profile is taken here; use
// `go test -cpuprofile` on the localbroker benchmarks.
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
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edged/edged/cmd/internal/benchrig"
	"github.com/edged/edged/uplink/uplinktest"
)

type broker struct {
	name string
	addr string
	pid  int
	stop func()
}

type point struct {
	rate float64
	qos  byte
}

func main() {
	serveFloor := flag.Bool(benchrig.FloorFlag, false, "serve the Go floor on a free port (the bench starts it so itself)")
	edged := flag.String("edged", "bin/edged", "edged binary (`make build`)")
	mosquitto := flag.String("mosquitto", "mosquitto", "mosquitto binary")
	rates := flag.String("rates", "1000,2000", "publish rates, messages a second")
	qoss := flag.String("qos", "0,1", "publish QoS levels")
	subs := flag.Int("subs", 4, "subscribers of the published topic")
	seconds := flag.Int("seconds", 5, "length of one measurement")
	rounds := flag.Int("rounds", 5, "rounds (medians are reported)")
	clients := flag.Int("clients", 64, "clients connected for the RSS figure (0 skips it)")
	flag.Parse()
	if *serveFloor {
		benchrig.ServeFloorMain(benchrig.ServeFloor)
	}

	var points []point
	for _, r := range strings.Split(*rates, ",") {
		for _, q := range strings.Split(*qoss, ",") {
			rate, err1 := strconv.ParseFloat(r, 64)
			qos, err2 := strconv.ParseUint(q, 10, 8)
			if err := errors.Join(err1, err2); err != nil || qos > 1 || rate <= 0 {
				fmt.Fprintf(os.Stderr, "benchbroker: bad -rates %q or -qos %q\n", *rates, *qoss)
				os.Exit(2)
			}
			points = append(points, point{rate, byte(qos)})
		}
	}
	rig, err := benchrig.New("benchbroker")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer rig.Close()
	bin, err := exec.LookPath(*mosquitto)
	if err != nil {
		rig.Fatal(errors.New("benchbroker: mosquitto not found: apt-get install mosquitto"))
	}
	if _, err := os.Stat(*edged); err != nil {
		rig.Fatal(fmt.Errorf("benchbroker: %w (make build)", err))
	}
	if _, err := run(os.Stdout, rig, bin, *edged, points, *subs, *seconds, *rounds, *clients); err != nil {
		rig.Fatal(err)
	}
}

func start(rig *benchrig.Rig, name, mosquitto, edged string) (*broker, error) {
	dir := filepath.Join(rig.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var b *broker
	switch name {
	case "mosquitto":
		// uplinktest's first lines raise the queue and inflight limits
		// for the uplink's tests; put Mosquitto's defaults back.
		m, err := uplinktest.StartMosquitto(mosquitto, dir, "max_inflight_messages 20\nmax_queued_messages 1000")
		if err != nil {
			return nil, err
		}
		b = &broker{name: name, addr: m.Addr, pid: m.Pid(), stop: m.Stop}
	case "edged":
		e, err := benchrig.StartEdged(edged, dir, func(lan string) string {
			return fmt.Sprintf(`device: {id: benchbroker}
state_dir: %s
log: {level: warn}
broker: {mqtt: %q, websocket: "", anonymous_role: publisher}
http: {listen: ""}
`, filepath.Join(dir, "state"), lan)
		})
		if err != nil {
			return nil, err
		}
		b = &broker{name: name, addr: e.LAN, pid: e.Pid(), stop: e.Stop}
	case "floor":
		f, err := benchrig.StartFloor()
		if err != nil {
			return nil, err
		}
		b = &broker{name: name, addr: f.Addr, pid: f.Pid(), stop: f.Stop}
	}
	rig.Defer(b.stop)
	return b, nil
}

type figures struct {
	cpu                map[point][]float64 // µs per published message
	switches           map[point][]float64 // context switches per published message
	rssIdle, rssClient float64             // MiB
}

var names = []string{"mosquitto", "floor", "edged"}

// run measures and prints; it returns the figures by broker name.
func run(out io.Writer, rig *benchrig.Rig, mosquitto, edged string, points []point, nsubs, seconds, rounds, clients int) (map[string]*figures, error) {
	brokers := map[string]*broker{}
	res := map[string]*figures{}
	for _, name := range names {
		b, err := start(rig, name, mosquitto, edged)
		if err != nil {
			return nil, err
		}
		brokers[name], res[name] = b, &figures{cpu: map[point][]float64{}, switches: map[point][]float64{}}
	}
	fmt.Fprintf(out, "bench-broker: %d subscribers (QoS 1), one publisher, %d B payloads, %d s per measurement, %d rounds\n", nsubs, benchrig.PayloadSize, seconds, rounds)
	fmt.Fprintln(out, "(the machine may be shared: compare the two columns, measured in the same run, not figures of different runs)")
	if clients > 0 {
		for _, name := range names {
			if err := rss(out, brokers[name], res[name], clients); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	type conn struct {
		pub  *benchrig.Publisher
		subs []*benchrig.Subscriber
	}
	conns := map[string]*conn{}
	defer func() {
		for _, c := range conns {
			c.pub.Close()
			for _, s := range c.subs {
				s.Close()
			}
		}
	}()
	for _, name := range names {
		c := &conn{}
		conns[name] = c
		var err error
		if c.pub, err = benchrig.NewPublisher(brokers[name].addr, "bench-pub", nil); err != nil {
			return nil, err
		}
		for i := range nsubs {
			s, err := benchrig.Subscribe(brokers[name].addr, fmt.Sprintf("bench-sub-%d", i), nil, "bench/b/#", 1, false)
			if err != nil {
				return nil, err
			}
			c.subs = append(c.subs, s)
		}
	}
	// Warm-up, not counted: a second at the highest rate, QoS 1.
	for _, name := range names {
		if _, err := conns[name].pub.Send("bench/b/warm", 0, int(points[len(points)-1].rate), points[len(points)-1].rate, 1, 64); err != nil {
			return nil, err
		}
	}
	k := 0
	for r := 1; r <= rounds; r++ {
		for _, p := range points {
			for _, name := range names {
				b, c := brokers[name], conns[name]
				k++
				topic := fmt.Sprintf("bench/b/%d", k)
				var recs []*benchrig.Recorder
				for _, s := range c.subs {
					recs = append(recs, s.Track(topic))
				}
				n := int(p.rate * float64(seconds))
				u0, err := benchrig.Sample(b.pid)
				if err != nil {
					return nil, err
				}
				if _, err := c.pub.Send(topic, 0, n, p.rate, p.qos, 64); err != nil {
					return nil, err
				}
				var lat []time.Duration
				delivered := 0
				for _, rec := range recs {
					if !rec.WaitDistinct(n, 30*time.Second) && p.qos == 1 {
						return nil, fmt.Errorf("%s: QoS 1 at %.0f msg/s: a subscriber got %d of %d within 30 s", name, p.rate, rec.Distinct(), n)
					}
					rep := rec.Report(0, n)
					lat = append(lat, rep.Latency...)
					delivered += n - rep.Lost
				}
				u1, err := benchrig.Sample(b.pid)
				if err != nil {
					return nil, err
				}
				cpu := float64(u1.Sub(u0).CPU.Microseconds()) / float64(n)
				sw := float64(u1.Sub(u0).Switches) / float64(n)
				res[name].cpu[p] = append(res[name].cpu[p], cpu)
				res[name].switches[p] = append(res[name].switches[p], sw)
				slices.Sort(lat)
				fmt.Fprintf(out, "  round %d %-9s %5.0f msg/s QoS %d: CPU %6.1f µs/msg  %4.1f context switches/msg  delivered %6.2f %%  p50 %6.2f ms  p99 %6.2f ms\n",
					r, name, p.rate, p.qos, cpu, sw, 100*float64(delivered)/float64(n*len(recs)), ms(benchrig.Percentile(lat, 50)), ms(benchrig.Percentile(lat, 99)))
			}
		}
	}
	m, fl, e := res["mosquitto"], res["floor"], res["edged"]
	var rows []benchrig.Row
	for _, p := range points {
		rows = append(rows, benchrig.Row{
			Figure: fmt.Sprintf("CPU per message, %s msg/s QoS %d, %d subscribers", benchrig.Group(fmt.Sprint(p.rate)), p.qos, nsubs),
			Ref:    benchrig.Median(m.cpu[p]), Edged: benchrig.Median(e.cpu[p]), Floor: benchrig.Median(fl.cpu[p]), Format: "%.1f µs",
		})
	}
	for _, p := range points {
		rows = append(rows, benchrig.Row{
			Figure: fmt.Sprintf("context switches per message, %s msg/s QoS %d", benchrig.Group(fmt.Sprint(p.rate)), p.qos),
			Ref:    benchrig.Median(m.switches[p]), Edged: benchrig.Median(e.switches[p]), Floor: benchrig.Median(fl.switches[p]), Format: "%.1f",
		})
	}
	if clients > 0 {
		rows = append(rows,
			benchrig.Row{Figure: "RSS, no client", Ref: m.rssIdle, Edged: e.rssIdle, Floor: fl.rssIdle, Format: "%.1f MiB"},
			benchrig.Row{Figure: fmt.Sprintf("RSS, %d clients connected and subscribed", clients), Ref: m.rssClient, Edged: e.rssClient, Floor: fl.rssClient, Format: "%.1f MiB"},
		)
	}
	fmt.Fprintf(out, "\nCPU: medians of %d rounds; ratio = edged / Mosquitto.\n\n", rounds)
	benchrig.Table(out, "Mosquitto", rows)
	fmt.Fprintln(out, "\nThe Go floor (a goroutine per connection, no broker logic: benchrig.ServeFloor) in the same run:")
	fmt.Fprintln(out)
	benchrig.FloorTable(out, "Mosquitto", rows)
	return res, nil
}

// rss connects clients subscribers from 127.0.0.2..9 and reads the
// broker's RSS before and 2 s after.
func rss(out io.Writer, b *broker, f *figures, clients int) error {
	idle, err := benchrig.RSSKiB(b.pid)
	if err != nil {
		return err
	}
	var subs []*benchrig.Subscriber
	defer func() {
		for _, s := range subs {
			s.Close()
		}
	}()
	for i := range clients {
		ip := net.IPv4(127, 0, 0, byte(2+i%8))
		s, err := benchrig.Subscribe(b.addr, fmt.Sprintf("idle-%d", i), ip, fmt.Sprintf("bench/c/%d", i), 1, false)
		if err != nil {
			return fmt.Errorf("client %d of %d: %w", i+1, clients, err)
		}
		subs = append(subs, s)
	}
	var peak int64
	for range 8 {
		time.Sleep(250 * time.Millisecond)
		v, err := benchrig.RSSKiB(b.pid)
		if err != nil {
			return err
		}
		peak = max(peak, v)
	}
	f.rssIdle, f.rssClient = float64(idle)/1024, float64(peak)/1024
	fmt.Fprintf(out, "  %-9s RSS %.1f MiB with no client, %.1f MiB with %d connected\n", b.name, f.rssIdle, f.rssClient, clients)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
