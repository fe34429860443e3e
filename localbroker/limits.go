package localbroker

import (
	"errors"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// limits bounds what one client can make the broker hold beyond its
// connection (connections, packets and retained messages are bounded
// elsewhere):
//
//   - max_subscriptions per session. A SUBSCRIBE's new filters beyond
//     it are refused one by one (0x97 Quota exceeded; MQTT 3.1.1 has
//     only 0x80); its other filters that fit, and filters the session
//     holds already, are granted. The count is the session's own
//     subscriptions, so an unsubscribe frees a slot and a resumed or
//     taken-over session keeps its count. (100,000 distinct filters from
//     one client cost 131 MiB of heap before.)
//   - max_topic_levels per filter (0x8F Topic Filter invalid; 3.1.1:
//     0x80); retained topics are checked by retainedStore. Each level is
//     a node of mochi's topic tree, about 630 bytes: two SUBSCRIBE
//     packets of four 16,001-level filters cost 77 MiB before.
//   - max_sessions kept for absent persistent clients. Beyond it the
//     session whose client left first ends, as if it had expired: its
//     subscriptions and queued messages go (counted), and its client
//     finds no session (Session Present 0) when it comes back, which
//     every client handles already since sessions expire. Refusing new
//     persistent sessions instead would let anybody who fills the table
//     lock every new device out for session_expiry.
//   - An expired session leaves the topic index: mochi v2.7.9 left its
//     subscriptions there for good, and a later client with the same id
//     (even with Clean Start) got messages for them.
//
// The queue of an absent client is mochi's inflight store, capped at
// max_queued_messages (Capabilities.MaximumInflight; Drops.InflightFull)
// and max_queued_bytes (edged's mochi patch 6, MaximumOfflineInflightBytes;
// Drops.QueuedBytesFull).
type limits struct {
	mqtt.HookBase
	b         *Broker
	maxSubs   int
	maxLevels int
	maxKept   int
	maxBytes  int64 // max_queued_bytes

	mu   sync.Mutex
	kept map[string]keptSession // client id -> its absent session
	seq  uint64                 // order of leaving
}

// keptSession is the session of a persistent client that left.
type keptSession struct {
	cl  *mqtt.Client
	seq uint64
}

// overQuota replaces a filter refused for max_subscriptions on its way
// through mochi: it is invalid ('#' not last), so mochi refuses it
// (0x8F) without touching its index, and OnSubscribed makes that 0x97.
const overQuota = "#/edged/max_subscriptions"

// tooDeep replaces a filter refused for max_topic_levels: mochi refuses
// it with 0x8F (Topic Filter invalid), the code for it.
const tooDeep = "#/edged/max_topic_levels"

// errTooDeep: a topic or filter has more than max_topic_levels levels.
var errTooDeep = errors.New("localbroker: too many topic levels")

// topicLevels counts the levels of a topic or filter; a shared
// subscription's by its filter ($share/group/ not counted).
func topicLevels(t string) int {
	if mqtt.IsSharedFilter(t) {
		if parts := strings.SplitN(t, "/", 3); len(parts) == 3 {
			t = parts[2]
		}
	}
	return strings.Count(t, "/") + 1
}

func newLimits(b *Broker, o Opts) *limits {
	return &limits{b: b, maxSubs: o.MaxSubscriptions, maxLevels: o.MaxTopicLevels, maxKept: o.MaxSessions,
		maxBytes: o.MaxQueuedBytes, kept: map[string]keptSession{}}
}

func (h *limits) ID() string { return "edged-limits" }

func (h *limits) Provides(b byte) bool {
	switch b {
	case mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnSessionEstablish, mqtt.OnDisconnect, mqtt.OnClientExpired:
		return true
	}
	return false
}

// OnSubscribe runs in the client's reading goroutine before mochi
// checks any filter, so nothing else changes the session's
// subscriptions meanwhile. Every client may subscribe to every valid
// filter (access.OnACLCheck), so the filters mochi will grant are known
// here: the valid ones.
func (h *limits) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	n := cl.State.Subscriptions.Len()
	var added map[string]bool
	refused, deep := 0, 0
	for i, s := range pk.Filters {
		if !mqtt.IsValidFilter(s.Filter, false) || (s.NoLocal && mqtt.IsSharedFilter(s.Filter)) {
			continue // mochi refuses it itself
		}
		if topicLevels(s.Filter) > h.maxLevels {
			pk.Filters[i].Filter = tooDeep
			deep++
			continue
		}
		if _, held := cl.State.Subscriptions.Get(s.Filter); held || added[s.Filter] {
			continue // replaces a subscription, takes no new slot
		}
		if n < h.maxSubs {
			n++
			if added == nil {
				added = map[string]bool{}
			}
			added[s.Filter] = true
			continue
		}
		pk.Filters[i].Filter = overQuota
		refused++
	}
	if deep > 0 {
		h.b.stats.tooDeepSub.Add(uint64(deep))
		h.b.warn("too-deep", cl.ID, "refused subscriptions over max_topic_levels",
			"client", cl.ID, "remote", cl.Net.Remote, "refused", deep, "max_topic_levels", h.maxLevels)
	}
	if refused > 0 {
		h.b.stats.subsRefused.Add(uint64(refused))
		h.b.warn("max-subscriptions", cl.ID, "refused subscriptions over max_subscriptions",
			"client", cl.ID, "remote", cl.Net.Remote, "refused", refused, "max_subscriptions", h.maxSubs)
	}
	return pk
}

