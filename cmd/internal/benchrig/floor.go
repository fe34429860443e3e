package benchrig

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edged/edged/uplink"
)

// ServeFloor serves the benches' Go floor on ln until ln is closed: the
// least work a Go MQTT broker can do for the benches' traffic, written
// the way Go servers are written and mochi is, one goroutine per
// connection reading through the runtime's netpoller, each delivery
// written by the publisher's goroutine straight to the subscriber's
// socket (as edged's patched mochi does), and nothing allocated per
// message but the topic's string.
//
// It is a measuring stick, not a broker: CONNECT is answered without a
// look at the client id, will or credentials; there are no sessions,
// retained messages, QoS 2, flow control, keep-alive enforcement,
// limits, hooks or access rules, and a subscriber that stops reading
// stalls its publishers. What it costs per message against Mosquitto,
// in the same run, is what a Go program built on goroutines and the
// netpoller pays before any broker logic: the part of edged's figures
// that no change keeping that I/O model (mochi's) can remove.
func ServeFloor(ln net.Listener) error {
	return (&floor{subs: map[*floorConn][]floorSub{}}).accept(ln)
}

// accept serves every connection ln accepts, until it fails.
func (f *floor) accept(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go f.serve(&floorConn{c: c})
	}
}

type floor struct {
	mu    sync.RWMutex
	subs  map[*floorConn][]floorSub
	relay *relay // ServeRelayFloor's: every PUBLISH is also relayed
}

type floorSub struct {
	filter string
	qos    byte
}

type floorConn struct {
	c  net.Conn
	v5 bool

	wmu sync.Mutex // serialises writes and guards what follows
	id  uint16     // the last packet id the floor sent
	out []byte
}

// write writes the packet that build appends to an empty buffer.
func (c *floorConn) write(build func(b []byte) []byte) {
	c.wmu.Lock()
	c.out = build(c.out[:0])
	_, _ = c.c.Write(c.out)
	c.wmu.Unlock()
}

var errFloorPacket = errors.New("benchrig: floor: malformed packet")

func (f *floor) serve(c *floorConn) {
	defer func() {
		f.mu.Lock()
		delete(f.subs, c)
		f.mu.Unlock()
		c.c.Close()
	}()
	br := bufio.NewReaderSize(c.c, 4096)
	var buf []byte
	for {
		h, b, err := readPacket(br, buf)
		if err != nil {
			return
		}
		buf = b[:0]
		switch h >> 4 {
		case 1: // CONNECT
			if len(b) < 7 {
				return
			}
			c.v5 = b[6] == 5
			c.write(func(o []byte) []byte {
				if c.v5 {
					return append(o, 0x20, 3, 0, 0, 0)
				}
				return append(o, 0x20, 2, 0, 0)
			})
		case 3: // PUBLISH
			if f.relay != nil {
				if err := f.relay.publish(c, h, b); err != nil {
					return
				}
			}
			if err := f.publish(c, h, b); err != nil {
				return
			}
		case 8: // SUBSCRIBE
			if err := f.subscribe(c, b); err != nil {
				return
			}
		case 10: // UNSUBSCRIBE
			if len(b) < 2 {
				return
			}
			f.mu.Lock()
			delete(f.subs, c)
			f.mu.Unlock()
			c.write(func(o []byte) []byte {
				if c.v5 {
					return append(o, 0xB0, 4, b[0], b[1], 0, 0)
				}
				return append(o, 0xB0, 2, b[0], b[1])
			})
		case 12: // PINGREQ
			c.write(func(o []byte) []byte { return append(o, 0xD0, 0) })
		case 14: // DISCONNECT
			return
		}
	}
}

// publish delivers one PUBLISH (header h, body b) to every connection
// with a matching filter, at the lower of the two QoS (0 or 1), and
// acknowledges a QoS 1 PUBLISH after the deliveries were written.
func (f *floor) publish(c *floorConn, h byte, b []byte) error {
	qos, topic, id, payload, err := parsePublish(c, h, b)
	if err != nil {
		return err
	}
	t := string(topic)
	f.mu.RLock()
	for s, filters := range f.subs {
		sq, any := byte(0), false
		for _, sub := range filters {
			if uplink.MatchFilter(sub.filter, t) {
				sq, any = max(sq, min(qos, sub.qos)), true
			}
		}
		if any {
			s.write(func(o []byte) []byte {
				n := 2 + len(topic) + len(payload)
				if sq > 0 {
					n += 2
				}
				if s.v5 {
					n++ // no properties
				}
				o = binary.AppendUvarint(append(o, 0x30|sq<<1), uint64(n))
				o = append(binary.BigEndian.AppendUint16(o, uint16(len(topic))), topic...)
				if sq > 0 {
					s.id++
					if s.id == 0 {
						s.id = 1
					}
					o = binary.BigEndian.AppendUint16(o, s.id)
				}
				if s.v5 {
					o = append(o, 0)
				}
				return append(o, payload...)
			})
		}
	}
	f.mu.RUnlock()
	if qos == 1 {
		c.write(func(o []byte) []byte { return append(o, 0x40, 2, id[0], id[1]) })
	}
	return nil
}

