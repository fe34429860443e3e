package benchrig

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ServeRelayFloor serves the uplink bench's Go floor on ln: the floor
// broker (ServeFloor) whose every PUBLISH is also relayed to the MQTT 5
// broker at cloud, with the least a durable Go relay does for it, as
// edged's live path does it (sync: interval): the message is appended to
// a log file with one write(2) and acknowledged to the LAN client; it is
// written to the cloud connection at once, by the LAN client's
// goroutine, when fewer than window messages await their PUBACK, or kept
// in memory until one comes; the cloud's PUBACKs are read by a goroutine
// of their own, which stamps the last one in an ack file (one pwrite(2)
// per read that brought PUBACKs) and writes the messages that waited.
// Each relayed PUBLISH carries edged's user properties (gw, epoch, seq,
// ts) so the cloud does the same work for both.
//
// Like the floor broker, a measuring stick: no reconnect, no reading of
// the log after a restart, no fsync, no retained messages, no access
// rules; a cloud that goes away ends it (it closes ln and returns).
func ServeRelayFloor(ln net.Listener, cloud, dir string, window int) error {
	r, err := dialRelay(cloud, dir, window)
	if err != nil {
		return err
	}
	defer r.log.Close()
	defer r.ack.Close()
	cloudErr := make(chan error, 1)
	go func() {
		cloudErr <- r.readAcks()
		ln.Close() // the floor serves no more without its cloud
	}()
	err = (&floor{subs: map[*floorConn][]floorSub{}, relay: r}).accept(ln)
	r.cloud.Close()
	if cerr := <-cloudErr; !errors.Is(cerr, net.ErrClosed) {
		return fmt.Errorf("benchrig: relay floor: cloud: %w", cerr)
	}
	return err
}

type relay struct {
	log, ack *os.File
	cloud    net.Conn
	br       *bufio.Reader
	window   int

	mu              sync.Mutex
	seq             uint64
	id              uint16
	inflight        int
	waiting         [][]byte // encoded PUBLISHes beyond the window, oldest first
	rec, props, out []byte   // scratch, under mu
	stamp           [8]byte
	acked           uint64
}

// relays numbers the relay floors of this process, for their client ids.
var relays atomic.Int64

func dialRelay(cloud, dir string, window int) (*relay, error) {
	log, err := os.OpenFile(filepath.Join(dir, "floor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	ack, err := os.OpenFile(filepath.Join(dir, "floor.ack"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		log.Close()
		return nil, err
	}
	fail := func(err error) (*relay, error) {
		log.Close()
		ack.Close()
		return nil, err
	}
	c, err := net.DialTimeout("tcp", cloud, 10*time.Second)
	if err != nil {
		return fail(err)
	}
	// CONNECT, MQTT 5, clean start, no keep-alive, no properties; a
	// client id of its own, so that two floors on one cloud do not take
	// over each other's session.
	id := fmt.Sprintf("floor-relay-%d-%d", os.Getpid(), relays.Add(1))
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 0, 0}, byte(len(id)>>8), byte(len(id)))
	body = append(body, id...)
	pk := append(binary.AppendUvarint([]byte{0x10}, uint64(len(body))), body...)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(pk); err != nil {
		c.Close()
		return fail(err)
	}
	br := bufio.NewReaderSize(c, 64<<10)
	h, b, err := readPacket(br, nil)
	if err != nil || h>>4 != 2 || len(b) < 2 || b[1] >= 0x80 {
		c.Close()
		return fail(fmt.Errorf("benchrig: relay floor: no CONNACK from %s (% x, %v)", cloud, b, err))
	}
	_ = c.SetDeadline(time.Time{})
	return &relay{log: log, ack: ack, cloud: c, br: br, window: window}, nil
}

// readPacket reads one MQTT packet into buf (grown as needed) and
// returns its first byte and its body.
func readPacket(br *bufio.Reader, buf []byte) (byte, []byte, error) {
	h, err := br.ReadByte()
	if err != nil {
		return 0, buf, err
	}
	n, err := binary.ReadUvarint(br) // MQTT's variable byte integer is a uvarint
	if err != nil || n > 1<<20 {
		return 0, buf, errFloorPacket
	}
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	b := buf[:n]
	_, err = io.ReadFull(br, b)
	return h, b, err
}

