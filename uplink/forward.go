package uplink

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sockio"
)

// The forwarder speaks MQTT 5 through paho.golang's packet layer and keeps
// its own connection state, rather than through paho.Client or autopaho:
// it must resend from the first unacknowledged buffer record after every
// reconnect (never on the same connection), ack the buffer only for the
// contiguous PUBACKed prefix, and never keep a second in-memory queue.
// paho's session store would resend its own copies and autopaho's queue
// deletes on write, not on PUBACK.

// forward connects, runs sessions and reconnects until ctx ends; retry
// decides the waits and what to dead-letter.
func (u *Uplink) forward(ctx context.Context) {
	cur := u.buf()
	acked := cur.log.Stats().AckedSeq
	r := &retry{base: u.backoffBase, max: u.backoffMax, stormWindow: u.stormWindow, stormMax: u.stormMax, poisonAfter: u.poisonAfter, randN: rand.Int64N, now: true}
	failing := false
	defer u.beat.Idle()
	for ctx.Err() == nil {
		// A wait (the backoff, or the storm guard's window), a connect
		// and a CONNACK wait at most.
		u.beat.Expect(max(u.backoffMax, u.stormWindow) + u.connectTimeout + sensors.BeatSlack)
		if !u.sleep(ctx, r.wait(u.clock.Now())) {
			return
		}
		r.connecting(u.clock.Now())
		nc, br, ca, err := u.dial(ctx)
		if err != nil {
			r.dialFailed()
			if ctx.Err() != nil {
				return
			}
			if !failing {
				u.log.Warn("cannot connect to the cloud broker; buffering and retrying with backoff", "url", u.opts.URL, "error", err)
				failing = true
			} else {
				u.log.Debug("connect failed", "error", err, "attempt", r.attempt)
			}
			continue
		}
		failing = false
		u.connects.Add(1)
		u.connected.Store(true)
		u.log.Info("connected", "url", u.opts.URL, "session_present", ca.SessionPresent, "backlog", u.buf().log.Stats().Backlog)
		if ws := u.buf(); ws != cur {
			acked = reconcileAcked(cur, ws, acked)
			cur = ws
		}
		end, err := u.session(ctx, nc, br, ca, cur, acked, r.skip)
		acked = end.acked
		u.connected.Store(false)
		r.ended(end, err)
		switch {
		case errors.Is(err, errReopened):
			u.log.Info("buffer reopened; resending from the first unacknowledged message", "acked_seq", acked)
		case err != nil && ctx.Err() == nil:
			u.log.Warn("connection lost; resending from the first unacknowledged message", "error", err, "acked_seq", acked)
		}
	}
}

// reconcileAcked returns where to resume on a reopened buffer: where this
// process got to when it is the same epoch (telling the new log so),
// else the new log's own acked seq.
func reconcileAcked(old, ws *walState, acked uint64) uint64 {
	a := ws.log.Stats().AckedSeq
	if ws.epoch != old.epoch {
		return a
	}
	if acked > a {
		ws.log.Ack(acked)
		a = acked
	}
	return a
}

// sleep waits d on the injected clock; false means ctx ended first.
func (u *Uplink) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := u.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// handshake runs TLS over nc, which it closes when the handshake fails.
// conf names the server (the uplink's TLS config always does: its
// server_name, else the URL's host).
func handshake(ctx context.Context, nc net.Conn, conf *tls.Config) (net.Conn, error) {
	tc := tls.Client(nc, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return tc, nil
}

// dial opens the connection and does the CONNECT/CONNACK exchange.
func (u *Uplink) dial(ctx context.Context) (net.Conn, *bufio.Reader, *packets.Connack, error) {
	connectTimeout := u.connectTimeout
	dctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(dctx, "tcp", u.addr)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("uplink: dial %s: %w", u.addr, err)
	}
	nc = sockio.Wrap(nc)
	if u.tlsConf != nil {
		if nc, err = handshake(dctx, nc, u.tlsConf); err != nil {
			return nil, nil, nil, fmt.Errorf("uplink: dial %s: %w", u.addr, err)
		}
	}
	_ = nc.SetDeadline(time.Now().Add(connectTimeout))
	// A stop must not wait for a cloud that accepts TCP and never
	// answers: unblock the CONNECT/CONNACK exchange at once.
	unwatch := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	sei := uint32(u.opts.SessionExpiry / time.Second)
	maxIn := uint32(maxIncoming)
	cp := &packets.Connect{
		ProtocolName:    "MQTT",
		ProtocolVersion: 5,
		ClientID:        u.opts.ClientID,
		KeepAlive:       uint16(u.opts.KeepAlive / time.Second),
		CleanStart:      false,
		Properties:      &packets.Properties{SessionExpiryInterval: &sei, MaximumPacketSize: &maxIn},
		WillFlag:        true,
		WillTopic:       u.status,
		WillMessage:     []byte("offline"),
		WillQOS:         1,
		WillRetain:      !u.noRetain.Load(),
		WillProperties:  &packets.Properties{},
	}
	if u.opts.Username != "" {
		cp.UsernameFlag, cp.Username = true, u.opts.Username
	}
	if u.password != nil {
		cp.PasswordFlag, cp.Password = true, u.password
	}
	if _, err := cp.WriteTo(nc); err != nil {
		unwatch()
		nc.Close()
		return nil, nil, nil, fmt.Errorf("uplink: send CONNECT: %w", err)
	}
	br := bufio.NewReaderSize(nc, 16<<10)
	p, err := readPacket(br, maxIncoming)
	if !unwatch() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("uplink: read CONNACK: %w", err)
	}
	ca, ok := p.Content.(*packets.Connack)
	if !ok {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("uplink: got %s instead of CONNACK", p.PacketType())
	}
	if ca.ReasonCode == 0x9A && cp.WillRetain {
		// Retain not supported: the next connect goes without it.
		nc.Close()
		u.retainUnavailable()
		return nil, nil, nil, fmt.Errorf("uplink: cloud refused the connection: %#x %s; connecting again without retain", ca.ReasonCode, ca.Reason())
	}
	if ca.ReasonCode >= 0x80 {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("uplink: cloud refused the connection: %#x %s", ca.ReasonCode, ca.Reason())
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, br, ca, nil
}

// stopBudget splits what is left of a stop: PUBACKs of messages in flight
// are awaited until drainBy, and no write may block past hardBy. With a
// deadline on Close's context, both fit inside it.
func (u *Uplink) stopBudget(now time.Time) (drainBy, hardBy time.Time) {
	drainBy = now.Add(u.drainWait)
	hardBy = drainBy.Add(time.Second)
	if ns := u.stopBy.Load(); ns != 0 {
		left := time.Unix(0, ns).Sub(now)
		if d := now.Add(left / 2); d.Before(drainBy) {
			drainBy = d
		}
		if d := now.Add(left * 3 / 4); d.Before(hardBy) {
			hardBy = d
		}
	}
	return drainBy, hardBy
}

// retainUnavailable records that the cloud takes no retained messages.
func (u *Uplink) retainUnavailable() {
	if u.noRetain.CompareAndSwap(false, true) {
		u.log.Warn("the cloud broker does not support retained messages; sending the will, the status and retained messages without retain")
	}
}