// OnSubscribed gives the filters OnSubscribe refused 0x97: mochi hands
// the hooks the SUBACK's reason codes before it writes it. MQTT 3.1.1
// has 0x80 for every refusal, which mochi set already.
func (h *limits) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl.Properties.ProtocolVersion < 5 {
		return
	}
	for i, s := range pk.Filters {
		if s.Filter == overQuota && i < len(codes) && codes[i] == packets.ErrTopicFilterInvalid.Code {
			codes[i] = packets.ErrQuotaExceeded.Code
		}
	}
}

// OnSessionEstablish: the client is back (or a new client took the id);
// its session is no longer an absent one.
func (h *limits) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	h.mu.Lock()
	delete(h.kept, cl.ID)
	h.mu.Unlock()
}

// OnDisconnect keeps count of the sessions mochi keeps for absent
// clients, and ends the oldest beyond max_sessions.
func (h *limits) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if cl.Net.Inline || expire || cl.IsTakenOver() {
		return
	}
	if cur, ok := h.b.srv.Clients.Get(cl.ID); !ok || cur != cl {
		return // taken over meanwhile: the session is the new client's
	}
	h.trim(cl)
	var oldest []*mqtt.Client
	h.mu.Lock()
	h.seq++
	h.kept[cl.ID] = keptSession{cl: cl, seq: h.seq}
	for len(h.kept) > h.maxKept {
		first := keptSession{}
		for _, k := range h.kept {
			if first.cl == nil || k.seq < first.seq {
				first = k
			}
		}
		delete(h.kept, first.cl.ID)
		oldest = append(oldest, first.cl)
	}
	h.mu.Unlock()
	for _, old := range oldest {
		h.end(old)
	}
}

// trim holds what a client that just left had unacknowledged to
// max_queued_bytes, which mochi applies to absent clients only (a
// connected one is bounded by max_queued_messages, and disconnected if
// it stops reading): the newest messages go, counted as
// Drops.QueuedBytesFull, the oldest always stays. A QoS 2 message
// whose PUBREL is pending holds no payload and stays.
func (h *limits) trim(cl *mqtt.Client) {
	if cl.State.Inflight.Bytes() <= h.maxBytes {
		return
	}
	held := cl.State.Inflight.GetAll(false)
	sort.Slice(held, func(i, j int) bool {
		if held[i].Created != held[j].Created {
			return held[i].Created < held[j].Created
		}
		return held[i].PacketID < held[j].PacketID
	})
	dropped := 0
	for i := len(held) - 1; i > 0 && cl.State.Inflight.Bytes() > h.maxBytes; i-- {
		if held[i].FixedHeader.Type == packets.Publish && cl.State.Inflight.Delete(held[i].PacketID) {
			atomic.AddInt64(&h.b.srv.Info.Inflight, -1)
			atomic.AddInt64(&h.b.srv.Info.InflightBytesDropped, 1)
			dropped++
		}
	}
	if dropped > 0 {
		h.b.warn("queued-bytes", cl.ID, "dropped messages a client left unacknowledged over max_queued_bytes",
			"client", cl.ID, "remote", cl.Net.Remote, "dropped", dropped, "max_queued_bytes", h.maxBytes)
	}
}

// end ends the session of an absent client as mochi's expiry does
// (clearExpiredClients: out of the client table, and the hooks'
// OnClientExpired), and drops what was queued for it. It is out of the
// table first, so a client coming back with its id from then on starts
// a new session. (mochi's client table has no compare-and-delete: one
// coming back between the check and the delete is a race mochi's own
// expiry has too.)
func (h *limits) end(cl *mqtt.Client) {
	srv := h.b.srv
	if cur, ok := srv.Clients.Get(cl.ID); !ok || cur != cl || !cl.Closed() {
		return // back, taken over or gone meanwhile
	}
	queued := cl.State.Inflight.Len()
	srv.Clients.Delete(cl.ID)
	for _, hk := range h.b.hooks {
		if hk.Provides(mqtt.OnClientExpired) {
			hk.OnClientExpired(cl)
		}
	}
	h.b.stats.sessionsEnded.Add(1)
	h.b.stats.sessionDropped.Add(uint64(queued))
	h.b.warn("max-sessions", "", "ended the session of the absent client that left first: max_sessions are kept",
		"client", cl.ID, "remote", cl.Net.Remote, "dropped", queued, "max_sessions", h.maxKept)
}

// OnClientExpired takes the expired session's subscriptions out of the
// topic index and its messages out of the inflight count (mochi v2.7.9
// does neither). The index is keyed by client id: when another client
// has the id already (it came back as the session ended), the filters
// it holds stay, and so do the messages, which it may have taken over.
func (h *limits) OnClientExpired(cl *mqtt.Client) {
	h.mu.Lock()
	if k, ok := h.kept[cl.ID]; ok && k.cl == cl {
		delete(h.kept, cl.ID)
		h.b.stats.sessionsExpired.Add(1)
	}
	h.mu.Unlock()
	srv := h.b.srv
	cur, ok := srv.Clients.Get(cl.ID)
	if !ok || cur == cl {
		srv.UnsubscribeClient(cl)
		cl.ClearInflights()
		return
	}
	for f := range cl.State.Subscriptions.GetAll() {
		if _, held := cur.State.Subscriptions.Get(f); !held && srv.Topics.Unsubscribe(f, cl.ID) {
			atomic.AddInt64(&srv.Info.Subscriptions, -1)
		}
	}
}