// parsePublish cuts the PUBLISH (header h, body b) that c sent into its
// parts; id is nil at QoS 0, and QoS 2 is refused.
func parsePublish(c *floorConn, h byte, b []byte) (qos byte, topic, id, payload []byte, err error) {
	qos = h >> 1 & 3
	topic, rest, ok := cutString(b)
	if !ok || qos > 1 {
		return 0, nil, nil, nil, errFloorPacket
	}
	if qos == 1 {
		if len(rest) < 2 {
			return 0, nil, nil, nil, errFloorPacket
		}
		id, rest = rest[:2], rest[2:]
	}
	if c.v5 {
		pl, k := binary.Uvarint(rest)
		if k <= 0 || pl > uint64(len(rest)-k) {
			return 0, nil, nil, nil, errFloorPacket
		}
		rest = rest[k+int(pl):]
	}
	return qos, topic, id, rest, nil
}

func (f *floor) subscribe(c *floorConn, b []byte) error {
	if len(b) < 2 {
		return errFloorPacket
	}
	id, rest := b[:2], b[2:]
	if c.v5 {
		pl, k := binary.Uvarint(rest)
		if k <= 0 || pl > uint64(len(rest)-k) {
			return errFloorPacket
		}
		rest = rest[k+int(pl):]
	}
	var granted []byte
	var subs []floorSub
	for len(rest) > 0 {
		filter, r, ok := cutString(rest)
		if !ok || len(r) < 1 {
			return errFloorPacket
		}
		q := min(r[0]&3, 1)
		subs, granted, rest = append(subs, floorSub{string(filter), q}), append(granted, q), r[1:]
	}
	f.mu.Lock()
	f.subs[c] = append(f.subs[c], subs...)
	f.mu.Unlock()
	c.write(func(o []byte) []byte {
		n := 2 + len(granted)
		if c.v5 {
			n++
		}
		o = append(binary.AppendUvarint(append(o, 0x90), uint64(n)), id...)
		if c.v5 {
			o = append(o, 0)
		}
		return append(o, granted...)
	})
	return nil
}

// FloorFlag is the flag with which a bench command serves its floor
// instead of measuring, for StartFloor.
const FloorFlag = "serve-floor"

// Floor is a Go floor running in a process of its own, so that its CPU
// is counted apart from the bench's.
type Floor struct {
	Addr string
	cmd  *exec.Cmd
	out  chan struct{} // closed once its stdout is read to the end
}

// StartFloor starts this executable with -FloorFlag and args (its main
// must then call ServeFloorMain) and waits for the address it prints.
// The environment is the bench's, GODEBUG included.
func StartFloor(args ...string) (*Floor, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{"-" + FloorFlag}, args...)...)
	cmd.Stderr = os.Stderr
	// It dies with us, as StartEdged's edged does: a floor left behind
	// by a bench that panicked or a test that timed out would serve on,
	// and under flock hold the lock.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	fl := &Floor{cmd: cmd, out: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(fl.out)
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		addr <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case fl.Addr = <-addr:
	case <-time.After(10 * time.Second):
	}
	if fl.Addr == "" {
		fl.Stop()
		return nil, errors.New("benchrig: the Go floor printed no address within 10 s")
	}
	return fl, nil
}

// Pid returns the floor's process id.
func (fl *Floor) Pid() int { return fl.cmd.Process.Pid }

// Stop kills the floor and waits for it (its stdout read to the end
// first, as os/exec asks of a pipe's reader).
func (fl *Floor) Stop() {
	_ = fl.cmd.Process.Kill()
	<-fl.out
	_ = fl.cmd.Wait()
}

// ServeFloorMain listens on a free loopback port, prints its address
// and serves it with serve (ServeFloor, or ServeRelayFloor bound to its
// cloud) until killed.
func ServeFloorMain(serve func(net.Listener) error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	fmt.Fprintln(os.Stderr, serve(ln))
	os.Exit(1)
}