// publish logs and relays one PUBLISH the LAN client c sent (QoS 0 or
// 1); the floor's own publish then acknowledges it.
func (r *relay) publish(c *floorConn, h byte, b []byte) error {
	_, topic, _, payload, err := parsePublish(c, h, b)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.seq++
	// The log record: length, seq, topic, payload.
	rec := binary.BigEndian.AppendUint32(r.rec[:0], uint32(8+2+len(topic)+len(payload)))
	rec = binary.BigEndian.AppendUint64(rec, r.seq)
	rec = append(binary.BigEndian.AppendUint16(rec, uint16(len(topic))), topic...)
	r.rec = append(rec, payload...)
	_, err = r.log.Write(r.rec)
	if err == nil {
		r.id++
		if r.id == 0 {
			r.id = 1
		}
		pk := r.encode(topic, payload, time.Now())
		if r.inflight < r.window {
			r.inflight++
			_, err = r.cloud.Write(pk)
		} else {
			r.waiting = append(r.waiting, append([]byte(nil), pk...))
		}
	}
	r.mu.Unlock()
	return err
}

// encode encodes the relayed PUBLISH (QoS 1, id r.id, edged's user
// properties) into r.out.
func (r *relay) encode(topic, payload []byte, now time.Time) []byte {
	p := appendProp(r.props[:0], "gw", "benchgw")
	p = appendProp(p, "epoch", "1")
	p = appendProp(p, "seq", strconv.AppendUint(r.out[:0], r.seq, 10))
	p = appendProp(p, "ts", strconv.AppendInt(r.out[:0], now.UnixMilli(), 10))
	r.props = p
	var pl [binary.MaxVarintLen64]byte
	plen := binary.PutUvarint(pl[:], uint64(len(p)))
	o := binary.AppendUvarint(append(r.out[:0], 0x32), uint64(2+len(topic)+2+plen+len(p)+len(payload)))
	o = append(binary.BigEndian.AppendUint16(o, uint16(len(topic))), topic...)
	o = binary.BigEndian.AppendUint16(o, r.id)
	o = append(append(append(o, pl[:plen]...), p...), payload...)
	r.out = o
	return o
}

// appendProp appends a user property (0x26, key, value).
func appendProp[V string | []byte](b []byte, key string, value V) []byte {
	b = append(binary.BigEndian.AppendUint16(append(b, 0x26), uint16(len(key))), key...)
	return append(binary.BigEndian.AppendUint16(b, uint16(len(value))), value...)
}

// readAcks reads the cloud's packets until the connection fails: each
// read's PUBACKs free the window, the last is stamped in the ack file,
// and waiting messages go out.
func (r *relay) readAcks() error {
	var buf []byte
	acked := 0
	for {
		h, b, err := readPacket(r.br, buf)
		if err != nil {
			return err
		}
		buf = b[:0]
		if h>>4 != 4 || len(b) < 2 { // only PUBACKs come: no subscription, no keep-alive
			continue
		}
		if len(b) > 2 && b[2] >= 0x80 {
			return fmt.Errorf("PUBACK %#x", b[2])
		}
		acked++
		if r.br.Buffered() > 0 {
			continue
		}
		r.mu.Lock()
		r.inflight -= acked
		r.acked += uint64(acked)
		acked = 0
		binary.BigEndian.PutUint64(r.stamp[:], r.acked)
		_, err = r.ack.WriteAt(r.stamp[:], 0)
		for err == nil && len(r.waiting) > 0 && r.inflight < r.window {
			r.inflight++
			_, err = r.cloud.Write(r.waiting[0])
			r.waiting[0] = nil
			r.waiting = r.waiting[1:]
		}
		r.mu.Unlock()
		if err != nil {
			return err
		}
	}
}
