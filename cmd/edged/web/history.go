package web

import (
	"math"
	"sync"
	"time"
)

// history keeps the latest readings of every sensor quantity, for the
// history route and for the sensors' current values: a ring of at most
// max points per quantity (16 bytes each). It is fed from the
// pipeline's readings, the values MQTT subscribers see.
type history struct {
	max int

	mu    sync.RWMutex
	rings map[seriesKey]*ring
}

type seriesKey struct{ sensor, quantity string }

type point struct {
	t int64 // unix ms
	v float64
}

type ring struct {
	unit string
	pts  []point // circular once full
	next int     // where the next point goes once full
}

func newHistory(max int) *history {
	return &history{max: max, rings: map[seriesKey]*ring{}}
}

func (h *history) add(sensor, quantity, unit string, v float64, t time.Time) {
	k := seriesKey{sensor, quantity}
	p := point{t.UnixMilli(), v}
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rings[k]
	if r == nil {
		r = &ring{unit: unit, pts: make([]point, 0, min(h.max, 64))}
		h.rings[k] = r
	}
	if len(r.pts) < h.max {
		r.pts = append(r.pts, p)
		return
	}
	r.pts[r.next] = p
	r.next = (r.next + 1) % h.max
}

// latest is the newest point of a series.
func (h *history) latest(sensor, quantity string) (point, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	r := h.rings[seriesKey{sensor, quantity}]
	if r == nil || len(r.pts) == 0 {
		return point{}, false
	}
	i := len(r.pts) - 1
	if len(r.pts) == h.max {
		i = (r.next + h.max - 1) % h.max
	}
	return r.pts[i], true
}

// since returns the points at or after t, oldest first, in arrival order
// (a clock step does not reorder them).
func (h *history) since(sensor, quantity string, t time.Time) []point {
	ms := t.UnixMilli()
	h.mu.RLock()
	defer h.mu.RUnlock()
	r := h.rings[seriesKey{sensor, quantity}]
	if r == nil {
		return nil
	}
	out := make([]point, 0, len(r.pts))
	n := len(r.pts)
	for i := range n {
		j := i
		if n == h.max {
			j = (r.next + i) % n
		}
		if r.pts[j].t >= ms {
			out = append(out, r.pts[j])
		}
	}
	return out
}

// round4 rounds as pipeline.AppendPayload does, so the API shows what
// MQTT shows.
func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }
