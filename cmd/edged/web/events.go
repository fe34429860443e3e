package web

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// event is one server-sent event; immutable once published.
type event struct {
	id   uint64
	name string
	data []byte // compact JSON: no newlines
}

// hub numbers events, keeps the latest in a ring for Last-Event-ID, and
// hands each to every stream without ever waiting: a stream whose
// buffer is full is dropped (it may reconnect and resume from the ring).
type hub struct {
	size, buf, maxSubs int

	mu     sync.Mutex
	ring   []*event // circular once full
	next   int      // where the next event goes once full
	lastID uint64
	subs   map[*stream]struct{}
	closed bool
	done   chan struct{}
}

// stream is one SSE client's queue.
type stream struct {
	ch    chan *event
	gone  chan struct{} // closed when the hub drops the stream
	owner streamOwner
}

// streamOwner is who holds a stream, for the caps of subscribe.
type streamOwner struct {
	addr       string // source IP address
	user       string // "" when anonymous
	privileged bool   // operator or admin
}

// Caps on event streams, so nobody can take them all: one address gets
// maxStreamsPerAddr, one user maxStreamsPerUser, and a quarter of
// MaxStreams are kept for operators and admins.
const (
	maxStreamsPerAddr = 4
	maxStreamsPerUser = 8
)

func newHub(size, buf, maxSubs int) *hub {
	return &hub{size: size, buf: buf, maxSubs: maxSubs, subs: map[*stream]struct{}{}, done: make(chan struct{})}
}

func (h *hub) publish(name string, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.lastID++
	e := &event{id: h.lastID, name: name, data: data}
	if len(h.ring) < h.size {
		h.ring = append(h.ring, e)
	} else {
		h.ring[h.next] = e
		h.next = (h.next + 1) % h.size
	}
	for s := range h.subs {
		select {
		case s.ch <- e:
		default:
			delete(h.subs, s)
			close(s.gone)
		}
	}
}

// subscribe registers a stream. With resume, backlog is the ring's
// events after lastSeen; gap reports that some events after lastSeen
// are no longer in the ring (or lastSeen is from another run of edged),
// so backlog is the whole ring.
func (h *hub) subscribe(resume bool, lastSeen uint64, who streamOwner) (s *stream, backlog []*event, gap bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, nil, false, errClosed
	}
	limit := h.maxSubs
	if !who.privileged {
		limit -= h.maxSubs / 4
	}
	byAddr, byUser := 0, 0
	for o := range h.subs {
		if o.owner.addr == who.addr {
			byAddr++
		}
		if who.user != "" && o.owner.user == who.user {
			byUser++
		}
	}
	if len(h.subs) >= limit || byAddr >= maxStreamsPerAddr || byUser >= maxStreamsPerUser {
		return nil, nil, false, errTooMany
	}
	if resume {
		n := len(h.ring)
		ordered := make([]*event, 0, n)
		for i := range n {
			j := i
			if n == h.size {
				j = (h.next + i) % n
			}
			ordered = append(ordered, h.ring[j])
		}
		switch {
		case lastSeen > h.lastID:
			gap, backlog = true, ordered // ids from an earlier run
		case n > 0 && ordered[0].id > lastSeen+1:
			gap, backlog = true, ordered
		default:
			for _, e := range ordered {
				if e.id > lastSeen {
					backlog = append(backlog, e)
				}
			}
		}
	}
	s = &stream{ch: make(chan *event, h.buf), gone: make(chan struct{}), owner: who}
	h.subs[s] = struct{}{}
	return s, backlog, gap, nil
}

func (h *hub) unsubscribe(s *stream) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// close ends every stream and refuses new ones.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
}

func (h *hub) streams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Reading takes a reading as published on MQTT: it goes to the history
// and to the event streams. It never blocks.
func (s *Server) Reading(sensor, quantity, unit string, value float64, t time.Time) {
	value = round4(value)
	s.hist.add(sensor, quantity, unit, value, t)
	data, _ := json.Marshal(readingEvent{sensor, quantity, value, unit, t.UTC().Format(timeLayout)})
	s.hub.publish("reading", data)
}

// Availability takes a sensor's availability change. It never blocks.
func (s *Server) Availability(sensor string, online bool) {
	data, _ := json.Marshal(struct {
		Sensor string `json:"sensor"`
		Online bool   `json:"online"`
	}{sensor, online})
	s.hub.publish("availability", data)
}

// ControllerState takes a controller's state JSON as it publishes it. A
// state that is not a JSON object is dropped. It never blocks.
func (s *Server) ControllerState(id string, state []byte) {
	if !json.Valid(state) || !strings.HasPrefix(strings.TrimSpace(string(state)), "{") {
		return
	}
	data, _ := json.Marshal(struct {
		ID    string          `json:"id"`
		State json.RawMessage `json:"state"`
	}{id, state})
	s.hub.publish("controller", data)
}

type readingEvent struct {
	Sensor   string  `json:"sensor"`
	Quantity string  `json:"quantity"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Time     string  `json:"time"`
}

// timeLayout is RFC 3339 in UTC with milliseconds, as the MQTT payloads.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// events serves GET /api/v1/events.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	var lastSeen uint64
	resume := false
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "Last-Event-ID "+strconv.Quote(v)+": want an event id (a number)")
			return
		}
		lastSeen, resume = n, true
	}
	a := identityOf(r)
	who := streamOwner{user: a.id.Name, privileged: !a.anonymous && rank(a.id.Role) >= rank(RoleOperator)}
	if a.anonymous {
		who.user = ""
	}
	if ra := remoteAddr(r); ra != nil {
		who.addr = ra.(*net.TCPAddr).IP.String()
	}
	st, backlog, gap, err := s.hub.subscribe(resume, lastSeen, who)
	if err != nil {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	defer s.hub.unsubscribe(st)
	// A stream on a session ends with it: logout, eviction or expiry.
	var ended <-chan struct{}
	var expired <-chan time.Time
	if c, err := r.Cookie(sessionCookieName(r)); err == nil && r.Header.Get("Authorization") == "" {
		var until time.Time
		var ok bool
		if ended, until, ok = s.sessions.watch(c.Value); !ok {
			return
		}
		t := time.NewTimer(until.Sub(s.sessions.now()))
		defer t.Stop()
		expired = t.C
	}
	// The stream outlives ReadTimeout: without this the server's
	// background read would time out and cancel the request.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)

	var buf []byte
	send := func(flush bool) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(s.opts.EventWrite))
		if _, err := w.Write(buf); err != nil {
			return false
		}
		buf = buf[:0]
		return !flush || rc.Flush() == nil
	}
	buf = append(buf, "retry: 3000\n\n"...)
	if gap {
		// No id: the client's Last-Event-ID stays what the backlog sets.
		buf = fmt.Appendf(buf, ": events after %d are no longer kept; sending all %d kept\nevent: gap\ndata: {\"last_event_id\":%d,\"resent\":%d}\n\n", lastSeen, len(backlog), lastSeen, len(backlog))
	}
	for _, e := range backlog {
		buf = appendEvent(buf, e)
		if len(buf) > 16<<10 && !send(false) {
			return
		}
	}
	if !send(true) {
		return
	}
	ping := time.NewTicker(s.opts.Heartbeat)
	defer ping.Stop()
	for {
		select {
		case e := <-st.ch:
			buf = appendEvent(buf, e)
			// Take what else is waiting, so a burst is one write.
			for more := true; more && len(buf) < 16<<10; {
				select {
				case e := <-st.ch:
					buf = appendEvent(buf, e)
				default:
					more = false
				}
			}
			if !send(true) {
				return
			}
		case <-ping.C:
			buf = append(buf, ": ping\n\n"...)
			if !send(true) {
				return
			}
		case <-st.gone:
			s.log.Warn("event stream dropped: the client fell behind", "remote", r.RemoteAddr)
			return
		case <-s.hub.done:
			return
		case <-ended:
			return
		case <-expired:
			return
		case <-r.Context().Done():
			return
		}
	}
}

func appendEvent(b []byte, e *event) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, e.id, 10)
	b = append(b, "\nevent: "...)
	b = append(b, e.name...)
	b = append(b, "\ndata: "...)
	b = append(b, e.data...)
	return append(b, "\n\n"...)
}
